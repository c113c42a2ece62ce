"""A fake cloud LLM provider speaking OpenAI Chat Completions, Anthropic Messages and OpenAI Responses.

It stands in for cloud providers behind LiteLLM (as an OpenAI-compatible "hosted_vllm"
backend at ``fake.base_url``, or as an Anthropic or OpenAI backend at ``fake.root_url``).
Standard library only; it listens on loopback only.

    with FakeProvider() as fake:
        fake.fail("429", key="key-one", times=1)
        ...  # point a client at fake.base_url with api_key="key-one"
        assert fake.requests[0]["outcome"] == "429"

The default answer to every request is ``fake:{model}:{key}``, where ``key`` is the bearer
token (or Anthropic ``x-api-key``) the client sent (these are fake test keys: echoing them
back is the point), so a test can tell which backend and which key served a request.

Scripted conversations (fake_conversation.py) make it an agent's model: ``fake.script(
ToolCall("Write", {...}), Reply("done"))`` asks for a tool call in the API's own shape
(chat ``tool_calls`` with the arguments streamed in fragments, Anthropic ``tool_use`` with
``input_json_delta``, Responses ``function_call`` items) and answers the request that carries
its result with the text. A request asking for reasoning gets thinking first. Every request
is recorded (``fake.requests``), its whole body included. With ``strict_thinking`` set, the
Anthropic endpoint keeps Anthropic's thinking rule: a request with thinking enabled whose final
assistant message calls a tool without starting with a thinking block gets Anthropic's 400
("Expected `thinking` or `redacted_thinking`, but found `tool_use`"), recorded as outcome ``"400"``.

Endpoints: ``POST /v1/chat/completions``, ``/v1/messages``, ``/v1/responses`` (each also
without ``/v1``), non-streaming JSON or ``"stream": true`` server-sent events;
``POST /v1/messages/count_tokens``; ``GET /v1/models``; ``GET /health``.
Streaming responses use chunked transfer encoding, one HTTP chunk per SSE event, each
sent as soon as it is written, with ``fake.chunk_delay_s`` seconds between events.

Usage: every answer reports its prompt's words as input tokens; with ``fake.cache_read_tokens`` and
``fake.cache_write_tokens`` set it also reports prompt-cache reads and writes in each API's own shape
(chat: inside ``prompt_tokens`` with ``prompt_tokens_details.cached_tokens``; Anthropic: beside
``input_tokens``; Responses: inside ``input_tokens`` with ``input_tokens_details.cached_tokens``).

Failure modes, added with ``fake.fail(mode, key=..., model=..., times=...)``:

- ``"429"``: rate limit error (``Retry-After: 1``, or ``fake.retry_after``), ``"401"``: invalid API key,
  ``"403"``: permission denied, ``"408"``: request timeout, ``"500"``: server error; each
  with an OpenAI-style JSON error body;
- ``"hang"``: read the request, then send nothing until the client goes away or the
  fake stops;
- ``"drop"``: read the request, then close the connection without a byte of response;
- ``"401-echo"``, ``"400-echo"``: the error echoes the key and the ``Authorization`` and ``x-api-key``
  headers it was sent (as some upstreams do);
- ``"cut"``: a 200's headers, then half of its JSON body, then close; ``"stall"``: a 200's headers,
  then nothing until the client goes away; ``"garbage"``: a 200 whose body is not JSON;
- ``"cut-stream"``: a 200 event stream's first events, then close without ending it (for a
  request that does not stream: the same as ``"cut"``);
- ``"stall-stream"``, ``"empty-stream"``: a 200 event stream's headers, then nothing until the client goes
  away, or nothing and close (for a request that does not stream: ``"stall"`` and ``"cut"``).
"""
from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypedDict

import fake_conversation as conversation
from fake_conversation import Script, Step

FAILURE_MODES = ("429", "401", "403", "408", "500", "hang", "drop", "401-echo", "400-echo",
                 "cut", "stall", "garbage", "cut-stream", "stall-stream", "empty-stream")
