"""Claude Code and Codex doing agent work through broke: tool calls, their results, streaming, thinking."""
from __future__ import annotations

import json
import re
import shutil
import tempfile
import uuid
from pathlib import Path

import httpx
import psutil
import pytest
from typer.testing import CliRunner

from broke.catalog import load_catalog
from broke.cli.main import app
from broke.control import supervisor
from broke.control.runfiles import TokenStore, read_record
from broke.procs import free_port
from broke.sandbox.support import check as sandbox_support
from clients import diagnosis, run_broke
from conftest import add_fake_backends, run_cli
from fake_conversation import ENCRYPTED_PREFIX, THINKING_TEXT, Reply, ToolCall
from fake_provider import FakeProvider

pytestmark = pytest.mark.timeout(600)

CLAUDE_SLOTS = ("sonnet", "opus", "haiku", "subagent")
CODEX_SLOTS = ("gpt-5-codex", "gpt-5", "gpt-5-mini")
GEMINI_SLOTS = ("gemini-pro", "gemini-flash")
#: The Anthropic-native backend serves a model LiteLLM knows, so it applies that model's capabilities
#: (thinking) as it would for the real provider.
ANTHROPIC_MODEL = "claude-sonnet-4-5-20250929"
STRICT_UNAVAILABLE = sandbox_support().profiles["strict"]  # why bubblewrap cannot confine here, if it cannot
OPENAI_MODEL = "gpt-5-codex"


@pytest.fixture(scope="module")
def agents(tmp_path_factory):
    """A home with fake backends of every kind: OpenAI-compatible (through LiteLLM's translation),
    Anthropic-native and OpenAI-native (each the provider's own API, at the fake's address)."""
    home = tmp_path_factory.mktemp("agents") / "home"
    fake = FakeProvider(strict_thinking=True).start()  # Anthropic's thinking rule kept, as the provider does
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BROKE_HOME", str(home))
        add_fake_backends(home, fake, "model-a", "model-b")
        run_cli("backend", "add", "fakeant/claude-fake", "--provider", "anthropic", "--api-base", fake.root_url,
                "--model", ANTHROPIC_MODEL, "--key-env", "FAKE_API_KEY")
        # A local model's worker on another machine, here the fake speaking OpenAI: what a worker receives.
        run_cli("node", "add", "fake-worker", fake.base_url, "--model", "tiny-remote")
        run_cli("backend", "add", "fakeoai/gpt-fake", "--provider", "openai", "--api-base", fake.base_url,
                "--model", OPENAI_MODEL, "--key-env", "FAKE_API_KEY")
        try:
            yield {"home": home, "fake": fake, "port": free_port()}
        finally:
            CliRunner().invoke(app, ["stop"])
            fake.stop()


@pytest.fixture
def agent(agents, monkeypatch):
    monkeypatch.setenv("BROKE_HOME", str(agents["home"]))
    agents["fake"].clear_scripts()
    agents["fake"].reset_requests()
    return agents


def route(slots, backend: str) -> None:
    run_cli("swap", *[f"{slot}={backend}" for slot in slots])


def scripted(fake: FakeProvider) -> list[dict]:
    """The requests the script answered (side requests, such as title generation, left out)."""
    return [r for r in fake.requests if r["outcome"] == "script"]


def assert_done(agent, done, text: str) -> None:
    assert done.returncode == 0 and text in done.stdout, (
        f"exit {done.returncode}\nstdout: {done.stdout}\nstderr: {done.stderr[-3000:]}\n{diagnosis(agent['home'])}")


def sent_back_call(record: dict) -> dict:
    """The arguments of the tool call the client sends back in its history, as the fake received them."""
    body = record["body"]
    if record["api"] == "messages":
        uses = [b for m in body["messages"] if m["role"] == "assistant" and isinstance(m["content"], list)
                for b in m["content"] if b.get("type") == "tool_use"]
        return uses[-1]["input"]
    if record["api"] == "chat":
        calls = [c for m in body["messages"] if m["role"] == "assistant" for c in m.get("tool_calls") or []]
        return json.loads(calls[-1]["function"]["arguments"])
    calls = [i for i in body["input"] if i.get("type") == "function_call"]
    return json.loads(calls[-1]["arguments"])


