"""An Anthropic backend behind broke: one form of its address for every path, and Anthropic's thinking
rule kept whichever client API a conversation comes in by (issue 21, items 2 and 3)."""
from __future__ import annotations

import json

import httpx
import pytest
from typer.testing import CliRunner

from broke.catalog import Backend, load_catalog
from broke.cli.main import app
from broke.control.litellm_config import deployments, render
from broke.routing.backends import api_base, endpoint
from broke.state.model import CustomBackend
from broke.state.store import default_state
from conftest import add_fake_backends, module_home, run_cli, serving
from fake_conversation import Reply, ToolCall
from fake_provider import FakeProvider

pytestmark = pytest.mark.timeout(600)

#: A model LiteLLM knows to think, so it translates reasoning requests as it would for the real provider.
MODEL = "claude-sonnet-4-5-20250929"
ANTHROPIC = "fakeant/claude-x"
EXEC = {"type": "function", "name": "exec_command", "description": "Run a shell command",
        "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}}
WRITE = {"name": "Write", "description": "Write a file",
         "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}}}


# ---- one form of the address -----------------------------------------------------------------------

@pytest.mark.parametrize("given", ["http://gw.example/v1", "http://gw.example/v1/", "http://gw.example"])
def test_an_anthropic_base_is_kept_at_its_root_whichever_form_it_was_given_in(given):
    catalog = load_catalog()
    anthropic, openai = catalog.providers["anthropic"], catalog.providers["openai"]
    backend = Backend(ANTHROPIC, "anthropic", MODEL, True, api_base=given)
    assert api_base(backend, anthropic) == "http://gw.example"
    assert endpoint(backend, anthropic, "/v1/messages") == "http://gw.example/v1/messages"
    assert endpoint(backend, anthropic, "/v1/models") == "http://gw.example/v1/models"
    # OpenAI-style bases carry their version: /v1 is kept, and not doubled.
    gpt = Backend("fakeoai/gpt-x", "openai", "gpt-x", True, api_base="http://gw.example/v1/")
    assert endpoint(gpt, openai, "/v1/responses") == "http://gw.example/v1/responses"


def test_litellm_gets_the_same_base_and_may_adapt_requests_only_with_an_anthropic_deployment():
    state, catalog = default_state(), load_catalog()
    env = {"FAKE_API_KEY": "k"}
    state.backends["fake/model-a"] = CustomBackend("openai-compatible", "model-a", "http://h:1/v1", "FAKE_API_KEY")
    plain = render(deployments(state, catalog, env), request_timeout_s=60)
    assert "modify_params" not in plain["litellm_settings"]
    state.backends[ANTHROPIC] = CustomBackend("anthropic", MODEL, "http://h:2/v1", "FAKE_API_KEY")
    config = render(deployments(state, catalog, env), request_timeout_s=60)
    params = {m["model_name"]: m["litellm_params"] for m in config["model_list"]}
    assert params[f"{ANTHROPIC}@FAKE_API_KEY"]["api_base"] == "http://h:2"
    assert params["fake/model-a@FAKE_API_KEY"]["api_base"] == "http://h:1/v1"
    assert config["litellm_settings"]["modify_params"] is True


# ---- the real gateway and LiteLLM ------------------------------------------------------------------

@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    """A gateway whose Anthropic backend was added as `--api-base …/v1` (the form `backend add --help`
    shows), in front of a fake that keeps Anthropic's thinking rule."""
    home = tmp_path_factory.mktemp("anthropic") / "home"
    fake = FakeProvider(strict_thinking=True).start()
    with module_home(home) as mp:
        mp.setenv("BROKE_NATIVE", "1")
        add_fake_backends(home, fake, "model-a")
        run_cli("backend", "add", ANTHROPIC, "--provider", "anthropic", "--api-base", fake.base_url,
                "--model", MODEL, "--key-env", "FAKE_API_KEY")
        run_cli("swap", f"sonnet={ANTHROPIC}", f"gpt-5-codex={ANTHROPIC}", "opus=fake/model-a")
        for slot in ("sonnet", "gpt-5-codex", "opus"):
            run_cli("fallback", slot, "--clear")
        try:
            with serving("--wait") as (port, token):
                yield {"home": home, "fake": fake, "url": f"http://127.0.0.1:{port}", "token": token}
        finally:
            fake.stop()


@pytest.fixture
def gw(gateway, monkeypatch):
    monkeypatch.setenv("BROKE_HOME", str(gateway["home"]))
    gateway["fake"].clear_scripts()
    gateway["fake"].reset_requests()
    (gateway["home"] / "health.json").unlink(missing_ok=True)
    return gateway


def post(gw, path: str, body: dict) -> httpx.Response:
    return httpx.post(gw["url"] + path, json=body, timeout=120,
                      headers={"authorization": f"Bearer {gw['token']}", "anthropic-version": "2023-06-01"})


def events(raw: str) -> list[dict]:
    return [json.loads(line[6:]) for line in raw.splitlines() if line.startswith("data: ") and line != "data: [DONE]"]


@pytest.mark.parametrize("path, slot, via, body", [
    ("/v1/messages", "sonnet", "native", {"max_tokens": 32, "messages": [{"role": "user", "content": "hi"}]}),
    ("/v1/chat/completions", "sonnet", "translated", {"messages": [{"role": "user", "content": "hi"}]}),
    ("/v1/responses", "gpt-5-codex", "translated", {"input": "hi"}),
], ids=["messages-native", "chat-translated", "responses-translated"])
def test_an_anthropic_backend_at_a_v1_base_answers_every_client_api(gw, path, slot, via, body):
    answer = post(gw, path, {**body, "model": slot})
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-broke-via"] == via and answer.headers["x-broke-backend"] == ANTHROPIC
    assert f"fake:{MODEL}:key-one" in answer.text
    received = gw["fake"].requests[-1]
    assert received["path"] == "/v1/messages" and received["outcome"] == "ok"  # not /v1/v1/messages


def test_codex_reasoning_on_anthropic_survives_its_first_tool_call(gw):
    """Codex's way: Responses streamed with reasoning on; the reasoning item comes back without its
    encrypted content, so the follow-up's tool call carries no thinking. broke's translation sends that
    turn without thinking instead of having Anthropic refuse it."""
    fake = gw["fake"]
    fake.script(ToolCall("exec_command", {"cmd": "printf hi"}), Reply("done, said hi"))
    prompt = {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "say hi"}]}
    body = {"model": "gpt-5-codex", "input": [prompt], "tools": [EXEC], "stream": True, "store": False,
            "reasoning": {"effort": "high", "summary": "auto"}, "include": ["reasoning.encrypted_content"]}
    first = post(gw, "/v1/responses", body)
    assert first.status_code == 200, first.text
    items = [e["item"] for e in events(first.text) if e.get("type") == "response.output_item.done"]
    assert [i["type"] for i in items] == ["reasoning", "function_call"]
    assert not items[0].get("encrypted_content")  # what makes the follow-up hard: nothing signed to send back
    asked = fake.requests[-1]
    assert asked["thinking"] is not None and asked["outcome"] == "script"
    output = {"type": "function_call_output", "call_id": items[1]["call_id"], "output": "hi"}
    follow_up = {**body, "input": [prompt, {**items[0], "encrypted_content": None}, items[1], output]}
    second = post(gw, "/v1/responses", follow_up)
    assert second.status_code == 200, second.text
    text = "".join(e.get("delta", "") for e in events(second.text) if e.get("type") == "response.output_text.delta")
    assert text == "done, said hi"
    answered = fake.requests[-1]
    assert answered["outcome"] == "script" and answered["tool_results"] == ["hi"] and answered["thinking"] is None


