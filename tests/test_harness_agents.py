"""Harness mode end to end: the real pinned Claude Code doing a small task under `broke harness run`, its
model and the review lanes played by the fake provider (the lanes answer fixed verdicts)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from broke.cli.main import app
from broke.procs import free_port
from broke.sandbox.support import check as sandbox_support
from clients import BROKE, CLIENT_TIMEOUT_S, STALE, diagnosis, run_broke
from conftest import add_fake_backends, run_cli
from fake_conversation import Reply, ToolCall
from fake_provider import FakeProvider

pytestmark = pytest.mark.timeout(600)

AGENT_MODEL = "claude-sonnet-4-5-20250929"
CODEX_MODEL = "gpt-5-codex"
VERIFIER_MODEL, ADVERSARY_MODEL = "model-a", "model-b"
HARDENED_UNAVAILABLE = sandbox_support().profiles["hardened"]
VENV_BIN = str(Path(sys.executable).parent)  # where the real pytest is


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    """A home whose Claude slots go to an Anthropic-native fake, `opus` (the verifier lane) and `gpt-5`
    (the adversary lane) to OpenAI-compatible fakes."""
    home = tmp_path_factory.mktemp("harness") / "home"
    fake = FakeProvider().start()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BROKE_HOME", str(home))
        add_fake_backends(home, fake, VERIFIER_MODEL, ADVERSARY_MODEL)
        run_cli("backend", "add", "fakeant/claude-fake", "--provider", "anthropic", "--api-base", fake.root_url,
                "--model", AGENT_MODEL, "--key-env", "FAKE_API_KEY")
        run_cli("backend", "add", "fakeoai/gpt-fake", "--provider", "openai", "--api-base", fake.base_url,
                "--model", CODEX_MODEL, "--key-env", "FAKE_API_KEY")
        run_cli("swap", "gpt-5-codex=fakeoai/gpt-fake", "sonnet=fakeant/claude-fake", "haiku=fakeant/claude-fake",
                "subagent=fakeant/claude-fake",
                f"opus=fake/{VERIFIER_MODEL}", f"gpt-5=fake/{ADVERSARY_MODEL}")
        run_cli("harness", "lanes", "--verifier", "opus", "--adversary", "gpt-5")
        try:
            yield {"home": home, "fake": fake, "port": free_port()}
        finally:
            CliRunner().invoke(app, ["stop"])
            fake.stop()


@pytest.fixture
def run(harness, monkeypatch, tmp_path):
    """A git project with one passing test, and the fake cleared."""
    monkeypatch.setenv("BROKE_HOME", str(harness["home"]))
    harness["fake"].clear_scripts()
    harness["fake"].reset_requests()
    project = tmp_path / "project"
    project.mkdir()
    (project / "test_small.py").write_text("def test_small():\n    assert 1 + 1 == 2\n")
    commit = ["-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "start"]
    for args in (["init", "-q"], ["add", "-A"], commit):
        subprocess.run(["git", *args], cwd=project, check=True, capture_output=True)
    return {**harness, "project": project, "tmp": tmp_path}


def verdict(name: str, *findings: str) -> Reply:
    return Reply(json.dumps({"verdict": name, "summary": f"the lane says {name}", "findings": list(findings)}))


def lanes_answer(fake: FakeProvider, verifier: Reply, adversary: Reply) -> None:
    fake.script(verifier, model=VERIFIER_MODEL)
    fake.script(adversary, model=ADVERSARY_MODEL)


TASK_COMMAND = "printf 'X = 1\\n' > small.py && pytest -q test_small.py && git add -A && git status --short"


def agent_does(fake: FakeProvider, command: str, answer: str) -> None:
    fake.script(ToolCall("Bash", {"command": command, "description": "do the task"}), Reply(answer),
                model=AGENT_MODEL)


def harness_run(r, *args: str) -> subprocess.CompletedProcess:
    return run_broke(r, r["tmp"], r["client_bin"], "harness", "run", *args, "--", "claude", "-p", "add small.py",
                     "--allowedTools", "Bash", cwd=r["project"], env={"PATH": _path(r)})


def _path(r) -> str:
    return os.pathsep.join([str(r["client_bin"]), VENV_BIN, os.environ.get("PATH", os.defpath)])


def shown(r) -> dict:
    result = CliRunner().invoke(app, ["harness", "show", "--json"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def requests_to(fake: FakeProvider, model: str) -> list[dict]:
    return [q for q in fake.requests if q["body"].get("model") == model]


def test_an_accepted_run_records_its_commands_requests_and_verdicts(run, client_bin):
    r = {**run, "client_bin": client_bin}
    agent_does(r["fake"], TASK_COMMAND, "done: small.py added")
    lanes_answer(r["fake"], verdict("ACCEPT"), verdict("ACCEPT"))
    done = harness_run(r)
    assert done.returncode == 0 and "done: small.py added" in done.stdout, (done.stderr, diagnosis(r["home"]))
    assert "ACCEPT (verifier ACCEPT, adversary ACCEPT)" in done.stderr
    view = shown(r)
    assert view["status"] == "finished" and view["verdict"] == "ACCEPT" and view["task"] == "add small.py"
    commands = {(c["tool"], c["args"][0] if c["args"] else "", c["exit"]) for c in view["commands"]}
    assert ("pytest", "-q", 0) in commands and ("git", "add", 0) in commands and ("git", "status", 0) in commands
    roles = [q["role"] for q in view["requests"]]
    assert roles.count("review") == 2 and roles.count("agent") >= 2  # the tool call and the answer after it
    review = view["reviews"][-1]
    assert [t["tool"] for t in review["tests"]] == ["pytest"] and review["lanes"]["verifier"]["verdict"] == "ACCEPT"
    asked = requests_to(r["fake"], VERIFIER_MODEL)[0]["body"]["messages"][-1]["content"]
    packet = json.loads(asked)
    assert "small.py" in packet["observations"]["diff"] and packet["observations"]["task"] == "add small.py"
    tokens = json.loads((r["home"] / "run" / "tokens.json").read_text())
    assert not [owner for owner in tokens if owner.startswith("run:")]  # the run's tokens died with it
    assert oct((r["home"] / "runs" / view["run"] / "events.jsonl").stat().st_mode & 0o777) == "0o600"


def accept_after_first_review(fake: FakeProvider) -> threading.Thread:
    """The verifier's second review, of the new evidence, accepts."""

    def watch() -> None:
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        while not requests_to(fake, VERIFIER_MODEL) and time.monotonic() < deadline:
            time.sleep(0.05)
        fake.script(verdict("ACCEPT"), model=VERIFIER_MODEL)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    return watcher


