"""What judging adds to a client's stream (`broke router judge`, broke/gateway/answers.py).

Run with the venv's interpreter:

    .venv/bin/python perf/judge_capture.py [--streams N] [--requests M]

Two measurements, one run:

  capture   An agent's streamed answer in each client API (chat completions, Anthropic Messages,
            Responses: 200 text pieces, then a tool call whose 6,000-character arguments come in
            7-character pieces, ~1,100 events) is iterated N times through a bare async generator and
            N times through `Capture.passing` (alternating). Printed: the median time per stream of
            each, and the difference per stream and per chunk: the work done between two chunks
            (after one went to the client, before the next is read).
  gateway   The front proxy in this process (starlette's TestClient, as tests/proxy_harness.py) with
            the fake provider of tests/ as basic and premium tiers; M streamed /v1/messages `auto`
            requests per mode, modes interleaved request by request: judging off, at rate 0 (the stream
            is not even wrapped), and at rate 1 (read as it passes; the judgement runs after the last
            byte). Timed: from the request's arrival at the app to its last byte sent (an ASGI wrap),
            so that rate 1's judgement, which runs after, is not counted. Printed: p50 and p90 per mode.
  uvicorn   The same app served by uvicorn, at rate 1, the other tier's answer hanging HANG_S seconds:
            one streamed request and then another on the same keep-alive connection, timed by the
            client; neither waits for the judgement.

Nothing leaves the machine; the home is a temporary directory, removed at the end.
"""
from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib.util
import json
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from broke.gateway.answers import CHAT, MESSAGES, RESPONSES, Capture  # noqa: E402

ARGUMENTS = json.dumps({"file_path": "/tmp/x.py", "content": "print('hello world')\n" * 285})
PIECE = 7
#: How long the judgement's first request hangs in the keep-alive measurement.
HANG_S = 3.0


def sse(data: dict[str, Any], name: str | None = None) -> bytes:
    return (f"event: {name}\n" if name else "").encode() + b"data: " + json.dumps(data).encode() + b"\n\n"


