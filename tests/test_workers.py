"""Real MLX workers (mlx_lm.server on CPU) serving tiny models made by make-tiny, behind the real gateway."""
from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import httpx
import psutil
import pytest
from typer.testing import CliRunner

from broke.cli.main import app
from broke.local.workers import find_worker, read_workers
from broke.procs import free_port
from conftest import add_fake_backends, module_home, run_cli, serving
from fake_provider import FakeProvider

pytestmark = pytest.mark.timeout(600)
ANSWER_A = "alpha beta gamma delta"
ANSWER_B = "one two three"


@pytest.fixture(scope="module")
def local_gateway(tmp_path_factory):
    """Two tiny local models, sonnet on one and opus on the other (falling back to the first), and
    haiku on a slow one that serves one request at a time, falling back to a (fake) cloud."""
    root = tmp_path_factory.mktemp("local")
    home = root / "home"
    fake = FakeProvider().start()
    with module_home(home):
        run_cli("local", "make-tiny", str(root / "tiny-a"), "--answer", ANSWER_A, "--add", "tiny-a")
        run_cli("local", "make-tiny", str(root / "tiny-b"), "--answer", ANSWER_B, "--add", "tiny-b")
        run_cli("local", "make-tiny", str(root / "tiny-slow"), "--layers", "16", "--seed", "3")
        run_cli("local", "add", str(root / "tiny-slow"), "--concurrency", "1")
        add_fake_backends(home, fake, "cloud")
        run_cli("swap", "sonnet=mlx/tiny-a", "opus=mlx/tiny-b", "haiku=mlx/tiny-slow")
        run_cli("fallback", "opus", "mlx/tiny-a")
        run_cli("fallback", "haiku", "fake/cloud")
        run_cli("worker", "start", "tiny-a")
        run_cli("worker", "start", "tiny-a", "--replica")  # a pool of two workers for sonnet
        try:
            with serving() as (port, token):
                yield {"home": home, "url": f"http://127.0.0.1:{port}", "token": token, "fake": fake}
        finally:
            fake.stop()


@pytest.fixture
def lg(local_gateway, monkeypatch):
    monkeypatch.setenv("BROKE_HOME", str(local_gateway["home"]))
    return local_gateway


def ask(lg, model="sonnet", stream=False, max_tokens=128000):
    body = {"model": model, "stream": stream, "max_tokens": max_tokens,
            "messages": [{"role": "user", "content": "what do you say?"}]}
    return httpx.post(lg["url"] + "/v1/chat/completions", json=body, timeout=60,
                      headers={"authorization": f"Bearer {lg['token']}"})


def streamed_text(raw: str) -> str:
    parts = []
    for line in raw.splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            for choice in json.loads(line[6:]).get("choices") or []:
                parts.append((choice.get("delta") or {}).get("content") or "")
    return "".join(parts)


def test_start_runs_the_routed_workers(lg):
    rows = json.loads(run_cli("worker", "list", "--json").stdout)
    assert sorted((r["backend"], r["state"]) for r in rows) == [
        ("mlx/tiny-a", "ready"), ("mlx/tiny-a", "ready"), ("mlx/tiny-b", "ready"), ("mlx/tiny-slow", "ready")]


def served_counts(home) -> dict[str, int]:
    """Chat requests each worker's log shows (mlx_lm.server logs one line per request)."""
    return {w.log: Path(w.log).read_text().count("POST /v1/chat/completions")
            for w in read_workers(home) if w.backend == "mlx/tiny-a"}


def test_two_workers_of_one_model_both_serve(lg):
    import asyncio

    before = served_counts(lg["home"])

    async def burst():
        async with httpx.AsyncClient(timeout=60) as http:
            body = {"model": "sonnet", "messages": [{"role": "user", "content": "hi"}]}
            return await asyncio.gather(*(
                http.post(lg["url"] + "/v1/chat/completions", json=body,
                          headers={"authorization": f"Bearer {lg['token']}"}) for _ in range(24)))

    answers = asyncio.run(burst())
    assert all(a.status_code == 200 and a.json()["choices"][0]["message"]["content"] == ANSWER_A
               for a in answers)
    after = served_counts(lg["home"])
    assert len(after) == 2
    assert all(after[log] > before.get(log, 0) for log in after), after
    # every answer names where it ran: this machine, and which of the two replicas
    ports = sorted(w.port for w in read_workers(lg["home"]) if w.backend == "mlx/tiny-a")
    assert {a.headers["x-broke-node"] for a in answers} == {"local"}
    assert {a.headers["x-broke-replica"] for a in answers} == {f"tiny-a@{p}" for p in ports}
    metrics = httpx.get(lg["url"] + "/metrics", timeout=10).text
    for p in ports:
        assert f'broke_replica_requests_total{{backend="mlx/tiny-a",node="local",replica="tiny-a@{p}"' in metrics