CLAUDE_CASES = {
    # backend, tool, the fake's API behind broke
    "anthropic-native-write": ("fakeant/claude-fake", "Write", "messages"),
    "openai-compatible-bash": ("fake/model-a", "Bash", "chat"),
}


def claude_tool_call(tool: str, target, marker: str) -> ToolCall:
    if tool == "Write":
        return ToolCall("Write", {"file_path": str(target), "content": marker})
    return ToolCall("Bash", {"command": f"printf %s {marker} > {target.name}", "description": "write the marker"})


@pytest.mark.parametrize("thinking", [False, True], ids=["plain", "thinking"])
@pytest.mark.parametrize("case", list(CLAUDE_CASES))
def test_claude_code_runs_a_tool_and_reads_its_result(agent, tmp_path, client_bin, case, thinking):
    backend, tool, api = CLAUDE_CASES[case]
    fake, marker, target = agent["fake"], uuid.uuid4().hex, tmp_path / "made-by-agent.txt"
    route(CLAUDE_SLOTS, backend)
    call = claude_tool_call(tool, target, marker)
    fake.script(call, Reply(f"done, wrote {marker}"))
    env = {"MAX_THINKING_TOKENS": "2048"} if thinking else {}
    done = run_broke(agent, tmp_path, client_bin, "claude", "-p", "make the file", "--allowedTools", tool, env=env)
    assert_done(agent, done, f"done, wrote {marker}")
    assert target.read_text() == marker
    asked, answered = scripted(fake)
    assert asked["api"] == answered["api"] == api and asked["stream"] and answered["stream"]
    assert asked["tool_results"] == [] and len(answered["tool_results"]) == 1
    if tool == "Write":
        assert "File created successfully" in answered["tool_results"][0]
    assert sent_back_call(answered) == call.arguments  # streamed in fragments, rebuilt whole, sent back intact
    if thinking:  # asked for, answered first, and sent back with the tool call (signed, on Anthropic)
        assert asked["thinking"] is not None, asked["body"].keys()
        said = [m for m in answered["body"]["messages"] if m["role"] == "assistant"][-1]
        if api == "messages":
            assert said["content"][0]["type"] == "thinking" and said["content"][0]["signature"].startswith("fakesig")
        else:
            assert said["reasoning_content"] == THINKING_TEXT


@pytest.mark.skipif(bool(STRICT_UNAVAILABLE), reason=f"no strict sandbox here: {STRICT_UNAVAILABLE}")
def test_claude_code_writes_a_file_inside_the_strict_sandbox(agent, tmp_path, client_bin):
    fake, marker = agent["fake"], uuid.uuid4().hex
    work = tmp_path / "project"
    work.mkdir()
    target = work / "made-in-sandbox.txt"
    route(CLAUDE_SLOTS, "fakeant/claude-fake")
    fake.script(ToolCall("Write", {"file_path": str(target), "content": marker}), Reply(f"sandboxed {marker}"))
    done = run_broke(agent, tmp_path, client_bin, "claude", "--sandbox", "strict", "-p", "make the file",
                     "--allowedTools", "Write", cwd=work)
    assert_done(agent, done, f"sandboxed {marker}")
    assert target.read_text() == marker  # the tool ran in the working directory, the one place it may write
    asked, answered = scripted(fake)
    assert "File created successfully" in answered["tool_results"][0]
    audit = (agent["home"] / "run" / "launch_audit.log").read_text().splitlines()
    assert json.loads(audit[-1])["sandbox"] == "strict"


@pytest.mark.skipif(bool(STRICT_UNAVAILABLE), reason=f"no strict sandbox here: {STRICT_UNAVAILABLE}")
def test_codex_runs_a_command_inside_the_strict_sandbox(agent, tmp_path, client_bin):
    fake, marker = agent["fake"], uuid.uuid4().hex
    work = tmp_path / "project"
    work.mkdir()
    route(CODEX_SLOTS, "fakeoai/gpt-fake")
    fake.script(ToolCall("exec_command", {"cmd": f"printf %s {marker} > made.txt && echo wrote-{marker}"}),
                Reply(f"sandboxed {marker}"))
    done = run_broke(agent, tmp_path, client_bin, "codex", "--sandbox", "strict", "exec", "--skip-git-repo-check",
                     "--dangerously-bypass-approvals-and-sandbox", "make the file", cwd=work)
    assert_done(agent, done, f"sandboxed {marker}")
    assert (work / "made.txt").read_text() == marker
    assert f"wrote-{marker}" in scripted(fake)[1]["tool_results"][0]


