"""Bodies on the wire: the model an answer names is the one the client asked for."""
from __future__ import annotations

from broke.gateway.wire import ModelStamp

STREAM = (b'event: message_start\ndata: {"type":"message_start","message":{"model":"anthropic/x@KEY_2"}}\n\n'
          b'data: {"id":"c","model": "anthropic/x@KEY_2","choices":[]}\n\n'
          b'data: {"text":"the model anthropic/x@KEY_2 said"}\n\n')


def test_a_whole_answer_names_the_requested_model_in_either_spacing():
    stamp = ModelStamp(("anthropic/x@KEY_2",), "claude-sonnet-5")
    out = stamp.whole(STREAM)
    assert out.count(b'"claude-sonnet-5"') == 2 and b"@KEY_2\"" not in out
    assert b"the model anthropic/x@KEY_2 said" in out  # only `model` fields change


def test_a_stream_cut_anywhere_comes_out_restamped_and_whole():
    for cut in range(1, len(STREAM)):
        stamp = ModelStamp(("anthropic/x@KEY_2",), "sonnet")
        out = stamp.feed(STREAM[:cut]) + stamp.feed(STREAM[cut:]) + stamp.flush()
        assert out == ModelStamp(("anthropic/x@KEY_2",), "sonnet").whole(STREAM), cut


def test_complete_lines_go_out_at_once():
    stamp = ModelStamp(("a",), "b")
    assert stamp.feed(b'data: {"model":"a"}\n\ndata: {"mo') == b'data: {"model":"b"}\n\n'
    assert stamp.feed(b'del":"a"}\n\n') == b'data: {"model":"b"}\n\n'
    assert stamp.flush() == b""


def test_names_needing_json_escapes():
    stamp = ModelStamp(('we"ird',), "ok")
    assert stamp.whole(b'{"model":"we\\"ird"}') == b'{"model":"ok"}'


def test_every_name_of_the_model_is_restamped():
    stamp = ModelStamp(("openai/gpt-x@KEY", "gpt-x-2025"), "gpt-5")
    out = stamp.whole(b'{"model":"openai/gpt-x@KEY","response":{"model":"gpt-x-2025"}}')
    assert out == b'{"model":"gpt-5","response":{"model":"gpt-5"}}'