def test_restart_keeps_every_worker_replicas_included(lg):
    before = sorted((w.backend, w.pid, w.port) for w in read_workers(lg["home"]))
    assert len([b for b, _, _ in before if b == "mlx/tiny-a"]) == 2
    run_cli("restart")
    assert sorted((w.backend, w.pid, w.port) for w in read_workers(lg["home"])) == before
    answer = ask(lg)
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-broke-node"] == "local"


@pytest.mark.parametrize("stream", [False, True])
def test_chat_through_the_gateway_gets_the_deterministic_answer(lg, stream):
    answer = ask(lg, stream=stream)  # Claude Code-sized max_tokens is capped for the worker
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-broke-backend"] == "mlx/tiny-a"
    text = streamed_text(answer.text) if stream else answer.json()["choices"][0]["message"]["content"]
    assert text == ANSWER_A


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_messages_against_a_worker(lg, stream):
    body = {"model": "claude-opus-5-5", "max_tokens": 32000, "stream": stream,
            "messages": [{"role": "user", "content": "hello"}]}
    answer = httpx.post(lg["url"] + "/v1/messages", json=body, timeout=60,
                        headers={"x-api-key": lg["token"], "anthropic-version": "2023-06-01"})
    assert answer.status_code == 200, answer.text
    if stream:
        deltas = [json.loads(line[6:])["delta"].get("text", "") for line in answer.text.splitlines()
                  if line.startswith("data: ") and '"content_block_delta"' in line]
        assert "".join(deltas) == ANSWER_B
    else:
        assert answer.json()["content"][0]["text"] == ANSWER_B


