"""`broke claude`, `broke codex` and `broke launch-env`: the plan, and the real clients through a real gateway."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from broke import launch
from broke.cli.main import app
from broke.control import supervisor
from broke.control.runfiles import TokenStore
from broke.procs import free_port
from clients import CLAUDE_CODE_VERSION, CODEX_VERSION, STALE, assert_answered, diagnosis, run_broke
from conftest import add_fake_backends, assert_one_error_line, run_cli
from fake_provider import FakeProvider

pytestmark = pytest.mark.timeout(900)

URL = "http://127.0.0.1:4999"
TOKEN = "broke-secret-token-value-0123456789"
CALLER = {**STALE, "PATH": "/usr/bin:/bin", "EDITOR": "vim", "LANG": "C.UTF-8"}



# ---- the plan (no gateway) ----------------------------------------------------------------------

def test_claude_env_drops_stale_variables_keeps_the_rest_and_sets_the_slots():
    plan = launch.build_plan("claude", URL, TOKEN, [], CALLER)
    assert plan.env == {
        "PATH": "/usr/bin:/bin", "EDITOR": "vim", "LANG": "C.UTF-8",
        "ANTHROPIC_BASE_URL": URL, "ANTHROPIC_AUTH_TOKEN": TOKEN,
        "ANTHROPIC_MODEL": "sonnet", "ANTHROPIC_DEFAULT_OPUS_MODEL": "opus",
        "ANTHROPIC_DEFAULT_SONNET_MODEL": "sonnet", "ANTHROPIC_DEFAULT_HAIKU_MODEL": "haiku",
        "CLAUDE_CODE_SUBAGENT_MODEL": "subagent", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }
    # ANTHROPIC_BASE_URL is replaced, not removed.
    assert plan.removed == ["ANTHROPIC_API_KEY", "CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX",
                            "OPENAI_API_KEY", "OPENAI_BASE_URL"]
    assert plan.argv == ["claude"]


@pytest.mark.parametrize("client", ["claude", "codex"])
def test_no_provider_key_reaches_the_client(client):
    """The gateway holds the keys: other providers' keys, their pools and any *_API_KEY are removed."""
    keys = {"OPENROUTER_API_KEY": "or", "GROQ_API_KEY_2": "g2", "HF_TOKEN": "hf", "HF_TOKEN_3": "hf3",
            "MISTRAL_API_KEY": "m", "LOCAL_VLLM_KEY": "v", "LOCAL_VLLM_KEY_2": "v2"}
    plan = launch.build_plan(client, URL, TOKEN, [], {**CALLER, **keys},
                             key_vars=launch.key_variables() | {"LOCAL_VLLM_KEY"})
    assert not set(keys) & set(plan.env)
    assert set(keys) <= set(plan.removed)
    assert plan.env["EDITOR"] == "vim" and plan.env["LANG"] == "C.UTF-8"


def test_key_variables_include_custom_backends(cli, broke_home):
    cli("backend", "add", "vllm/qwen", "--provider", "openai-compatible", "--api-base",
        "http://127.0.0.1:1/v1", "--model", "qwen", "--key-env", "LOCAL_VLLM_KEY")
    assert {"LOCAL_VLLM_KEY", "OPENROUTER_API_KEY", "HF_TOKEN"} <= launch.key_variables(broke_home)


def test_codex_env_has_only_its_key_from_broke():
    plan = launch.build_plan("codex", URL, TOKEN, [], CALLER)
    assert plan.set == {"BROKE_CODEX_KEY": TOKEN}
    assert not any(name.startswith(("ANTHROPIC_", "OPENAI_", "CLAUDE_CODE_")) for name in plan.env)
    assert plan.env["EDITOR"] == "vim"


def test_gemini_env_points_gemini_cli_at_broke_in_gateway_mode(tmp_path):
    google = {"GEMINI_API_KEY": "AIza-stale", "GOOGLE_API_KEY": "AIza-other", "GOOGLE_GEMINI_BASE_URL": "https://x",
              "GOOGLE_GENAI_USE_VERTEXAI": "true", "GOOGLE_CLOUD_PROJECT": "p", "GOOGLE_APPLICATION_CREDENTIALS": "/c"}
    settings = tmp_path / "s.json"
    plan = launch.build_plan("gemini", URL, TOKEN, ["-p", "hi"], {**CALLER, **google}, settings=settings)
    assert plan.set == {"GOOGLE_GEMINI_BASE_URL": URL, "GEMINI_API_KEY": TOKEN,
                        "GEMINI_DEFAULT_AUTH_TYPE": "gemini-api-key", "GEMINI_CLI_SYSTEM_SETTINGS_PATH": str(settings)}
    assert {"GOOGLE_API_KEY", "GOOGLE_GENAI_USE_VERTEXAI", "GOOGLE_CLOUD_PROJECT",
            "GOOGLE_APPLICATION_CREDENTIALS", "ANTHROPIC_API_KEY"} <= set(plan.removed)
    assert "AIza-stale" not in plan.env.values() and plan.env["EDITOR"] == "vim"
    assert plan.argv == ["gemini", "-p", "hi"]