def agent_stream(path: str) -> list[bytes]:
    """An agent's answer as one API streams it, one chunk per event."""
    words = [f"word{i} " for i in range(200)]
    pieces = [ARGUMENTS[i:i + PIECE] for i in range(0, len(ARGUMENTS), PIECE)]
    if path == CHAT:
        def chunk(delta: dict[str, Any], finish: str | None = None) -> bytes:
            return sse({"id": "c", "object": "chat.completion.chunk", "model": "m",
                        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
        return [*(chunk({"content": w}) for w in words),
                chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                       "function": {"name": "Write", "arguments": ""}}]}),
                *(chunk({"tool_calls": [{"index": 0, "function": {"arguments": p}}]}) for p in pieces),
                chunk({}, "tool_calls"), b"data: [DONE]\n\n"]
    if path == MESSAGES:
        def delta(index: int, body: dict[str, Any]) -> bytes:
            return sse({"type": "content_block_delta", "index": index, "delta": body}, "content_block_delta")
        return [sse({"type": "message_start", "message": {"id": "m"}}, "message_start"),
                sse({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                    "content_block_start"),
                *(delta(0, {"type": "text_delta", "text": w}) for w in words),
                sse({"type": "content_block_start", "index": 1,
                     "content_block": {"type": "tool_use", "id": "t", "name": "Write", "input": {}}},
                    "content_block_start"),
                *(delta(1, {"type": "input_json_delta", "partial_json": p}) for p in pieces),
                sse({"type": "message_delta", "delta": {"stop_reason": "tool_use"}}, "message_delta"),
                sse({"type": "message_stop"}, "message_stop")]
    return [sse({"type": "response.created"}, "response.created"),
            *(sse({"type": "response.output_text.delta", "output_index": 0, "delta": w},
                  "response.output_text.delta") for w in words),
            sse({"type": "response.output_item.added", "output_index": 1,
                 "item": {"type": "function_call", "name": "Write", "arguments": ""}}, "response.output_item.added"),
            *(sse({"type": "response.function_call_arguments.delta", "output_index": 1, "delta": p},
                  "response.function_call_arguments.delta") for p in pieces),
            sse({"type": "response.completed", "response": {"status": "completed"}}, "response.completed")]


async def source(chunks: list[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk


async def drain(stream: AsyncIterator[bytes]) -> None:
    async for _ in stream:
        pass


async def capture_cost(streams: int) -> None:
    print(f"capture: {streams} streams per API, bare vs read as it passes (median per stream)")
    for path in (CHAT, MESSAGES, RESPONSES):
        chunks = agent_stream(path)
        bare, read = [], []
        for _ in range(streams):
            started = time.perf_counter()
            await drain(source(chunks))
            bare.append(time.perf_counter() - started)
            capture = Capture(path)
            started = time.perf_counter()
            await drain(capture.passing(source(chunks)))
            read.append(time.perf_counter() - started)
            assert capture.answer() is not None, "the capture must read the whole answer"
        b, r = statistics.median(bare) * 1e3, statistics.median(read) * 1e3
        print(f"  {path:22} {len(chunks):5} chunks  bare {b:7.3f} ms  captured {r:7.3f} ms  "
              f"added {r - b:6.3f} ms per stream, {(r - b) / len(chunks) * 1e3:5.2f} µs per chunk")


def gateway_cost(requests: int) -> None:
    from starlette.testclient import TestClient

    from broke import changes
    from broke.catalog import load_catalog
    from broke.control.litellm_config import deployments
    from broke.control.runfiles import GatewayRecord, TokenStore, key_ref
    from broke.gateway.auth import CLIENT
    from broke.gateway.proxy import FrontProxy
    from broke.procs import ProcessRecord
    from broke.router import artifact, model
    from broke.router.data import DATA_FILE, data_version, load_rows
    from broke.state.model import Price
    from broke.state.store import StateStore
    from fake_conversation import Script, ToolCall
    from fake_provider import FakeProvider

    with tempfile.TemporaryDirectory() as tmp, FakeProvider() as fake:
        home = Path(tmp) / "home"
        home.mkdir(mode=0o700)
        os.environ["BROKE_HOME"] = str(home)
        os.environ["FAKE_API_KEY"] = "key-one"
        rows = load_rows()
        artifact.save(home, artifact.version(data_version(DATA_FILE)),
                      model.train([r for i, r in enumerate(rows) if i % 8 == 0]))
        store = StateStore(home)
        for backend in ("fake/model-a", "fake/model-b"):
            changes.add_backend(store, backend, provider="openai-compatible", model=backend.split("/")[1],
                                api_base=fake.base_url, key_env="FAKE_API_KEY", pinned=False)
            changes.set_prices(store, backend, Price(input=1.0, output=2.0))
        changes.set_tier(store, "basic", ["fake/model-a"])
        changes.set_tier(store, "premium", ["fake/model-b"])
        changes.set_thresholds(store, balanced_from=0.99, premium_from=0.99)
        changes.swap(store, [("opus", "fake/model-b")])
        fake.use(Script([ToolCall("Write", json.loads(ARGUMENTS))], "model-a"))
        env = {"FAKE_API_KEY": "key-one"}
        items = deployments(store.load(), load_catalog(), env, {})
        record = GatewayRecord(front=ProcessRecord(0, 0.0, 0, str(home / "run" / "gateway.log")),
                               litellm=ProcessRecord(0, 0.0, 1, str(home / "run" / "litellm.log")),
                               deployments=sorted({d.name for d in items}),
                               key_refs={d.key_env: key_ref(env[d.key_env]) for d in items if d.key_env})
        token = TokenStore(home).token_for(CLIENT)
        ended: list[float] = []
        app = FrontProxy(home, record, "sk-perf").app()

        async def timed(scope: Any, receive: Any, send: Any) -> None:
            started = time.perf_counter()

            async def sending(message: Any) -> None:
                await send(message)
                if message["type"] == "http.response.body" and not message.get("more_body"):
                    ended.append(time.perf_counter() - started)
            await app(scope, receive, sending)

        body = {"model": "auto", "stream": True, "max_tokens": 300,
                "messages": [{"role": "user", "content": "Write a SQL query joining orders and customers"}],
                "tools": [{"name": "Write", "description": "Write a file",
                           "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}}}]}
        modes = {"off": None, "rate 0": 0.0, "rate 1": 1.0}
        times: dict[str, list[float]] = {mode: [] for mode in modes}
        with TestClient(timed) as client:
            for number in range(requests + 3):  # the first three warm up
                for mode, rate in modes.items():
                    if rate is None:
                        changes.judge_off(store)
                    else:
                        changes.set_judge(store, "opus", rate, 1000.0)
                    ended.clear()
                    answer = client.post("/v1/messages", json=body, headers={"authorization": f"Bearer {token}"})
                    assert answer.status_code == 200 and b"message_stop" in answer.content, answer.text[:200]
                    if number >= 3:
                        times[mode].append(ended[0])
        judged = [r for r in fake.requests if "[User Question]" in r["messages_text"]]
        print(f"gateway: {requests} streamed /v1/messages `auto` requests per mode (a tool call, ~6 KB of "
              f"arguments); request in to last byte out; {len(judged) // 2} judged at rate 1")
        for mode, values in times.items():
            values.sort()
            print(f"  {mode:7} p50 {statistics.median(values) * 1e3:7.2f} ms  "
                  f"p90 {values[int(len(values) * 0.9) - 1] * 1e3:7.2f} ms")
        changes.set_judge(store, "opus", 1.0, 1000.0)
        served = FrontProxy(home, dataclasses.replace(record, first_byte_timeout_s=HANG_S), "sk-perf").app()
        keep_alive(served, fake, body, token)


def keep_alive(app: Any, fake: Any, body: dict[str, Any], token: str) -> None:
    """Under uvicorn (as `broke start` serves), with the judgement held up HANG_S seconds: the stream, and
    the client's next request on the same connection, each timed end to end."""
    import httpx
    import uvicorn

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, http=http, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    fake.fail("hang", model="model-b", times=1)  # the other tier's answer, asked after the stream, hangs
    headers = {"authorization": f"Bearer {token}"}
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30) as client:
            started = time.perf_counter()
            with client.stream("POST", "/v1/messages", json=body) as answer:
                streamed = b"".join(answer.iter_bytes())
            first = time.perf_counter() - started
            started = time.perf_counter()
            again = client.post("/v1/messages", json={**body, "stream": False})
            second = time.perf_counter() - started
            assert b"message_stop" in streamed and again.status_code == 200
            print(f"uvicorn ({http}), the judgement held up {HANG_S:.0f} s: the stream took {first * 1e3:.1f} ms, "
                  f"the next request on the same connection {second * 1e3:.1f} ms")
    finally:
        server.should_exit = True
        thread.join(timeout=HANG_S + 10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--streams", type=int, default=200)
    parser.add_argument("--requests", type=int, default=60)
    args = parser.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs; "
          f"perf/judge_capture.py --streams {args.streams} --requests {args.requests}")
    asyncio.run(capture_cost(args.streams))
    gateway_cost(args.requests)
    return 0


if __name__ == "__main__":
    sys.exit(main())
