"""A fast fake OpenAI-compatible upstream for benchmarks: one asyncio process, raw HTTP/1.1 with
keep-alive, chat completions only (JSON or a short event stream), so that it is never what a
benchmark measures. Its answer is `fake:{model}:{key}` (the key is a benchmark placeholder).

    with running() as base_url:   # a child process of its own, stopped on exit
        ...

Run directly (`python perf/fast_fake.py`) it prints its base URL and serves until stdin closes.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import threading
from collections.abc import Iterator

OK_JSON = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n"
OK_STREAM = b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n"
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n"
USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


def answer(model: str, key: str) -> bytes:
    text = f"fake:{model}:{key}"
    return json.dumps({"id": "chatcmpl-fast", "object": "chat.completion", "created": 0, "model": model,
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                    "finish_reason": "stop"}], "usage": USAGE}).encode()


def stream(model: str, key: str) -> bytes:
    """The whole event stream, each event its own HTTP chunk, then the last chunk."""
    base = {"id": "chatcmpl-fast", "object": "chat.completion.chunk", "created": 0, "model": model}
    deltas = [{"role": "assistant", "content": ""}, {"content": "fake:"}, {"content": f"{model}:{key}"}]
    events = [{**base, "choices": [{"index": 0, "delta": d, "finish_reason": None}]} for d in deltas]
    events.append({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    events.append({**base, "choices": [], "usage": USAGE})
    out = b""
    for data in [b"data: " + json.dumps(e).encode() + b"\n\n" for e in events] + [b"data: [DONE]\n\n"]:
        out += b"%x\r\n%s\r\n" % (len(data), data)
    return out + b"0\r\n\r\n"


async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """One keep-alive connection: requests in turn until the client closes it."""
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1] if len(lines[0].split(" ")) > 1 else ""
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            body = await reader.readexactly(int(headers.get("content-length") or 0))
            if not path.endswith("/chat/completions"):
                writer.write(NOT_FOUND)
                continue
            payload = json.loads(body or b"{}")
            model = str(payload.get("model"))
            key = headers.get("authorization", "").removeprefix("Bearer ").strip()
            if payload.get("stream"):
                writer.write(OK_STREAM + stream(model, key))
            else:
                data = answer(model, key)
                writer.write(OK_JSON % len(data) + data)
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):  # closed, or stopping
        pass
    finally:
        writer.close()


async def main() -> None:
    server = await asyncio.start_server(serve, "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(f"http://127.0.0.1:{port}/v1", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    threading.Thread(target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(stop.set)), daemon=True).start()
    async with server:
        await stop.wait()


@contextlib.contextmanager
def running() -> Iterator[str]:
    """The fast fake in a child process of its own: its base URL, stopped (stdin closed) on exit."""
    child = subprocess.Popen([sys.executable, __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        base_url = (child.stdout.readline() if child.stdout else "").strip()
        if not base_url.startswith("http://"):
            raise RuntimeError("the fast fake's process did not start")
        yield base_url
    finally:
        if child.stdin:
            child.stdin.close()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()  # our own child, by its handle
            child.wait()


if __name__ == "__main__":
    try:
        import uvloop  # the fastest loop, when installed
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