def test_a_retry_verdict_continues_the_session_with_the_findings_then_accepts(run, client_bin):
    r = {**run, "client_bin": client_bin}
    fake = r["fake"]
    agent_does(fake, TASK_COMMAND, "done: small.py added")
    lanes_answer(fake, verdict("RETRY_NARROW", "small.py needs a docstring"), verdict("ACCEPT"))

    watcher = accept_after_first_review(fake)
    done = harness_run(r)
    watcher.join(5)
    assert done.returncode == 0, (done.stdout, done.stderr, diagnosis(r["home"]))
    assert "ACCEPT (verifier ACCEPT, adversary ACCEPT) after 1 retry" in done.stderr
    view = shown(r)
    assert [e["verdict"] for e in view["reviews"]] == ["RETRY_NARROW", "ACCEPT"]
    assert [e["kind"] for e in view["timeline"]].count("checkpoint") == 2
    continued = [q for q in fake.requests if "small.py needs a docstring" in json.dumps(q["body"].get("messages"))
                 and q["body"].get("model") == AGENT_MODEL]
    assert continued, "the agent was not given the findings"
    first_prompt = json.dumps(requests_to(fake, AGENT_MODEL)[0]["body"]["messages"])
    assert "add small.py" in first_prompt
    # the same session: the continued request carries the first turn's history
    assert "add small.py" in json.dumps(continued[-1]["body"]["messages"])