CODEX_CASES = {
    # backend, the fake's API behind broke
    "openai-compatible": ("fake/model-a", "chat"),  # /v1/responses translated onto chat completions by broke
    "openai-native": ("fakeoai/gpt-fake", "responses"),
    # /v1/responses translated to Anthropic messages by broke: with reasoning on, the follow-up carries
    # the reasoning without its signed original, which Anthropic refuses with thinking on (issue 21).
    "anthropic-native": ("fakeant/claude-fake", "messages"),
}


@pytest.mark.parametrize("thinking", [False, True], ids=["plain", "thinking"])
@pytest.mark.parametrize("case", list(CODEX_CASES))
def test_codex_runs_a_shell_command_and_reads_its_output(agent, tmp_path, client_bin, case, thinking):
    backend, api = CODEX_CASES[case]
    fake, marker, target = agent["fake"], uuid.uuid4().hex, tmp_path / "made-by-codex.txt"
    route(CODEX_SLOTS, backend)
    call = ToolCall("exec_command", {"cmd": f"printf %s {marker} > {target.name} && echo wrote-{marker}"})
    fake.script(call, Reply(f"done, wrote {marker}"))
    effort = ["-c", 'model_reasoning_effort="high"'] if thinking else []
    done = run_broke(agent, tmp_path, client_bin, "codex", "exec", "--skip-git-repo-check", *effort,
                     "--dangerously-bypass-approvals-and-sandbox", "make the file")
    assert_done(agent, done, f"done, wrote {marker}")
    assert target.read_text() == marker
    asked, answered = scripted(fake)
    assert asked["api"] == answered["api"] == api and asked["stream"] and answered["stream"]
    assert asked["tool_results"] == [] and len(answered["tool_results"]) == 1
    assert f"wrote-{marker}" in answered["tool_results"][0]  # the command's output reached the model
    assert sent_back_call(answered) == call.arguments
    if thinking:  # asked for, answered first, and its reasoning sent back with the call
        assert asked["thinking"] is not None, asked["body"].keys()
        if api == "responses":
            reasoning = [i for i in answered["body"]["input"] if i.get("type") == "reasoning"]
            assert reasoning and reasoning[-1]["encrypted_content"].startswith(ENCRYPTED_PREFIX)
        elif api == "messages":  # nothing signed came back: that turn went without thinking
            assert answered["thinking"] is None and answered["outcome"] == "script"
        else:
            said = [m for m in answered["body"]["messages"] if m["role"] == "assistant"][-1]
            assert said["reasoning_content"] == THINKING_TEXT


def test_swap_between_turns_moves_the_conversation_to_the_new_backend(agent, tmp_path, client_bin):
    fake = agent["fake"]
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    fake.script(ToolCall("Write", {"file_path": str(first), "content": "one"}), Reply("first done"),
                model=ANTHROPIC_MODEL)
    fake.script(ToolCall("Write", {"file_path": str(second), "content": "two"}), Reply("second done"),
                model="model-b")
    route(CLAUDE_SLOTS, "fakeant/claude-fake")
    done = run_broke(agent, tmp_path, client_bin, "claude", "-p", "make the first file", "--allowedTools", "Write")
    assert_done(agent, done, "first done")
    turn_one = len(fake.requests)
    route(CLAUDE_SLOTS, "fake/model-b")
    done = run_broke(agent, tmp_path, client_bin, "claude", "-p", "--continue", "now the second",
                     "--allowedTools", "Write")
    assert_done(agent, done, "second done")
    assert first.read_text() == "one" and second.read_text() == "two"
    later = fake.requests[turn_one:]
    assert later and {r["model"] for r in later} == {"model-b"}  # every request of turn two on the new backend
    asked, answered = [r for r in later if r["outcome"] == "script"]
    # The new backend got the whole conversation: turn one's prompt, tool call and result, translated to chat.
    assert "make the first file" in asked["messages_text"] and "now the second" in asked["messages_text"]
    assert len(asked["tool_results"]) == 1 and len(answered["tool_results"]) == 2
    assert sent_back_call(answered) == {"file_path": str(second), "content": "two"}


