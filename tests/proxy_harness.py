"""The front proxy in the test process: `FrontProxy(...).app()` driven by starlette's TestClient.

Nothing is spawned. The cloud is tests/fake_provider.py's FakeProvider (a loopback HTTP server in a
thread) as two OpenAI-compatible backends, `fake/model-a` and `fake/model-b`, of the key pool
FAKE_API_KEY (`key-one`) and FAKE_API_KEY_2 (`key-two`). Local workers are more FakeProviders, given
to the proxy as `record.direct_workers`. LiteLLM is `FakeLiteLLM`, which answers the liveness check
and Anthropic messages. The gateway record is built the way `broke start` builds it
(broke/gateway/supervisor.py) but never written to `run/`: were the fake LiteLLM not to answer,
the proxy could not start a real one (`ensure_litellm` finds no record).

Used as a plugin (`pytest_plugins = ("proxy_harness",)`; a test module imports names from here only
for type checking, so that pytest imports it first and rewrites its asserts).
"""
from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.testclient import TestClient

from broke import changes
from broke.catalog import load_catalog
from broke.control.litellm_config import deployments
from broke.control.runfiles import GatewayRecord, TokenStore, key_ref
from broke.gateway.auth import CLIENT
from broke.gateway.proxy import FrontProxy
from broke.health import EventLog, Health, load_health
from broke.keys import provider_env
from broke.procs import ProcessRecord
from broke.state.store import StateStore
from fake_provider import FakeProvider

#: The cloud's key pool: variable -> value (the fake echoes the value it was sent).
KEYS = {"FAKE_API_KEY": "key-one", "FAKE_API_KEY_2": "key-two"}
MODEL_A, MODEL_B = "fake/model-a", "fake/model-b"
#: A backend of a provider broke does not speak (Gemini, without an api_base): only LiteLLM reaches it.
GEMINI = "gemini/fake-gemini"
MASTER_KEY = "sk-broke-internal-test"