#: Failures of an event stream; a request that does not stream gets the like failure of a JSON answer.
STREAM_MODES = ("cut-stream", "stall-stream", "empty-stream")
DEFAULT_MODEL = "fake-model"

# mode -> (HTTP status, error type, error code, message)
_HTTP_ERRORS: dict[str, tuple[int, str, str, str]] = {
    "429": (429, "rate_limit_error", "rate_limit_exceeded", "Rate limit reached (fake provider)."),
    "401": (401, "invalid_request_error", "invalid_api_key", "Incorrect API key provided (fake provider)."),
    "403": (403, "permission_error", "permission_denied", "This key may not use the model (fake provider)."),
    "408": (408, "timeout_error", "request_timeout", "The request timed out (fake provider)."),
    "500": (500, "server_error", "server_error", "The server had an error (fake provider)."),
}
_API_PATHS = {"/v1/chat/completions": conversation.CHAT, "/chat/completions": conversation.CHAT,
              "/v1/messages": conversation.MESSAGES, "/messages": conversation.MESSAGES,
              "/v1/responses": conversation.RESPONSES, "/responses": conversation.RESPONSES}
_COUNT_TOKENS_PATHS = ("/v1/messages/count_tokens", "/messages/count_tokens")
_MODELS_PATHS = ("/v1/models", "/models")
_HEALTH_PATHS = ("/health", "/v1/health")
_POLL_S = 0.05


class RequestRecord(TypedDict):
    """What the fake remembers about one request it received."""

    path: str
    model: str | None
    key: str | None
    stream: bool
    request_id: str | None
    messages_text: str
    outcome: str
    api: str  # chat, messages, responses or count_tokens
    tools: list[str]  # names of the tools offered
    tool_results: list[str]  # text of every tool result in the conversation
    thinking: Any  # what the request asked for in the way of reasoning (None: nothing)
    body: dict[str, Any]  # the whole request body


@dataclass
class FailureRule:
    """Fail matching requests in ``mode``; ``None`` in ``key``/``model`` matches anything.

    ``remaining`` is how many more matching requests the rule affects (``None``: no limit).
    """

    mode: str
    key: str | None = None
    model: str | None = None
    remaining: int | None = None

    def matches(self, key: str | None, model: str | None) -> bool:
        """Whether a request with this key and model falls under the rule."""
        return (self.key is None or self.key == key) and (self.model is None or self.model == model)