@pytest.mark.skipif(bool(HARDENED_UNAVAILABLE), reason=f"no hardened sandbox here: {HARDENED_UNAVAILABLE}")
def test_a_write_outside_the_working_directory_under_hardened_is_blocked(run, client_bin):
    r = {**run, "client_bin": client_bin}
    agent_does(r["fake"], "printf stolen > \"$HOME/outside.txt\" && pytest -q test_small.py", "done")
    lanes_answer(r["fake"], verdict("ACCEPT"), verdict("ACCEPT"))
    done = harness_run(r, "--sandbox", "hardened")
    assert done.returncode == 3, (done.stdout, done.stderr, diagnosis(r["home"]))
    assert "BLOCK" in done.stderr and "outside the working directory" in done.stderr
    view = shown(r)
    assert view["verdict"] == "BLOCK" and view["sandbox"] == "hardened"
    events = view["reviews"][-1]["policy_events"]
    assert [e["path"] for e in events] == ["~/outside.txt"]
    assert not (r["tmp"] / "client-home" / "outside.txt").exists()  # the real home never got it
    assert any(c["tool"] == "pytest" for c in view["commands"])  # the shims worked inside the sandbox


def test_killing_the_client_mid_run_leaves_a_readable_ledger_marked_incomplete(run, client_bin):
    r = {**run, "client_bin": client_bin}
    agent_does(r["fake"], "git rev-parse --show-toplevel && sleep 20", "never said")
    lanes_answer(r["fake"], verdict("ACCEPT"), verdict("ACCEPT"))
    env = {**os.environ, **STALE, "BROKE_HOME": str(r["home"]), "BROKE_PORT": str(r["port"]), "PATH": _path(r),
           "HOME": str(r["tmp"] / "client-home"), "CODEX_HOME": str(r["tmp"] / "codex-home")}
    (r["tmp"] / "client-home").mkdir(exist_ok=True)
    runs = r["home"] / "runs"
    before = set(runs.iterdir()) if runs.exists() else set()
    proc = subprocess.Popen([str(BROKE), "harness", "run", "--", "claude", "-p", "add small.py", "--allowedTools",
                             "Bash"], cwd=r["project"], env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        pid = None
        while time.monotonic() < deadline and proc.poll() is None:  # wait for the agent's shimmed git call
            new = [d for d in runs.iterdir() if d not in before] if runs.exists() else []
            commands = new[0] / "shims" / "commands.jsonl" if new else None
            if commands is not None and commands.exists() and '--show-toplevel' in commands.read_text():
                events = [json.loads(line) for line in (new[0] / "events.jsonl").read_text().splitlines()]
                pid = next(e["pid"] for e in events if e["kind"] == "client_started")
                break
            time.sleep(0.1)
        assert pid is not None, (proc.poll(), diagnosis(r["home"]))
        os.kill(pid, signal.SIGKILL)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 137, err
    view = shown(r)
    assert view["status"] == "incomplete" and "signal" in view["why"] and view["reviews"] == []
    assert ["rev-parse", "--show-toplevel"] in [c["args"] for c in view["commands"] if c["tool"] == "git"]
    assert view["problems"] == []
    checkpoint = [e for e in view["timeline"] if e["kind"] == "checkpoint"]
    assert len(checkpoint) == 1 and checkpoint[0]["complete"] is False


def test_evaluate_asks_the_lanes_once_per_evidence_and_a_garbled_lane_is_degraded(run, tmp_path):
    fake = run["fake"]
    lanes_answer(fake, verdict("ACCEPT_WITH_WARNINGS", "no test for the empty case"), Reply("looks fine to me!"))
    diff = tmp_path / "change.diff"
    diff.write_text("--- a/x.py\n+++ b/x.py\n@@ -1 +1 @@\n-X = 0\n+X = 1\n")
    env = {"BROKE_PORT": str(run["port"])}
    args = ["harness", "evaluate", "--task", "set X to 1", "--diff", str(diff), "--json"]
    first = CliRunner().invoke(app, args, env=env)
    assert first.exit_code == 0, first.output
    out = json.loads(first.stdout)
    assert out["lanes"]["verifier"]["verdict"] == "ACCEPT_WITH_WARNINGS" and not out["lanes"]["verifier"]["cached"]
    assert out["lanes"]["verifier"]["findings"] == ["no test for the empty case"]
    assert out["lanes"]["adversary"]["verdict"] == "DEGRADED" and "no JSON object" in out["lanes"]["adversary"]["error"]
    assert out["verdict"] == "ACCEPT_WITH_WARNINGS"  # balanced: one degraded lane is a warning
    again = json.loads(CliRunner().invoke(app, args, env=env).stdout)
    assert again["lanes"]["verifier"]["cached"] and again["verdict"] == "ACCEPT_WITH_WARNINGS"
    assert len(requests_to(fake, VERIFIER_MODEL)) == 1  # the same evidence is not reviewed twice
    assert len(requests_to(fake, ADVERSARY_MODEL)) == 2  # a degraded answer is not kept
    strict = CliRunner().invoke(app, [*args, "--policy", "high_assurance"], env=env)
    assert json.loads(strict.stdout)["verdict"] == "ESCALATE"


def test_codex_continues_its_session_with_exec_resume_after_a_retry_verdict(run, client_bin):
    fake = run["fake"]
    fake.script(ToolCall("exec_command", {"cmd": TASK_COMMAND}), Reply("codex: small.py added"), model=CODEX_MODEL)
    lanes_answer(fake, verdict("RETRY_NARROW", "small.py needs a docstring"), verdict("ACCEPT"))
    watcher = accept_after_first_review(fake)
    done = run_broke(run, run["tmp"], client_bin, "harness", "run", "--", "codex", "exec", "--skip-git-repo-check",
                     "--dangerously-bypass-approvals-and-sandbox", "add small.py", cwd=run["project"],
                     env={"PATH": _path({**run, "client_bin": client_bin})})
    watcher.join(5)
    assert done.returncode == 0 and "codex: small.py added" in done.stdout, (done.stderr, diagnosis(run["home"]))
    view = shown(run)
    assert [e["verdict"] for e in view["reviews"]] == ["RETRY_NARROW", "ACCEPT"] and view["client"] == "codex"
    resumed = [e for e in view["timeline"] if e["kind"] == "client_started"][-1]["argv"]
    assert resumed[resumed.index("exec"):resumed.index("exec") + 3] == ["exec", "resume", "--last"]
    assert any(c["tool"] == "pytest" for c in view["commands"])  # through codex's shell: not a login shell
    wrapped = [c for c in view["commands"] if c["tool"] == "node" and c["args"][0].endswith("codex")]
    assert wrapped == []  # codex's own node started directly: stopping the client stops codex, not a shim
    continued = [q for q in requests_to(fake, CODEX_MODEL) if "small.py needs a docstring" in json.dumps(q["body"])]
    assert continued and "add small.py" in json.dumps(continued[-1]["body"])  # the same session, with the findings


def test_a_crash_of_broke_mid_run_leaves_a_readable_ledger_without_checkpoint(run):
    runs = run["home"] / "runs"
    before = set(runs.iterdir()) if runs.exists() else set()
    env = {**os.environ, "BROKE_HOME": str(run["home"]), "BROKE_PORT": str(run["port"])}
    proc = subprocess.Popen([str(BROKE), "harness", "run", "--policy", "off", "--", "sh", "-c",
                             "git --version && sleep 30"], cwd=run["project"], env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    client = None
    try:
        deadline = time.monotonic() + CLIENT_TIMEOUT_S
        while time.monotonic() < deadline and proc.poll() is None and client is None:
            new = [d for d in runs.iterdir() if d not in before] if runs.exists() else []
            if new and (new[0] / "shims" / "commands.jsonl").exists():
                events = [json.loads(line) for line in (new[0] / "events.jsonl").read_text().splitlines()]
                client = next(e["pid"] for e in events if e["kind"] == "client_started")
            time.sleep(0.1)
        assert client is not None, proc.stderr.read() if proc.poll() is not None else "no run started"
        proc.kill()  # broke dies; the client goes on
        proc.wait(10)
        view = shown(run)
        assert view["status"] == "incomplete" and "no checkpoint" in view["why"] and view["problems"] == []
        assert [c["tool"] for c in view["commands"]] == ["git"]
    finally:
        if proc.poll() is None:
            proc.kill()
        if client is not None:
            os.kill(client, signal.SIGKILL)