def tool_loop(thinking_first: bool) -> list[dict]:
    """A Claude Code conversation in the middle of a tool loop; its tool call with or without the
    thinking that preceded it."""
    call = {"type": "tool_use", "id": "toolu_1", "name": "Write", "input": {"file_path": "/tmp/x"}}
    thought = [{"type": "thinking", "thinking": "a file is wanted", "signature": "fakesig-signed-here"}]
    return [{"role": "user", "content": "write the file"},
            {"role": "assistant", "content": [*(thought if thinking_first else []), call]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "ok"}]}]


@pytest.mark.parametrize("stream", [False, True])
def test_a_conversation_moved_to_anthropic_mid_tool_loop_goes_on_without_thinking(gw, stream):
    """A swap (or failover) to an Anthropic backend in the middle of a tool loop: the history holds no
    thinking of the new backend's, so that turn is forwarded without thinking instead of refused."""
    gw["fake"].script(ToolCall("Write", {"file_path": "/tmp/x"}), Reply("written"))
    body = {"model": "sonnet", "max_tokens": 4096, "stream": stream, "tools": [WRITE],
            "thinking": {"type": "enabled", "budget_tokens": 2048}, "messages": tool_loop(thinking_first=False)}
    answer = post(gw, "/v1/messages", body)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-broke-via"] == "native" and "written" in answer.text
    received = gw["fake"].requests[-1]
    assert received["outcome"] == "script" and "thinking" not in received["body"]


def test_a_tool_loop_that_kept_its_thinking_keeps_thinking(gw):
    gw["fake"].script(ToolCall("Write", {"file_path": "/tmp/x"}), Reply("written"))
    body = {"model": "sonnet", "max_tokens": 4096, "tools": [WRITE],
            "thinking": {"type": "enabled", "budget_tokens": 2048}, "messages": tool_loop(thinking_first=True)}
    answer = post(gw, "/v1/messages", body)
    assert answer.status_code == 200, answer.text
    assert gw["fake"].requests[-1]["body"]["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert [b["type"] for b in answer.json()["content"]] == ["thinking", "text"]


def test_other_backends_keep_the_thinking_asked_for(gw):
    """The rule is Anthropic's: a request that goes to no Anthropic backend keeps its reasoning."""
    body = {"model": "opus", "max_tokens": 4096, "tools": [WRITE],
            "thinking": {"type": "enabled", "budget_tokens": 2048}, "messages": tool_loop(thinking_first=False)}
    answer = post(gw, "/v1/messages", body)
    assert answer.status_code == 200, answer.text
    received = gw["fake"].requests[-1]
    assert received["api"] == "chat" and received["thinking"] is not None


def test_connect_does_not_warn_while_the_gateway_runs(gw):
    result = CliRunner().invoke(app, ["connect"])
    assert result.exit_code == 0 and gw["url"] in result.stdout and result.stderr == ""