class FailurePlan:
    """The thread-safe set of failure rules; the newest matching rule wins."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FailureRule] = []

    def add(self, rule: FailureRule) -> None:
        """Add a rule; it takes precedence over every rule added before it."""
        with self._lock:
            self._rules.append(rule)

    def clear(self) -> None:
        """Remove every rule."""
        with self._lock:
            self._rules.clear()

    def take(self, key: str | None, model: str | None) -> str | None:
        """The failure mode for a request (using up one of the rule's times), or ``None``."""
        with self._lock:
            for rule in reversed(self._rules):
                if not rule.matches(key, model):
                    continue
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self._rules.remove(rule)
                return rule.mode
        return None


class RequestLog:
    """A thread-safe record of every request received, and of the models seen."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[RequestRecord] = []
        self._models: set[str] = set()

    def add(self, record: RequestRecord) -> None:
        """Remember one request."""
        with self._lock:
            self._records.append(record)
            if record["model"]:
                self._models.add(record["model"])

    def snapshot(self) -> list[RequestRecord]:
        """A copy of the records so far, oldest first."""
        with self._lock:
            return [RequestRecord(**record) for record in self._records]

    def models(self) -> list[str]:
        """Every model named in a request so far, plus the default one, sorted."""
        with self._lock:
            return sorted(self._models | {DEFAULT_MODEL})

    def reset(self) -> None:
        """Forget the records (the models seen are kept)."""
        with self._lock:
            self._records.clear()


def answer_text(model: str, key: str | None) -> str:
    """The deterministic answer: ``fake:{model}:{key}``."""
    return f"fake:{model}:{key or ''}"


def split_answer(text: str) -> list[str]:
    """The streamed pieces of an answer: one per ``:``-separated part, separators kept."""
    pieces = [part + ":" for part in text.split(":")]
    pieces[-1] = pieces[-1][:-1]
    return [piece for piece in pieces if piece]


def bearer_key(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header, or ``None``."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


class _Server(ThreadingHTTPServer):
    """The HTTP server: daemon handler threads, and a registry of open connections.

    ``stopping`` is set when the fake stops; waiting handlers watch it. ``close_connections``
    shuts down every open socket, so idle keep-alive handlers wake up and exit too.
    """

    daemon_threads = True
    allow_reuse_address = False
    request_queue_size = 128  # the listen backlog; the default 5 resets bursts of concurrent clients

    def __init__(self, provider: FakeProvider) -> None:
        self.provider = provider
        self.stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def close_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients going away mid-response is routine here: stay quiet."""


class _Handler(BaseHTTPRequestHandler):
    """Answers one connection's requests on behalf of ``server.provider``."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # small writes (headers, then body; SSE events) go out at once
    server: _Server

    # -- connection lifecycle ------------------------------------------------

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.untrack(self.connection)

    def log_message(self, format: str, *args: Any) -> None:
        """No access log on stderr."""

    # -- routing -------------------------------------------------------------

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path in _HEALTH_PATHS:
            self._send_json(200, {"status": "ok"})
        elif path in _MODELS_PATHS:
            models = self.server.provider.log.models()
            self._send_json(200, {"object": "list", "data": [
                {"id": model, "object": "model", "created": 0, "owned_by": "fake"} for model in models]})
        else:
            self._send_error(404, "invalid_request_error", "not_found", f"No route GET {path}")

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0]
        body = self._read_body()
        api = _API_PATHS.get(path)
        if api is None and path not in _COUNT_TOKENS_PATHS:
            self._send_error(404, "invalid_request_error", "not_found", f"No route POST {path}")
            return
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            payload = None
        if not isinstance(payload, dict):
            self._send_error(400, "invalid_request_error", "invalid_json", "Request body is not a JSON object.")
            return
        if api is None:
            self._count_tokens(path, payload)
        else:
            self._complete(path, api, payload)

    # -- answers -------------------------------------------------------------

    def _key(self) -> str | None:
        """The bearer token, or Anthropic's ``x-api-key``."""
        return bearer_key(self.headers.get("Authorization")) or self.headers.get("x-api-key") or None

    def _record(self, path: str, api: str, payload: dict[str, Any], outcome: str) -> None:
        self.server.provider.log.add(RequestRecord(
            path=path, api=api, model=payload.get("model") if isinstance(payload.get("model"), str) else None,
            key=self._key(), stream=payload.get("stream") is True,
            request_id=self.headers.get("x-request-id"),
            messages_text=conversation.prompt_text(api, payload), outcome=outcome,
            tools=conversation.tool_names(api, payload), tool_results=conversation.tool_results(api, payload),
            thinking=conversation.thinking_request(api, payload), body=payload))

    def _count_tokens(self, path: str, payload: dict[str, Any]) -> None:
        """Anthropic's token counting: the words of the prompt."""
        self._record(path, "count_tokens", payload, "ok")
        self._send_json(200, {"input_tokens": conversation.prompt_words(conversation.MESSAGES, payload)})

    def _complete(self, path: str, api: str, payload: dict[str, Any]) -> None:
        provider = self.server.provider
        model = payload.get("model") if isinstance(payload.get("model"), str) else None
        key = self._key()
        refusal = conversation.thinking_refusal(api, payload) if provider.strict_thinking else None
        mode = "400" if refusal else provider.plan.take(key, model)
        step = provider.step_for(api, payload)
        outcome = mode or ("script" if step is not None else "ok")
        self._record(path, api, payload, outcome)

        if refusal:
            self._send_json(400, {"type": "error", "error": {"type": "invalid_request_error", "message": refusal}})
        elif mode in _HTTP_ERRORS:
            status, error_type, code, message = _HTTP_ERRORS[mode]
            headers = {"Retry-After": provider.retry_after} if mode == "429" and provider.retry_after else {}
            self._send_error(status, error_type, code, message, headers)
        elif mode == "hang":
            self._hang()
        elif mode == "drop":
            self._drop()
        elif mode in ("401-echo", "400-echo"):
            echoed = (f"Incorrect API key provided: {key}. Authorization: {self.headers.get('Authorization')}; "
                      f"x-api-key: {self.headers.get('x-api-key')}")
            self._send_error(int(mode[:3]), "invalid_request_error", "invalid_api_key", echoed,
                             {"x-echoed-key": key or ""})
        elif mode in ("cut", "stall", "garbage") or (mode in STREAM_MODES and payload.get("stream") is not True):
            self._broken({"stall-stream": "stall", "empty-stream": "cut", "cut-stream": "cut"}.get(mode, mode))
        elif mode == "cut-stream":
            self._stream_cut()
        elif mode in ("stall-stream", "empty-stream"):
            self._stream_headers_only(stall=mode == "stall-stream")
        else:
            answer = conversation.Answer(
                model=model or DEFAULT_MODEL, prompt_tokens=conversation.prompt_words(api, payload),
                cache_read=provider.cache_read_tokens, cache_write=provider.cache_write_tokens,
                thinking=conversation.thinking_request(api, payload) is not None)
            if isinstance(step, conversation.ToolCall):
                answer.tool_call = step
            else:
                answer.text = step.text if isinstance(step, conversation.Reply) else answer_text(answer.model, key)
            self._answer(api, answer, payload)

    def _answer(self, api: str, answer: conversation.Answer, payload: dict[str, Any]) -> None:
        stream = payload.get("stream") is True
        if api == conversation.CHAT and not answer.tool_call and not answer.thinking:
            # The default answer keeps its historic shape: one streamed piece per ':'-separated part.
            if stream:
                options = payload.get("stream_options")
                include_usage = isinstance(options, dict) and options.get("include_usage") is True
                self._stream_answer(answer, include_usage)
            else:
                self._send_answer(answer)
        elif api == conversation.CHAT:
            if stream:
                options = payload.get("stream_options")
                include_usage = isinstance(options, dict) and options.get("include_usage") is True
                self._stream_events([(None, e) for e in conversation.chat_events(answer, include_usage)],
                                    done=True)
            else:
                self._send_json(200, conversation.chat_body(answer))
        elif api == conversation.MESSAGES:
            if stream:
                self._stream_events(conversation.messages_events(answer))
            else:
                self._send_json(200, conversation.messages_body(answer))
        elif stream:
            self._stream_events(conversation.responses_events(answer))
        else:
            self._send_json(200, conversation.responses_body(answer))

    def _send_answer(self, answer: conversation.Answer) -> None:
        self._send_json(200, {
            "id": _completion_id(), "object": "chat.completion", "created": int(time.time()),
            "model": answer.model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": answer.text},
                         "logprobs": None, "finish_reason": "stop"}],
            "usage": conversation.chat_usage(answer, len(split_answer(answer.text)))})

    def _stream_answer(self, answer: conversation.Answer, include_usage: bool) -> None:
        pieces = split_answer(answer.text)
        base = {"id": _completion_id(), "object": "chat.completion.chunk",
                "created": int(time.time()), "model": answer.model}

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
            return {**base, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                         "finish_reason": finish_reason}]}

        events: list[dict[str, Any]] = [chunk({"role": "assistant", "content": ""})]
        events += [chunk({"content": piece}) for piece in pieces]
        events.append(chunk({}, "stop"))
        if include_usage:
            events.append({**base, "choices": [], "usage": conversation.chat_usage(answer, len(pieces))})
        self._stream_events([(None, event) for event in events], done=True)

    def _begin_event_stream(self) -> None:
        """A 200 answer's headers for server-sent events sent in HTTP chunks."""
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _stream_events(self, events: list[tuple[str | None, dict[str, Any]]], done: bool = False) -> None:
        """Server-sent events, one HTTP chunk each (``event:`` line when named; ``[DONE]`` if ``done``)."""
        self._begin_event_stream()
        try:
            for index, (name, event) in enumerate(events):
                if index and self._pause(self.server.provider.chunk_delay_s):
                    self.close_connection = True
                    return
                head = f"event: {name}\n" if name else ""
                self._write_chunk(f"{head}data: {json.dumps(event)}\n\n".encode())
            if done:
                self._write_chunk(b"data: [DONE]\n\n")
            self._write_chunk(b"")
        except OSError:
            self.close_connection = True

    # -- failure modes -------------------------------------------------------

    def _hang(self) -> None:
        """Send nothing until the client disconnects or the fake stops."""
        self.close_connection = True
        while not self.server.stopping.wait(_POLL_S):
            if self._client_gone():
                return

    def _drop(self) -> None:
        """Close the connection abruptly, without a byte of response."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
        self.connection.close()

    def _broken(self, mode: str) -> None:
        """A 200 that breaks after its headers: half its body ("cut"), nothing ("stall"), not JSON ("garbage")."""
        self.close_connection = True
        message = {"role": "assistant", "content": "a cut answer"}
        body = json.dumps({"id": _completion_id(), "object": "chat.completion",
                           "choices": [{"index": 0, "message": message, "finish_reason": "stop"}]}).encode()
        if mode == "garbage":
            body = b"<html>502 Bad Gateway</html>"
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if mode == "stall":
                self.wfile.flush()
                self._hang()
                return
            self.wfile.write(body if mode == "garbage" else body[: len(body) // 2])
            self.wfile.flush()
        except OSError:
            return
        if mode != "garbage":
            self._drop()

    def _stream_cut(self) -> None:
        """A chat stream's first two events, then the connection closed without the ending chunk."""
        self.close_connection = True
        try:
            self._begin_event_stream()
            for piece in ("fake", ":"):
                event = {"id": "chatcmpl-cut", "object": "chat.completion.chunk", "created": 0, "model": "m",
                         "choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                self._write_chunk(f"data: {json.dumps(event)}\n\n".encode())
        except OSError:
            return
        self._drop()

    def _stream_headers_only(self, *, stall: bool) -> None:
        """A 200 event stream's headers, then nothing: held open ("stall-stream") or closed ("empty-stream")."""
        self.close_connection = True
        try:
            self._begin_event_stream()
            self.wfile.flush()
        except OSError:
            return
        if stall:
            self._hang()
        else:
            self._drop()

    def _client_gone(self) -> bool:
        """Whether the peer has closed its end (readable with nothing to read) or the socket failed."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True

    def _pause(self, seconds: float) -> bool:
        """Sleep between stream chunks; True when the fake is stopping."""
        if seconds > 0:
            return self.server.stopping.wait(seconds)
        return self.server.stopping.is_set()

    # -- HTTP plumbing -------------------------------------------------------

    def _read_body(self) -> bytes:
        """The request body, by Content-Length or chunked transfer encoding."""
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            body = b""
            while True:
                size = int(self.rfile.readline().split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass  # trailers
                    return body
                body += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _write_chunk(self, data: bytes) -> None:
        """Send one HTTP/1.1 chunk right away (an empty one ends the body)."""
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _send_json(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            self.close_connection = True

    def _send_error(self, status: int, error_type: str, code: str, message: str,
                    headers: dict[str, str] | None = None) -> None:
        self._send_json(status, {"error": {"message": message, "type": error_type,
                                           "param": None, "code": code}}, headers)


def _completion_id() -> str:
    return f"chatcmpl-fake-{uuid.uuid4().hex[:24]}"


class FakeProvider:
    """A fake OpenAI-compatible provider on ``127.0.0.1`` at a port the OS picks.

    Use as a context manager, or call ``start()`` and ``stop()``. ``chunk_delay_s`` is the
    pause between streamed events (default 0); ``strict_thinking`` keeps Anthropic's thinking rule
    (default off). See the module docstring for the behaviour.
    """

    def __init__(self, chunk_delay_s: float = 0.0, strict_thinking: bool = False) -> None:
        self.chunk_delay_s = chunk_delay_s
        self.strict_thinking = strict_thinking
        #: The Retry-After a "429" carries (None: none at all).
        self.retry_after: str | None = "1"
        #: Prompt tokens every answer reports as read from, and written to, the provider's prompt cache.
        self.cache_read_tokens = 0
        self.cache_write_tokens = 0
        self.plan = FailurePlan()
        self.log = RequestLog()
        self._scripts: list[Script] = []
        self._scripts_lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------

    def start(self) -> FakeProvider:
        """Start serving (no-op when already started); returns ``self``."""
        if self._server is None:
            self._server = _Server(self)
            self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": _POLL_S},
                                            name=f"fake-provider-{self.port}", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close every connection, hanging ones included; idempotent."""
        server, thread = self._server, self._thread
        if server is None:
            return
        self._server = self._thread = None
        server.stopping.set()
        server.shutdown()
        server.server_close()
        server.close_connections()
        if thread is not None:
            thread.join(timeout=2)

    def __enter__(self) -> FakeProvider:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # -- addresses -----------------------------------------------------------

    @property
    def port(self) -> int:
        """The port it listens on (only while started)."""
        if self._server is None:
            raise RuntimeError("FakeProvider is not running")
        return int(self._server.server_address[1])

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT/v1``, the OpenAI-style API base."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def root_url(self) -> str:
        """``http://127.0.0.1:PORT``, the Anthropic-style API base."""
        return f"http://127.0.0.1:{self.port}"

    # -- failures and records ------------------------------------------------

    def fail(self, mode: str, *, key: str | None = None, model: str | None = None,
             times: int | None = None) -> FailureRule:
        """Fail requests matching ``key`` and ``model`` (``None``: any) in ``mode``.

        ``times`` limits how many matching requests are affected (``None``: until ``clear()``).
        Newer rules are checked first.
        """
        if mode not in FAILURE_MODES:
            raise ValueError(f"unknown failure mode {mode!r}; expected one of {', '.join(FAILURE_MODES)}")
        if times is not None and times < 1:
            raise ValueError("times must be at least 1 (or None for no limit)")
        rule = FailureRule(mode, key=key, model=model, remaining=times)
        self.plan.add(rule)
        return rule

    def clear(self) -> None:
        """Remove every failure rule."""
        self.plan.clear()

    @property
    def requests(self) -> list[RequestRecord]:
        """A snapshot of every request received so far, oldest first."""
        return self.log.snapshot()

    def reset_requests(self) -> None:
        """Forget the requests received so far."""
        self.log.reset()

    # -- scripted conversations ----------------------------------------------

    def script(self, *steps: Step, model: str | None = None) -> Script:
        """Answer turns of requests to ``model`` (``None``: any) with ``steps`` (see fake_conversation).

        A newer script for the same model replaces the older one; ``clear_scripts()`` removes all.
        """
        return self.use(Script(list(steps), model))

    def use(self, script: Script) -> Script:
        """Answer with `script` (a Script, or a subclass whose `step_for` decides per request)."""
        with self._scripts_lock:
            self._scripts = [s for s in self._scripts if s.model != script.model] + [script]
        return script

    def clear_scripts(self) -> None:
        """Back to the default answer for every request."""
        with self._scripts_lock:
            self._scripts.clear()

    def step_for(self, api: str, payload: dict[str, Any]) -> Step | None:
        """The scripted step answering this request: a model's own script first, then the catch-all."""
        model = payload.get("model")
        with self._scripts_lock:
            scripts = sorted(self._scripts, key=lambda s: s.model is None)
        for script in scripts:
            if script.model is None or script.model == model:
                return script.step_for(api, payload)
        return None