TOOL_SCHEMA = {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"]}
TOOL_REQUESTS = {  # a request offering a tool, in each client API's own shape
    "/v1/chat/completions": {"messages": [{"role": "user", "content": "run it"}], "tools": [
        {"type": "function", "function": {"name": "shell", "description": "Run", "parameters": TOOL_SCHEMA}}]},
    "/v1/messages": {"max_tokens": 64, "messages": [{"role": "user", "content": "run it"}],
                     "tools": [{"name": "shell", "description": "Run", "input_schema": TOOL_SCHEMA}]},
    "/v1/responses": {"input": "run it", "tools": [
        {"type": "function", "name": "shell", "description": "Run", "parameters": TOOL_SCHEMA}]},
}


@pytest.mark.parametrize("path", list(TOOL_REQUESTS))
def test_a_worker_offered_tools_answers_in_the_clients_api_shape(lg, path):
    """A tiny model does not call tools, but a request offering them is served, in the shape asked for."""
    answer = httpx.post(lg["url"] + path, json={**TOOL_REQUESTS[path], "model": "sonnet"}, timeout=60,
                        headers={"authorization": f"Bearer {lg['token']}", "anthropic-version": "2023-06-01"})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["model"] == "sonnet"  # the name asked for, not the worker's
    if path == "/v1/chat/completions":
        assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"] == ANSWER_A
    elif path == "/v1/messages":
        assert body["type"] == "message" and body["content"] == [{"type": "text", "text": ANSWER_A}]
    else:
        message = [item for item in body["output"] if item["type"] == "message"][0]
        assert body["object"] == "response" and message["content"][0]["text"] == ANSWER_A


def test_thinking_asked_of_a_worker_is_ignored_and_the_answer_comes(lg):
    headers = {"authorization": f"Bearer {lg['token']}", "anthropic-version": "2023-06-01"}
    body = {"model": "sonnet", "max_tokens": 4096, "thinking": {"type": "enabled", "budget_tokens": 2048},
            "messages": [{"role": "user", "content": "hi"}]}
    answer = httpx.post(lg["url"] + "/v1/messages", json=body, headers=headers, timeout=60)
    assert answer.status_code == 200 and answer.json()["content"] == [{"type": "text", "text": ANSWER_A}]
    body = {"model": "sonnet", "reasoning_effort": "high", "messages": [{"role": "user", "content": "hi"}]}
    answer = httpx.post(lg["url"] + "/v1/chat/completions", json=body, headers=headers, timeout=60)
    assert answer.status_code == 200 and answer.json()["choices"][0]["message"]["content"] == ANSWER_A


PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
IMAGE_REQUESTS = {
    "/v1/chat/completions": [{"type": "text", "text": "look"},
                             {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}],
    "/v1/messages": [{"type": "text", "text": "look"},
                     {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}],
}


@pytest.mark.parametrize("path", list(IMAGE_REQUESTS))
def test_an_image_for_a_worker_gets_its_refusal_passed_through(lg, path):
    """mlx_lm.server serves text only: the client reads why, from either API (no failover, no 5xx)."""
    body = {"model": "sonnet", "max_tokens": 64, "messages": [{"role": "user", "content": IMAGE_REQUESTS[path]}]}
    answer = httpx.post(lg["url"] + path, json=body, timeout=60,
                        headers={"authorization": f"Bearer {lg['token']}", "anthropic-version": "2023-06-01"})
    assert 400 <= answer.status_code < 500 and answer.headers["x-broke-attempts"] == "1", answer.text
    assert "Only 'text' content type is supported" in answer.text


def test_a_killed_worker_is_restarted_and_serves_again(lg):
    record = find_worker(lg["home"], "tiny-b")
    server = psutil.Process(record.pid).children()[0]
    server.send_signal(signal.SIGKILL)
    server.wait(timeout=10)
    # Meanwhile opus follows its fallback chain to tiny-a.
    during = ask(lg, "opus")
    assert during.status_code == 200
    assert during.headers["x-broke-backend"] in ("mlx/tiny-b", "mlx/tiny-a")
    def status_of_b() -> str:
        rows = json.loads(run_cli("model-state", "--json").stdout)
        return {r["name"]: r["status"] for r in rows}["mlx/tiny-b"]

    # The supervisor restarts the server; once it answers, the worker's fresh "healthy" record
    # outranks the bench the failed request put on the backend.
    deadline = time.monotonic() + 60
    while status_of_b() != "healthy":
        assert time.monotonic() < deadline, "the worker was not restarted within 60 s"
        time.sleep(0.3)
    assert psutil.Process(record.pid).children()[0].pid != server.pid
    after = ask(lg, "opus")
    assert after.status_code == 200 and after.headers["x-broke-backend"] == "mlx/tiny-b"
    assert after.json()["choices"][0]["message"]["content"] == ANSWER_B


def test_a_busy_worker_overflows_to_the_next_candidate(lg):
    """haiku's worker serves one request at a time: of six at once, the others go to the cloud fallback."""
    import asyncio

    slow = find_worker(lg["home"], "tiny-slow")
    server = psutil.Process(slow.pid).children()[0].cmdline()
    assert server[server.index("--decode-concurrency") + 1] == "1"  # what it batches is what it is sent
    alone = ask(lg, "haiku", max_tokens=200)
    assert alone.status_code == 200 and alone.headers["x-broke-backend"] == "mlx/tiny-slow"

    async def burst():
        async with httpx.AsyncClient(timeout=120) as http:
            body = {"model": "haiku", "max_tokens": 200, "messages": [{"role": "user", "content": "go on"}]}
            return await asyncio.gather(*(
                http.post(lg["url"] + "/v1/chat/completions", json=body,
                          headers={"authorization": f"Bearer {lg['token']}"}) for _ in range(6)))

    answers = asyncio.run(burst())
    assert [a.status_code for a in answers] == [200] * 6
    served = [a.headers["x-broke-backend"] for a in answers]
    assert served.count("mlx/tiny-slow") >= 1 and served.count("fake/cloud") >= 3, served
    metrics = httpx.get(lg["url"] + "/metrics").text
    busy = [line for line in metrics.splitlines()
            if line.startswith("broke_failovers_total") and 'reason="busy"' in line and "mlx/tiny-slow" in line]
    assert busy and busy[0].endswith(f" {served.count('fake/cloud')}"), busy
    log = [json.loads(line) for line in (lg["home"] / "run" / "rotation.log").read_text().splitlines()]
    assert sum(1 for e in log if e.get("reason") == "busy" and e.get("backend") == "mlx/tiny-slow") \
        == served.count("fake/cloud")
    # Free again, the worker takes the next request.
    assert ask(lg, "haiku", max_tokens=8).headers["x-broke-backend"] == "mlx/tiny-slow"


def test_a_dead_replica_is_skipped_not_the_pool(lg):
    """One of sonnet's two workers dies: its twin serves every request, the fallback gets none."""
    from broke.health import HealthStore

    run_cli("fallback", "sonnet", "mlx/tiny-b")
    dead = read_workers(lg["home"])
    dead = [w for w in dead if w.backend == "mlx/tiny-a"][0]
    server = psutil.Process(dead.pid).children()[0]
    try:
        server.send_signal(signal.SIGKILL)
        server.wait(timeout=10)
        answers = [ask(lg) for _ in range(4)]
        assert [a.status_code for a in answers] == [200] * 4
        assert [a.headers["x-broke-backend"] for a in answers] == ["mlx/tiny-a"] * 4
        states = {r["name"]: r["status"] for r in json.loads(run_cli("model-state", "--json").stdout)}
        assert states["mlx/tiny-a"] == "healthy"
    finally:
        CliRunner().invoke(app, ["fallback", "sonnet", "--clear"])
        deadline = time.monotonic() + 60  # leave the pool whole for the tests after this one
        while True:
            record = HealthStore(lg["home"]).load().workers.get(dead.key)
            if record and record.effective(time.time()) == "healthy" and record.reason == "ready":
                break
            assert time.monotonic() < deadline, "the killed replica was not restarted within 60 s"
            time.sleep(0.3)


def test_worker_stop_leaves_no_process(lg, tmp_path):
    run_cli("local", "make-tiny", str(tmp_path / "tiny-c"), "--add", "tiny-c")
    run_cli("worker", "start", "tiny-c")
    record = find_worker(lg["home"], "tiny-c")
    family = [psutil.Process(record.pid)] + psutil.Process(record.pid).children(recursive=True)
    assert len(family) >= 2  # the supervisor and its mlx_lm.server
    run_cli("worker", "stop", "tiny-c")
    _, alive = psutil.wait_procs(family, timeout=15)
    assert alive == []
    assert "mlx/tiny-c" not in {w.backend for w in read_workers(lg["home"])}


def test_offline_demo_on_a_fresh_home(tmp_path, monkeypatch):
    """No keys, no models: `start` then `probe sonnet` answers from the demo model."""
    monkeypatch.setenv("BROKE_HOME", str(tmp_path / "fresh"))
    run_cli("start", "--port", str(free_port()))
    try:
        probe = json.loads(run_cli("probe", "sonnet", "--json").stdout)
        assert probe["status"] == 200 and probe["backend"] == "mlx/broke-demo"
        assert probe["answer"].startswith("Hello from broke's demo model")
        assert "demo" in run_cli("list").stdout
    finally:
        run_cli("stop")


def test_local_models_lists_what_is_on_disk(lg, tmp_path):
    run_cli("local", "make-tiny", str(tmp_path / "models" / "tiny-d"))
    rows = json.loads(run_cli("local", "models", "--dir", str(tmp_path / "models"), "--json").stdout)
    tiny = [r for r in rows if r["name"] == "tiny-d"]
    assert tiny and tiny[0]["loadable"] is True and tiny[0]["model_type"] == "llama"
    assert tiny[0]["size_bytes"] > 0


def test_local_add_of_an_unreachable_repo_is_a_clear_error(lg, monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = CliRunner().invoke(app, ["local", "add", "nobody/not-a-model"])
    assert result.exit_code == 1
    assert "cannot download nobody/not-a-model" in result.stderr
    assert "Traceback" not in result.output


def test_a_node_behind_a_token_joins_the_pool(tmp_path, monkeypatch):
    """A worker for other machines (non-loopback address, token) joins a gateway as a node."""
    home = tmp_path / "nodehome"
    monkeypatch.setenv("BROKE_HOME", str(home))
    run_cli("local", "make-tiny", str(tmp_path / "tiny-n"), "--answer", ANSWER_B, "--add", "tiny-n")
    port = free_port()
    run_cli("worker", "start", "tiny-n", "--host", "127.0.0.2", "--port", str(port), "--token", "node-secret")
    base = f"http://127.0.0.2:{port}/v1"
    try:
        assert httpx.get(base + "/models").status_code == 401
        listed = httpx.get(base + "/models", headers={"authorization": "Bearer node-secret"})
        assert listed.status_code == 200
        assert [m["id"] for m in listed.json()["data"]] == ["tiny-n"]  # its name, not this machine's path
        assert str(tmp_path) not in listed.text
        (home / ".env").write_text("NODE_TOKEN=node-secret\n")
        run_cli("node", "add", "studio", base, "--model", "tiny-n", "--token-env", "NODE_TOKEN")
        run_cli("swap", "haiku", "mlx/tiny-n")
        run_cli("start", "--port", str(free_port()))
        probe = json.loads(run_cli("probe", "haiku", "--json").stdout)
        assert probe["status"] == 200 and probe["answer"] == ANSWER_B
        config = (home / "run" / "litellm_config.json").read_text()
        assert base in config and "os.environ/NODE_TOKEN" in config
        assert "node-secret" not in config
        assert json.loads(run_cli("node", "list", "--json").stdout)["studio"]["url"] == base
    finally:
        run_cli("stop")