def test_gemini_settings_choose_the_gateway_whatever_the_user_chose(tmp_path):
    path = launch.gemini_settings({"HOME": str(tmp_path)})
    assert path == tmp_path / ".gemini" / "broke-system-settings.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    settings = json.loads(path.read_text())
    assert settings["security"]["auth"]["selectedType"] == "gemini-api-key"
    assert settings["privacy"]["usageStatisticsEnabled"] is False


def test_proxies_are_kept_but_loopback_bypasses_them():
    caller = {"PATH": "/bin", "https_proxy": "http://proxy:3128", "HTTP_PROXY": "http://proxy:3128",
              "NO_PROXY": "corp.example,localhost"}
    env = launch.build_plan("claude", URL, TOKEN, [], caller).env
    assert env["https_proxy"] == env["HTTP_PROXY"] == "http://proxy:3128"
    assert env["NO_PROXY"] == "corp.example,localhost,127.0.0.1"
    assert env["no_proxy"] == "127.0.0.1,localhost"
    assert "NO_PROXY" not in launch.build_plan("claude", URL, TOKEN, [], {"PATH": "/bin"}).env


def test_claude_args_pass_through_untouched():
    args = ["-p", "say hi", "--", "--help", "--profile", "x"]
    assert launch.build_plan("claude", URL, TOKEN, args, CALLER).argv == ["claude", *args]


def test_codex_argv_points_at_broke_and_adds_a_model_unless_given():
    provider = ('model_providers.broke={name="broke",base_url="http://127.0.0.1:4999/v1",'
                'env_key="BROKE_CODEX_KEY",wire_api="responses",'
                'model_catalog_url="http://127.0.0.1:4999/v1/models"}')
    args = ["exec", "--skip-git-repo-check", "say hi"]
    assert launch.client_argv("codex", URL, args) == [
        "codex", "-c", 'model_provider="broke"', "-c", provider, "-m", "gpt-5-codex", *args]
    for own in (["-m", "gpt-5-mini"], ["--model", "gpt-5"], ["--model=gpt-5"], ["exec", "-m", "gpt-5"]):
        argv = launch.client_argv("codex", URL, own)
        assert argv.count("-m") == own.count("-m") and argv[-len(own):] == own
    # After `--`, "-m" is the prompt's text, not an option.
    assert "gpt-5-codex" in launch.client_argv("codex", URL, ["exec", "--", "-m"])