def test_codex_swapped_between_turns_resumes_on_the_new_backend(agent, tmp_path, client_bin):
    fake = agent["fake"]
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    fake.script(ToolCall("exec_command", {"cmd": f"printf one > {first.name}"}), Reply("first done"),
                model=OPENAI_MODEL)
    fake.script(ToolCall("exec_command", {"cmd": f"printf two > {second.name}"}), Reply("second done"),
                model="model-b")
    codex = ("codex", "exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox")
    route(CODEX_SLOTS, "fakeoai/gpt-fake")
    assert_done(agent, run_broke(agent, tmp_path, client_bin, *codex, "make the first file"), "first done")
    turn_one = len(fake.requests)
    route(CODEX_SLOTS, "fake/model-b")
    done = run_broke(agent, tmp_path, client_bin, *codex, "resume", "--last", "now the second")
    assert_done(agent, done, "second done")
    assert first.read_text() == "one" and second.read_text() == "two"
    later = fake.requests[turn_one:]
    assert later and {r["model"] for r in later} == {"model-b"}
    asked, answered = [r for r in later if r["outcome"] == "script"]
    # Turn one's Responses items reached the chat backend as chat messages, its call and output included.
    assert asked["api"] == "chat" and len(asked["tool_results"]) == 1 and len(answered["tool_results"]) == 2
    assert "make the first file" in asked["messages_text"] and "now the second" in asked["messages_text"]


def test_count_tokens_answers_for_every_slot(agent, slots):
    route(CLAUDE_SLOTS + ("custom",), "fakeant/claude-fake")
    route(next(f.slots for f in load_catalog().families if f.name == "codex"), "fakeoai/gpt-fake")  # every lane
    route(("auto", *GEMINI_SLOTS), "fake/model-a")
    if not supervisor.status(agent["home"]).running:
        run_cli("start", "--port", str(agent["port"]))
    token = TokenStore(agent["home"]).token_for("client")
    body = {"messages": [{"role": "user", "content": "count these five words"}],
            "tools": [{"name": "Write", "description": "write a file", "input_schema": {"type": "object"}}]}
    for slot in slots:
        answer = httpx.post(f"http://127.0.0.1:{agent['port']}/v1/messages/count_tokens?beta=true",
                            json={**body, "model": slot}, timeout=30,
                            headers={"x-api-key": token, "anthropic-version": "2023-06-01"})
        assert answer.status_code == 200, (slot, answer.text)
        assert answer.json()["input_tokens"] > 0 and answer.headers["x-broke-slot"] == slot
    # The Anthropic-native backend's own counter was asked (the others are counted by LiteLLM's tokenizer).
    counted = [r for r in agent["fake"].requests if r["api"] == "count_tokens"]
    assert {r["model"] for r in counted} == {ANTHROPIC_MODEL} and counted[0]["tools"] == ["Write"]


WRITE_TOOL = {"name": "Write", "description": "Write a file",
              "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"},
                                                               "content": {"type": "string"}},
                               "required": ["file_path", "content"]}}
CALL = ToolCall("Write", {"file_path": "/tmp/x", "content": "marker"})


def local_request(api: str) -> tuple[str, dict]:
    """A request offering the Write tool, in one client API's own shape."""
    schema = WRITE_TOOL["input_schema"]
    if api == "chat":
        return "/v1/chat/completions", {"messages": [{"role": "user", "content": "write it"}], "tools": [
            {"type": "function",
             "function": {"name": "Write", "description": "Write a file", "parameters": schema}}]}
    if api == "messages":
        return "/v1/messages", {"max_tokens": 256, "messages": [{"role": "user", "content": "write it"}],
                                "tools": [WRITE_TOOL]}
    return "/v1/responses", {"input": "write it", "tools": [
        {"type": "function", "name": "Write", "description": "Write a file", "parameters": schema}]}


def called(api: str, answer: dict) -> dict:
    """The arguments of the tool call in an answer, read the way the client reads its API."""
    if api == "chat":
        return json.loads(answer["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"])
    if api == "messages":
        uses = [b for b in answer["content"] if b["type"] == "tool_use"]
        assert answer["stop_reason"] == "tool_use"
        return uses[0]["input"]
    calls = [i for i in answer["output"] if i["type"] == "function_call"]
    return json.loads(calls[0]["arguments"])