class FakeLiteLLM:
    """A stand-in for the LiteLLM proxy on loopback: 200 on `/health/liveliness` (the proxy's
    readiness check), and an Anthropic message `litellm:{model}` for every POST, remembering each
    request's path, authorization header and body."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        #: When set, every POST gets this status with an error echoing the authorization it was sent
        #: (as LiteLLM relays an upstream's error that quotes its key).
        self.echo_status: int | None = None
        requests, fake = self.requests, self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                alive = self.path == "/health/liveliness"
                self._send(200 if alive else 404, {"status": "alive" if alive else "not found"})

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length") or 0)) or b"{}")
                requests.append({"path": self.path, "authorization": self.headers.get("authorization"),
                                 "body": body})
                if fake.echo_status:
                    self._send(fake.echo_status, {"error": {
                        "message": f"Authentication Error: {self.headers.get('authorization')} is not valid",
                        "type": "auth_error"}})
                    return
                self._send(200, {"id": "msg_litellm", "type": "message", "role": "assistant",
                                 "model": body.get("model"), "stop_reason": "end_turn",
                                 "content": [{"type": "text", "text": f"litellm:{body.get('model')}"}],
                                 "usage": {"input_tokens": 1, "output_tokens": 1}})

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.send_header("connection", "close")  # once stopped, nothing at all answers
                self.end_headers()
                self.wfile.write(data)
                self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:
                """No access log on stderr."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        """Stop serving and close the listening socket."""
        self.server.shutdown()
        self.server.server_close()


@dataclass
class Proxy:
    """A front proxy running in this process, and what a test needs to talk to it and check on it."""

    home: Path
    http: TestClient
    record: GatewayRecord
    token: str
    master_key: str
    front: FrontProxy | None = None  # the app's owner: its metrics and traffic, as /metrics renders them

    def metrics(self) -> str:
        """What /metrics would answer a loopback client (the test client's address is not one)."""
        assert self.front is not None
        return self.front.metrics.render(0)

    def post(self, path: str, body: dict[str, Any], *, token: str | None = None,
             headers: dict[str, str] | None = None) -> httpx.Response:
        """POST `body` with the client token (or `token`; "" sends none)."""
        token = self.token if token is None else token
        auth = {"authorization": f"Bearer {token}"} if token else {}
        return self.http.post(path, json=body, headers={**auth, **(headers or {})})

    def chat(self, model: str = "sonnet", *, token: str | None = None, **extra: Any) -> httpx.Response:
        """A chat completion for `model` saying "hi" (`extra`: more body fields)."""
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
        return self.post("/v1/chat/completions", body, token=token)

    def health(self) -> Health:
        """What the proxy recorded in BROKE_HOME/health.json."""
        return load_health(self.home / "health.json")

    def events(self) -> list[dict[str, Any]]:
        """The rotation log (run/rotation.log), oldest first."""
        return EventLog(self.home / "run" / "rotation.log").read(limit=1000)


@pytest.fixture
def store(broke_home: Path) -> StateStore:
    """The test home's state store (conftest's `broke_home` isolates BROKE_HOME)."""
    return StateStore(broke_home)


@pytest.fixture
def cloud(store: StateStore, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeProvider]:
    """The fake cloud as `fake/model-a` and `fake/model-b`, with KEYS in the environment (where the
    proxy reads provider keys, as `broke start` hands them over); sonnet goes to model-a alone."""
    fake = FakeProvider().start()
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    for backend in (MODEL_A, MODEL_B):
        changes.add_backend(store, backend, provider="openai-compatible", model=backend.split("/")[1],
                            api_base=fake.base_url, key_env="FAKE_API_KEY", pinned=False)
    changes.swap(store, [("sonnet", MODEL_A)])
    yield fake
    fake.stop()


@pytest.fixture
def gemini(store: StateStore, cloud: FakeProvider) -> str:
    """`GEMINI` added (the cloud's key pool) and made sonnet's backend: sonnet's requests need LiteLLM."""
    changes.add_backend(store, GEMINI, provider="gemini", model="fake-gemini", api_base=None,
                        key_env="FAKE_API_KEY", pinned=False)
    changes.swap(store, [("sonnet", GEMINI)])
    return GEMINI


@pytest.fixture
def workers() -> Iterator[Callable[[int], list[FakeProvider]]]:
    """`workers(n)`: n FakeProviders started to stand in for a local model's mlx_lm.server replicas."""
    started: list[FakeProvider] = []

    def make(count: int) -> list[FakeProvider]:
        fresh = [FakeProvider().start() for _ in range(count)]
        started.extend(fresh)
        return fresh

    yield make
    for fake in started:
        fake.stop()


@pytest.fixture
def litellm() -> Iterator[FakeLiteLLM]:
    """The LiteLLM stand-in every proxy of a test points at (`record.litellm.port`)."""
    fake = FakeLiteLLM()
    yield fake
    fake.stop()


@pytest.fixture
def start_proxy(broke_home: Path, store: StateStore, litellm: FakeLiteLLM) -> Iterator[Callable[..., Proxy]]:
    """`start_proxy(workers=..., first_byte_timeout_s=...)`: the front proxy for the state as it is
    now, its lifespan running (TestClient); `workers` maps a local backend to its worker FakeProviders;
    `wrap(app)` is served instead of the app (an ASGI middleware that watches what is sent)."""
    running = ExitStack()

    def start(*, workers: dict[str, list[FakeProvider]] | None = None,
              first_byte_timeout_s: float = 5.0, wrap: Callable[[Any], Any] | None = None) -> Proxy:
        pools = {backend: [w.base_url for w in fakes] for backend, fakes in (workers or {}).items()}
        env = provider_env(broke_home / ".env")
        items = deployments(store.load(), load_catalog(), env, pools)
        run = broke_home / "run"
        record = GatewayRecord(
            front=ProcessRecord(0, 0.0, 0, str(run / "gateway.log")),
            litellm=ProcessRecord(0, 0.0, litellm.port, str(run / "litellm.log")),
            deployments=sorted({d.name for d in items}),
            key_refs={d.key_env: key_ref(env[d.key_env]) for d in items if d.key_env},
            first_byte_timeout_s=first_byte_timeout_s, direct_workers=pools)
        token = TokenStore(broke_home).token_for(CLIENT)
        # Entered, the TestClient runs the app's lifespan (the proxy's aiohttp session) until teardown.
        front = FrontProxy(broke_home, record, MASTER_KEY)
        app = front.app()
        client = running.enter_context(TestClient(wrap(app) if wrap else app))
        return Proxy(broke_home, client, record, token, MASTER_KEY, front)

    with running:
        yield start