def test_launch_env_masks_the_token(cli, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-stale-secret")
    token = json.loads(cli("connect", "--json").stdout)["token"]
    result = cli("launch-env", "claude")
    assert result.exit_code == 0, result.output
    assert f"set    ANTHROPIC_AUTH_TOKEN={token[:8]}…" in result.stdout
    assert "set    ANTHROPIC_MODEL=sonnet" in result.stdout
    assert "remove ANTHROPIC_API_KEY" in result.stdout
    assert token not in result.stdout and "sk-ant-stale-secret" not in result.stdout

    data = json.loads(cli("launch-env", "codex", "--json").stdout)
    assert data["set"] == {"BROKE_CODEX_KEY": token[:8] + "…"}
    assert data["argv"][-2:] == ["-m", "gpt-5-codex"]


def test_launch_env_shows_gemini(cli, monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    token = json.loads(cli("connect", "--json").stdout)["token"]
    data = json.loads(cli("launch-env", "gemini", "--json").stdout)
    assert data["argv"] == ["gemini"] and data["set"]["GEMINI_API_KEY"] == token[:8] + "…"
    assert data["set"]["GOOGLE_GEMINI_BASE_URL"].startswith("http://127.0.0.1:")
    assert token not in cli("launch-env", "gemini").stdout


@pytest.mark.parametrize("args", [[], ["--json"]])
def test_connect_warns_on_stderr_when_the_gateway_is_down_and_still_prints_the_settings(cli, args):
    result = cli("connect", *args)
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines() == ["broke: warning: the gateway is not running: nothing answers at "
                                          "http://127.0.0.1:4000 until `broke start`"]
    shown = json.loads(result.stdout)["base_url"] if args else result.stdout
    assert "http://127.0.0.1:4000" in shown and "warning" not in result.stdout


def test_launch_env_profile_uses_the_profiles_token(cli, broke_home):
    result = cli("launch-env", "claude", "--profile", "solo")
    assert result.exit_code == 0, result.output
    token = TokenStore(broke_home).token_for("profile:solo")
    assert f"ANTHROPIC_AUTH_TOKEN={token[:8]}…" in result.stdout
    assert TokenStore(broke_home).token_for("client")[:8] + "…" not in result.stdout


def test_launch_env_shell_lines_evaluate_to_the_launch_environment(cli, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", "http://elsewhere/v1")
    token = json.loads(cli("connect", "--json").stdout)["token"]
    out = cli("launch-env", "codex", "--shell").stdout
    assert "unset OPENAI_BASE_URL" in out.splitlines()
    assert f"export BROKE_CODEX_KEY={token}" in out.splitlines()
    shell = subprocess.run(["sh", "-c", 'eval "$LINES"; echo "${OPENAI_BASE_URL-gone} $BROKE_CODEX_KEY"'],
                           env={**os.environ, "LINES": out}, capture_output=True, text=True, check=True)
    assert shell.stdout.split() == ["gone", token]


def test_launch_env_bad_client_or_profile_is_one_error_line(cli):
    assert_one_error_line(cli("launch-env", "vim"), "unknown client 'vim'", code=2)
    assert_one_error_line(cli("launch-env", "claude", "--profile", "nope"), "unknown profile 'nope'")
    assert_one_error_line(cli("launch-env", "codex", "--shell", "--json"), "--shell", code=2)


def test_audit_line_names_variables_never_values(broke_home):
    plan = launch.build_plan("codex", URL, TOKEN, ["exec", "secret prompt"], CALLER, profile="solo")
    launch.audit(broke_home, plan)
    launch.audit(broke_home, plan)
    path = broke_home / "run" / "launch_audit.log"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text()
    lines = [json.loads(line) for line in text.splitlines()]
    assert len(lines) == 2
    assert {k: lines[0][k] for k in ("client", "profile", "generation", "set")} == {
        "client": "codex", "profile": "solo", "generation": 0, "set": ["BROKE_CODEX_KEY"]}
    assert "OPENAI_API_KEY" in lines[0]["removed"] and lines[0]["time"]
    for secret in (TOKEN, STALE["ANTHROPIC_API_KEY"], STALE["OPENAI_API_KEY"], STALE["OPENAI_BASE_URL"],
                   "secret prompt"):
        assert secret not in text


@pytest.mark.parametrize("command, install", [
    (["claude", "-p", "hi"], "npm i -g @anthropic-ai/claude-code"),
    (["c"], "npm i -g @anthropic-ai/claude-code"),
    (["codex", "exec", "hi"], "npm i -g @openai/codex"),
    (["x"], "npm i -g @openai/codex"),
    (["gemini", "-p", "hi"], "npm i -g @google/gemini-cli"),
    (["g"], "npm i -g @google/gemini-cli"),
])
def test_missing_client_is_one_error_line_with_the_install_command(cli, broke_home, tmp_path, monkeypatch,
                                                                    command, install):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert_one_error_line(cli(*command), "is not on PATH", install)
    assert supervisor.status(broke_home).record is None  # nothing was started for it


# ---- end to end: a real gateway, a stub client and the real clients ---------------------------------

@pytest.fixture(scope="module")
def e2e(tmp_path_factory):
    """A home with two fake backends and every Claude and Codex slot on one of them; the gateway
    is not started here: the first launch starts it on `port`."""
    home = tmp_path_factory.mktemp("launch") / "home"
    fake = FakeProvider().start()
    port = free_port()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BROKE_HOME", str(home))
        add_fake_backends(home, fake, "model-a", "model-b")
        try:
            yield {"home": home, "fake": fake, "port": port}
        finally:
            CliRunner().invoke(app, ["stop"])
            fake.stop()


@pytest.fixture
def routed(e2e, monkeypatch):
    """Per test: every client slot on fake/model-a."""
    monkeypatch.setenv("BROKE_HOME", str(e2e["home"]))
    run_cli("swap", *[f"{slot}=fake/model-a" for slot in
                   ("sonnet", "opus", "haiku", "subagent", "gpt-5-codex", "gpt-5", "gpt-5-mini")])
    return e2e


STUB = """#!{python}
import json, os, sys
print(json.dumps({{"argv": sys.argv[1:], "env": dict(os.environ)}}))
"""


@pytest.fixture
def stub_bin(tmp_path: Path) -> Path:
    """A `claude` that prints its arguments and environment as JSON."""
    bin_dir = tmp_path / "stub-bin"
    bin_dir.mkdir()
    stub = bin_dir / "claude"
    stub.write_text(STUB.format(python=sys.executable))
    stub.chmod(0o755)
    return bin_dir


def test_launch_starts_the_gateway_and_execs_the_client(routed, tmp_path, stub_bin):
    home = routed["home"]
    if supervisor.status(home).running:
        run_cli("stop")
    args = ["-p", "two words", "--", "--help", "--profile", "x"]
    other_keys = {"OPENROUTER_API_KEY": "or-secret", "GROQ_API_KEY_2": "groq-two", "HF_TOKEN": "hf-secret"}
    done = run_broke(routed, tmp_path, stub_bin, "claude", *args, env=other_keys)
    assert done.returncode == 0, done.stderr + diagnosis(home)
    assert "gateway started on" in done.stderr
    seen = json.loads(done.stdout)
    assert seen["argv"] == args
    env = seen["env"]
    assert env["ANTHROPIC_BASE_URL"] == f"http://127.0.0.1:{routed['port']}"
    assert env["ANTHROPIC_AUTH_TOKEN"] == TokenStore(home).token_for("client")
    assert env["ANTHROPIC_MODEL"] == "sonnet" and env["BROKE_TEST_UNRELATED"] == "kept"
    assert not (set(STALE) - {"ANTHROPIC_BASE_URL"}) & set(env)
    assert not set(other_keys) & set(env)  # the gateway has the provider keys, the client none
    assert supervisor.status(home).running


def test_profile_launch_uses_the_profile_token_and_is_audited(routed, tmp_path, stub_bin):
    home = routed["home"]
    done = run_broke(routed, tmp_path, stub_bin, "c", "--profile", "solo", "--version")
    assert done.returncode == 0, done.stderr + diagnosis(home)
    seen = json.loads(done.stdout)
    assert seen["argv"] == ["--version"]
    assert seen["env"]["ANTHROPIC_AUTH_TOKEN"] == TokenStore(home).token_for("profile:solo")
    audit = (home / "run" / "launch_audit.log").read_text()
    last = json.loads(audit.splitlines()[-1])
    assert last["client"] == "claude" and last["profile"] == "solo"
    assert "ANTHROPIC_AUTH_TOKEN" in last["set"] and "ANTHROPIC_API_KEY" in last["removed"]
    assert seen["env"]["ANTHROPIC_AUTH_TOKEN"] not in audit and STALE["ANTHROPIC_API_KEY"] not in audit


def test_claude_code_answers_through_broke_and_follows_a_swap(routed, tmp_path, client_bin):
    done = run_broke(routed, tmp_path, client_bin, "claude", "-p", "say hi")
    assert_answered(routed, done, "fake:model-a:key-one")
    run_cli("swap", "sonnet", "fake/model-b")
    done = run_broke(routed, tmp_path, client_bin, "claude", "-p", "say hi")
    assert_answered(routed, done, "fake:model-b:key-one")
    assert "fake:model-a" not in done.stdout


def test_codex_answers_through_broke_and_follows_a_swap(routed, tmp_path, client_bin):
    done = run_broke(routed, tmp_path, client_bin, "codex", "exec", "--skip-git-repo-check", "say hi")
    assert_answered(routed, done, "fake:model-a:key-one")
    run_cli("swap", "gpt-5-codex", "fake/model-b")
    done = run_broke(routed, tmp_path, client_bin, "codex", "exec", "--skip-git-repo-check", "say hi")
    assert_answered(routed, done, "fake:model-b:key-one")
    assert "fake:model-a" not in done.stdout


def test_installed_client_versions(client_bin):
    for name, version in (("claude", CLAUDE_CODE_VERSION), ("codex", CODEX_VERSION)):
        out = subprocess.run([str(client_bin / name), "--version"], capture_output=True, text=True,
                             timeout=60, stdin=subprocess.DEVNULL)
        assert version in out.stdout, out.stdout + out.stderr