@pytest.mark.parametrize("api", ["chat", "messages", "responses"])
def test_tools_reach_a_local_models_worker_intact_and_its_call_comes_back_in_the_clients_shape(agent, api):
    route(("sonnet", "gpt-5-codex"), "mlx/tiny-remote")
    if not supervisor.status(agent["home"]).running:
        run_cli("start", "--port", str(agent["port"]))
    token = TokenStore(agent["home"]).token_for("client")
    agent["fake"].script(CALL)
    path, body = local_request(api)
    answer = httpx.post(f"http://127.0.0.1:{agent['port']}{path}", json={**body, "model": "sonnet"}, timeout=30,
                        headers={"authorization": f"Bearer {token}", "anthropic-version": "2023-06-01"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-broke-backend"] == "mlx/tiny-remote" and answer.json()["model"] == "sonnet"
    assert called(api, answer.json()) == CALL.arguments
    received = agent["fake"].requests[-1]
    assert received["api"] == "chat"  # workers speak chat completions: the other APIs are translated
    assert [t["function"] for t in received["body"]["tools"]] == [
        {"name": "Write", "description": "Write a file", "parameters": WRITE_TOOL["input_schema"]}]


# ---- every backend kind × every client API: the model named, images -----------------------------------

BACKENDS = {"openai-compatible": "fake/model-a", "anthropic-native": "fakeant/claude-fake",
            "openai-native": "fakeoai/gpt-fake"}
#: A 1×1 PNG.
PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==")


def ask(agent, api: str, model: str, *, stream: bool = False, image: bool = False) -> httpx.Response:
    """One request to the gateway in a client API's own shape (with a PNG when `image`)."""
    if not supervisor.status(agent["home"]).running:
        run_cli("start", "--port", str(agent["port"]))
    token = TokenStore(agent["home"]).token_for("client")
    if api == "chat":
        parts = [{"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}] if image else []
        path, body = "/v1/chat/completions", {"messages": [
            {"role": "user", "content": [{"type": "text", "text": "look"}, *parts]}]}
    elif api == "messages":
        source = {"type": "base64", "media_type": "image/png", "data": PNG}
        parts = [{"type": "image", "source": source}] if image else []
        path, body = "/v1/messages", {"max_tokens": 256, "messages": [
            {"role": "user", "content": [{"type": "text", "text": "look"}, *parts]}]}
    else:
        parts = [{"type": "input_image", "image_url": f"data:image/png;base64,{PNG}"}] if image else []
        path, body = "/v1/responses", {"input": [
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "look"}, *parts]}]}
    return httpx.post(f"http://127.0.0.1:{agent['port']}{path}", json={**body, "model": model, "stream": stream},
                      timeout=30, headers={"authorization": f"Bearer {token}", "anthropic-version": "2023-06-01"})


@pytest.mark.parametrize("backend", [*BACKENDS, "local"])
def test_every_answer_names_the_model_the_client_asked_for(agent, backend):
    """Whatever name the upstream gives, a local worker's `default_model` included."""
    route(("sonnet",), BACKENDS.get(backend, "mlx/tiny-remote"))
    for api in ("chat", "messages", "responses"):
        for stream in (False, True):
            answer = ask(agent, api, "claude-sonnet-5", stream=stream)
            assert answer.status_code == 200, (api, stream, answer.text)
            named = set(re.findall(r'"model"\s*:\s*"([^"]*)"', answer.text))
            assert named == {"claude-sonnet-5"}, (api, stream, named)


#: The API each backend kind gets, for each client API (broke or LiteLLM translates between them).
RECEIVED = {"openai-compatible": {"chat": "chat", "messages": "chat", "responses": "chat"},
            "anthropic-native": {"chat": "messages", "messages": "messages", "responses": "messages"},
            # chat and responses are OpenAI's own APIs: forwarded natively as they came. Messages are
            # translated by broke onto chat completions (a Responses-only model such as the real
            # gpt-5-codex would refuse them: see README, issue 24's limits).
            "openai-native": {"chat": "chat", "messages": "chat", "responses": "responses"}}


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_an_image_reaches_every_backend_kind_from_every_client_api(agent, backend):
    route(("sonnet",), BACKENDS[backend])
    for api in ("chat", "messages", "responses"):
        answer = ask(agent, api, "sonnet", image=True)
        assert answer.status_code == 200, (api, answer.text)
        received = agent["fake"].requests[-1]
        assert received["api"] == RECEIVED[backend][api] and PNG in json.dumps(received["body"]), api


def test_thinking_asked_of_a_local_model_reaches_its_worker_as_reasoning_effort(agent):
    route(("sonnet",), "mlx/tiny-remote")
    if not supervisor.status(agent["home"]).running:
        run_cli("start", "--port", str(agent["port"]))
    token = TokenStore(agent["home"]).token_for("client")
    body = {"model": "sonnet", "max_tokens": 4096, "thinking": {"type": "enabled", "budget_tokens": 2048},
            "messages": [{"role": "user", "content": "hi"}]}
    answer = httpx.post(f"http://127.0.0.1:{agent['port']}/v1/messages", json=body, timeout=30,
                        headers={"x-api-key": token, "anthropic-version": "2023-06-01"})
    assert answer.status_code == 200, answer.text
    received = agent["fake"].requests[-1]
    assert received["api"] == "chat" and received["body"]["reasoning_effort"] in ("low", "medium", "high")


def test_counting_tokens_spends_none_of_a_profiles_limits(agent):
    route(("sonnet",), "fakeant/claude-fake")
    if not supervisor.status(agent["home"]).running:
        run_cli("start", "--port", str(agent["port"]))
    run_cli("profile", "new", "counted", "--rpm", "2", "--tpm", "50")
    token = json.loads(run_cli("connect", "--profile", "counted", "--json").stdout)["token"]
    url, headers = f"http://127.0.0.1:{agent['port']}", {"x-api-key": token, "anthropic-version": "2023-06-01"}
    long = {"model": "sonnet", "messages": [{"role": "user", "content": "word " * 60}]}  # 60 tokens to the fake
    counts = [httpx.post(url + "/v1/messages/count_tokens", json=long, headers=headers, timeout=30)
              for _ in range(4)]
    assert [c.status_code for c in counts] == [200] * 4 and counts[0].json()["input_tokens"] == 60
    short = {"model": "sonnet", "max_tokens": 64, "messages": [{"role": "user", "content": "hi"}]}
    asks = [httpx.post(url + "/v1/messages", json=short, headers=headers, timeout=30).status_code for _ in range(3)]
    assert asks == [200, 200, 429]  # neither the counts' requests nor their tokens were spent


# ---- chat completions backends only: no LiteLLM process, ever -----------------------------------------

@pytest.fixture(scope="module")
def chat_only(tmp_path_factory):
    """A home whose every slot is on chat completions backends only: the fake as an OpenAI-compatible
    server and as a local model's worker (a node). broke translates Messages and Responses itself."""
    home = tmp_path_factory.mktemp("chat-only") / "home"
    fake = FakeProvider().start()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BROKE_HOME", str(home))
        add_fake_backends(home, fake, "model-a")
        run_cli("node", "add", "fake-worker", fake.base_url, "--model", "tiny-remote")
        every = (*CLAUDE_SLOTS, "custom", *CODEX_SLOTS, *GEMINI_SLOTS, "auto")
        run_cli("swap", *[f"{slot}=fake/model-a" for slot in every])
        for slot in every:
            run_cli("fallback", slot, "--clear")
        try:
            yield {"home": home, "fake": fake, "port": free_port()}
        finally:
            CliRunner().invoke(app, ["stop"])
            fake.stop()


def litellm_processes(home) -> list[psutil.Process]:
    """LiteLLM processes of this home (its config path is in their command line)."""
    config = str(home / "run" / "litellm_config.json")
    found = []
    for process in psutil.process_iter(["cmdline"]):
        if config in (process.info["cmdline"] or []):
            found.append(process)
    return found


@pytest.mark.parametrize("backend", ["fake/model-a", "mlx/tiny-remote"], ids=["openai-compatible", "local-worker"])
@pytest.mark.parametrize("client", ["claude", "codex"])
def test_agents_do_tool_work_on_chat_backends_with_no_litellm_process(chat_only, monkeypatch, tmp_path, client_bin,
                                                                      client, backend):
    monkeypatch.setenv("BROKE_HOME", str(chat_only["home"]))
    fake, marker, target = chat_only["fake"], uuid.uuid4().hex, tmp_path / "made-by-agent.txt"
    fake.clear_scripts()
    fake.reset_requests()
    route((*CLAUDE_SLOTS, *CODEX_SLOTS), backend)
    if client == "claude":
        call = claude_tool_call("Bash", target, marker)
        args: tuple[str, ...] = ("claude", "-p", "make the file", "--allowedTools", "Bash")
    else:
        call = ToolCall("exec_command", {"cmd": f"printf %s {marker} > {target.name} && echo wrote-{marker}"})
        args = ("codex", "exec", "--skip-git-repo-check", "--dangerously-bypass-approvals-and-sandbox", "make the file")
    fake.script(call, Reply(f"done, wrote {marker}"))
    done = run_broke(chat_only, tmp_path, client_bin, *args)
    assert_done(chat_only, done, f"done, wrote {marker}")
    assert target.read_text() == marker
    asked, answered = scripted(fake)
    assert asked["api"] == answered["api"] == "chat" and asked["stream"] and answered["stream"]
    assert len(answered["tool_results"]) == 1 and sent_back_call(answered) == call.arguments
    expected_model = "default_model" if backend.startswith("mlx/") else "model-a"
    assert {r["model"] for r in fake.requests} == {expected_model}  # every request, side requests included
    record = read_record(chat_only["home"])
    assert record is not None and record.litellm.pid == 0
    assert litellm_processes(chat_only["home"]) == []  # none started, none running


@pytest.fixture
def gemini_home():
    """A home for Gemini CLI whose parent directories only their owner may write."""
    parent = Path.home() / ".cache" / "broke-test-clients"
    parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    home = Path(tempfile.mkdtemp(prefix="gemini-home-", dir=parent))
    yield home
    shutil.rmtree(home, ignore_errors=True)


@pytest.mark.parametrize("backend", ["fake/model-a", "mlx/tiny-remote"], ids=["openai-compatible", "local-worker"])
def test_gemini_cli_does_tool_work_on_chat_backends_with_no_litellm_process(chat_only, monkeypatch, tmp_path,
                                                                            gemini_bin, gemini_home, backend):
    """The real Gemini CLI, launched by `broke gemini`, speaks Google's API to broke; broke translates it
    to chat completions, and the CLI runs the shell command the model asks for and sends back its result."""
    monkeypatch.setenv("BROKE_HOME", str(chat_only["home"]))
    fake, marker, target = chat_only["fake"], uuid.uuid4().hex, tmp_path / "made-by-agent.txt"
    fake.clear_scripts()
    fake.reset_requests()
    route(GEMINI_SLOTS, backend)
    call = ToolCall("run_shell_command", {"command": f"printf %s {marker} > {target.name} && echo wrote-{marker}",
                                          "description": "write the marker"})
    fake.script(call, Reply(f"done, wrote {marker}"))
    # Gemini CLI skips a settings file under a directory others may write (tmp_path is in /tmp): its home
    # is in the user's cache; the user trusts the working directory (else --yolo is turned off)
    env = {"GEMINI_API_KEY": "AIza-stale-secret", "GOOGLE_GENAI_USE_VERTEXAI": "true", "HOME": str(gemini_home),
           "GEMINI_CLI_TRUST_WORKSPACE": "true"}
    # A named model: Gemini CLI's default ("auto") first asks a classifier for JSON, which the fake's
    # scripted text is not (the CLI retries for ~90 s, then goes on with its default model)
    done = run_broke(chat_only, tmp_path, gemini_bin, "gemini", "-m", "gemini-2.5-pro", "-p", "make the file",
                     "--yolo", env=env)
    assert_done(chat_only, done, f"done, wrote {marker}")
    assert target.read_text() == marker
    asked, answered = scripted(fake)
    assert asked["api"] == answered["api"] == "chat" and asked["stream"] and answered["stream"]
    assert len(answered["tool_results"]) == 1 and f"wrote-{marker}" in answered["tool_results"][0]
    assert sent_back_call(answered)["command"] == call.arguments["command"]
    expected_model = "default_model" if backend.startswith("mlx/") else "model-a"
    assert {r["model"] for r in fake.requests} == {expected_model}  # every request, side requests included
    record = read_record(chat_only["home"])
    assert record is not None and record.litellm.pid == 0
    assert litellm_processes(chat_only["home"]) == []
