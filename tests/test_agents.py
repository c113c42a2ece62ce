"""Claude Code and Codex doing agent work through broke: tool calls, their results, streaming, thinking."""
from __future__ import annotations

import json
import uuid

import pytest
from typer.testing import CliRunner

from broke.cli.main import app
from broke.procs import free_port
from clients import diagnosis, run_broke
from conftest import run_cli
from fake_conversation import THINKING_TEXT, Reply, ToolCall
from fake_provider import FakeProvider

pytestmark = pytest.mark.timeout(600)

CLAUDE_SLOTS = ("sonnet", "opus", "haiku", "subagent")
CODEX_SLOTS = ("gpt-5-codex", "gpt-5", "gpt-5-mini")
#: The Anthropic-native backend serves a model LiteLLM knows, so it applies that model's capabilities
#: (thinking) as it would for the real provider.
ANTHROPIC_MODEL = "claude-sonnet-4-5-20250929"


@pytest.fixture(scope="module")
def agents(tmp_path_factory):
    """A home with fake backends of every kind: OpenAI-compatible (through LiteLLM's translation),
    Anthropic-native and OpenAI-native (each the provider's own API, at the fake's address)."""
    home = tmp_path_factory.mktemp("agents") / "home"
    fake = FakeProvider().start()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BROKE_HOME", str(home))
        home.mkdir(parents=True)
        (home / ".env").write_text("FAKE_API_KEY=key-one\n")
        for model in ("model-a", "model-b"):
            run_cli("backend", "add", f"fake/{model}", "--provider", "openai-compatible", "--api-base",
                    fake.base_url, "--model", model, "--key-env", "FAKE_API_KEY")
        run_cli("backend", "add", "fakeant/claude-fake", "--provider", "anthropic", "--api-base", fake.root_url,
                "--model", ANTHROPIC_MODEL, "--key-env", "FAKE_API_KEY")
        run_cli("backend", "add", "fakeoai/gpt-fake", "--provider", "openai", "--api-base", fake.base_url,
                "--model", "gpt-fake", "--key-env", "FAKE_API_KEY")
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
