"""Custom backends (`backend add|remove`) and provider keys from the environment and $BROKE_HOME/.env."""
from __future__ import annotations

import json

import pytest

from conftest import assert_one_error_line

LMSTUDIO = "lmstudio/qwen3"
ADD_LMSTUDIO = ("backend", "add", LMSTUDIO, "--provider", "openai-compatible",
                "--api-base", "http://127.0.0.1:1234/v1", "--model", "qwen3", "--key-env", "FAKE_API_KEY")
GROQ = "groq/llama-3.3-70b-versatile"


def state_bytes(home):
    path = home / "state.toml"
    return path.read_bytes() if path.exists() else None


def test_add_swap_explain_with_key_pool(cli, cli_json, monkeypatch):
    result = cli(*ADD_LMSTUDIO)
    assert result.exit_code == 0, result.output
    assert LMSTUDIO in result.stdout
    result = cli("swap", "custom", LMSTUDIO)
    assert result.exit_code == 0, result.output

    monkeypatch.setenv("FAKE_API_KEY_2", "secret-two")
    monkeypatch.setenv("FAKE_API_KEY", "secret-one")
    result = cli("explain", "custom", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["slot"] == "custom"
    candidates = data["candidates"]
    assert [(c["backend"], c["key_env"]) for c in candidates] == [
        (LMSTUDIO, "FAKE_API_KEY"), (LMSTUDIO, "FAKE_API_KEY_2")]
    assert all(c["usable"] and c["provider"] == "openai-compatible" for c in candidates)
    assert data["chosen"]["deployment"] == f"{LMSTUDIO}@FAKE_API_KEY"
    assert "secret-one" not in result.output and "secret-two" not in result.output

    result = cli("route", "custom")
    assert result.exit_code == 0, result.output
    assert LMSTUDIO in result.stdout
    assert "secret-one" not in result.output


def test_custom_backend_without_keys_is_unusable(cli, cli_json):
    assert cli(*ADD_LMSTUDIO).exit_code == 0
    assert cli("swap", "custom", LMSTUDIO).exit_code == 0
    code, data = cli_json("route", "custom")
    assert code == 1
    assert data["chosen"] is None
    assert "FAKE_API_KEY" in data["reason"]


def test_custom_backend_without_key_env_needs_no_key(cli, cli_json):
    result = cli("backend", "add", "ollama/llama3", "--provider", "openai-compatible",
                 "--api-base", "http://localhost:11434/v1", "--model", "llama3")
    assert result.exit_code == 0, result.output
    assert cli("swap", "custom", "ollama/llama3").exit_code == 0
    code, data = cli_json("route", "custom")
    assert code == 0
    assert data["chosen"]["key_env"] is None
    assert data["chosen"]["deployment"] == "ollama/llama3"


def test_models_json_lists_custom_backend(cli, cli_json, monkeypatch):
    assert cli(*ADD_LMSTUDIO).exit_code == 0
    monkeypatch.setenv("FAKE_API_KEY", "secret-one")
    monkeypatch.setenv("FAKE_API_KEY_2", "secret-two")
    result = cli("models", "--json")
    assert result.exit_code == 0
    rows = {row["id"]: row for row in json.loads(result.stdout)}
    row = rows[LMSTUDIO]
    assert row["custom"] is True
    assert row["provider"] == "openai-compatible"
    assert row["model"] == "qwen3"
    assert row["api_base"] == "http://127.0.0.1:1234/v1"
    assert row["key_env"] == "FAKE_API_KEY"
    assert row["keys_set"] == 2
    assert row["pinned"] is False
    assert rows[GROQ]["custom"] is False
    assert "secret-one" not in result.output

    text = cli("models")
    assert text.exit_code == 0
    assert LMSTUDIO in text.stdout and "custom" in text.stdout


def test_pinned_custom_backend(cli, cli_json):
    result = cli("backend", "add", "groq/my-model", "--provider", "groq", "--model", "my-model", "--pinned")
    assert result.exit_code == 0, result.output
    code, rows = cli_json("models")
    row = next(r for r in rows if r["id"] == "groq/my-model")
    assert row["pinned"] is True
    assert row["key_env"] == "GROQ_API_KEY"
    assert row["api_base"] is None


def test_generation_bumps_on_add_and_remove(cli, cli_json):
    assert cli(*ADD_LMSTUDIO).exit_code == 0
    code, data = cli_json("list")
    first = data["generation"]
    assert cli("backend", "remove", LMSTUDIO).exit_code == 0
    code, data = cli_json("list")
    assert data["generation"] == first + 1


# ---- refusals -------------------------------------------------------------------------

def test_openai_compatible_needs_api_base(cli, broke_home):
    result = cli("backend", "add", LMSTUDIO, "--provider", "openai-compatible", "--model", "qwen3")
    assert_one_error_line(result, "--api-base")
    assert state_bytes(broke_home) is None


@pytest.mark.parametrize("url", ["ftp://x", "127.0.0.1:1234", "http://", "localhost"])
def test_bad_api_base_refused(cli, broke_home, url):
    result = cli("backend", "add", LMSTUDIO, "--provider", "openai-compatible", "--api-base", url,
                 "--model", "qwen3")
    assert_one_error_line(result, "--api-base", url)
    assert state_bytes(broke_home) is None


@pytest.mark.parametrize("key_env", ["fake_api_key", "1KEY", "FAKE-KEY", "FAKE KEY", ""])
def test_bad_key_env_refused(cli, broke_home, key_env):
    result = cli(*ADD_LMSTUDIO[:-1], key_env)
    assert_one_error_line(result, "--key-env")
    assert state_bytes(broke_home) is None


def test_unknown_provider_refused(cli, broke_home):
    result = cli("backend", "add", "acme/rocket", "--provider", "acme", "--model", "rocket")
    assert_one_error_line(result, "acme", "provider")
    assert state_bytes(broke_home) is None


@pytest.mark.parametrize("backend_id", ["noslash", "/model", "provider/"])
def test_id_without_provider_model_shape_refused(cli, broke_home, backend_id):
    result = cli("backend", "add", backend_id, "--provider", "groq", "--model", "m")
    assert_one_error_line(result, backend_id, "PROVIDER/MODEL")
    assert state_bytes(broke_home) is None


def test_known_catalog_backend_id_refused(cli, broke_home):
    result = cli("backend", "add", GROQ, "--provider", "groq", "--model", "llama-3.3-70b-versatile")
    assert_one_error_line(result, GROQ, "known backend")
    assert state_bytes(broke_home) is None


def test_empty_model_refused(cli, broke_home):
    result = cli("backend", "add", "groq/x", "--provider", "groq", "--model", "  ")
    assert_one_error_line(result, "--model")
    assert state_bytes(broke_home) is None


def test_missing_model_is_usage_error(cli, broke_home):
    result = cli("backend", "add", LMSTUDIO, "--provider", "openai-compatible",
                 "--api-base", "http://127.0.0.1:1234/v1")
    assert_one_error_line(result, "--model", code=2)
    assert state_bytes(broke_home) is None


def test_missing_provider_is_usage_error(cli):
    assert_one_error_line(cli("backend", "add", LMSTUDIO, "--model", "qwen3"), "--provider", code=2)


def test_add_refused_when_frozen(cli, broke_home):
    assert cli("freeze", "on").exit_code == 0
    before = state_bytes(broke_home)
    assert_one_error_line(cli(*ADD_LMSTUDIO), "frozen")
    assert state_bytes(broke_home) == before


# ---- remove ----------------------------------------------------------------------------

def test_remove_while_used_by_slot_refused_then_works_after_swap(cli, cli_json, broke_home):
    assert cli(*ADD_LMSTUDIO).exit_code == 0
    assert cli("swap", "custom", LMSTUDIO).exit_code == 0
    before = state_bytes(broke_home)
    result = cli("backend", "remove", LMSTUDIO)
    assert_one_error_line(result, LMSTUDIO, "slot custom")
    assert state_bytes(broke_home) == before

    assert cli("swap", "custom", "openrouter/qwen/qwen3-coder").exit_code == 0
    result = cli("backend", "remove", LMSTUDIO)
    assert result.exit_code == 0, result.output
    assert LMSTUDIO in result.stdout
    code, rows = cli_json("models")
    assert LMSTUDIO not in {r["id"] for r in rows}


def test_remove_while_used_as_fallback_refused(cli):
    assert cli(*ADD_LMSTUDIO).exit_code == 0
    assert cli("fallback", "haiku", LMSTUDIO).exit_code == 0
    assert_one_error_line(cli("backend", "remove", LMSTUDIO), "slot haiku")
    assert cli("fallback", "haiku", "--clear").exit_code == 0
    assert cli("backend", "remove", LMSTUDIO).exit_code == 0


def test_removing_catalog_backend_refused(cli, broke_home):
    result = cli("backend", "remove", GROQ)
    assert_one_error_line(result, GROQ, "known backend")


def test_removing_unknown_backend_refused(cli):
    assert_one_error_line(cli("backend", "remove", "acme/nothing"), "acme/nothing")


def test_swap_to_removed_backend_refused(cli):
    assert cli(*ADD_LMSTUDIO).exit_code == 0
    assert cli("backend", "remove", LMSTUDIO).exit_code == 0
    assert_one_error_line(cli("swap", "custom", LMSTUDIO), LMSTUDIO)


# ---- keys from $BROKE_HOME/.env --------------------------------------------------------

SECRET = "sk-test"


@pytest.fixture
def dotenv_key(broke_home):
    broke_home.mkdir(parents=True, exist_ok=True)
    (broke_home / ".env").write_text(f"OPENAI_API_KEY={SECRET}\n")
    return broke_home / ".env"


def test_key_from_dotenv_is_seen(cli, cli_json, dotenv_key):
    result = cli("route", "gpt-5")
    assert result.exit_code == 0, result.output
    assert "openai/gpt-5-2025-08-07" in result.stdout
    assert "OPENAI_API_KEY" in result.stdout
    code, data = cli_json("route", "gpt-5")
    assert code == 0
    assert data["chosen"]["key_env"] == "OPENAI_API_KEY"


def test_without_dotenv_the_key_is_missing(cli):
    result = cli("route", "gpt-5")
    assert result.exit_code == 1
    assert "OPENAI_API_KEY" in result.output


def test_dotenv_pool_and_process_env_together(cli_json, dotenv_key, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY_2", "sk-other")
    code, data = cli_json("explain", "gpt-5")
    assert code == 0
    keys = [c["key_env"] for c in data["candidates"] if c["backend"] == "openai/gpt-5-2025-08-07"]
    assert keys == ["OPENAI_API_KEY", "OPENAI_API_KEY_2"]


def test_empty_value_in_dotenv_is_not_a_key(cli, broke_home):
    broke_home.mkdir(parents=True, exist_ok=True)
    (broke_home / ".env").write_text("OPENAI_API_KEY=\n")
    assert cli("route", "gpt-5").exit_code == 1


@pytest.mark.parametrize("args", [
    ("route", "gpt-5"), ("route", "gpt-5", "--json"),
    ("explain", "gpt-5"), ("explain", "gpt-5", "--json"),
    ("list",), ("list", "--json"),
    ("models",), ("models", "--json"),
    ("validate",), ("validate", "--json"),
    ("doctor",), ("doctor", "--json"),
])
def test_no_output_contains_the_key_value(cli, dotenv_key, args):
    result = cli(*args)
    assert "Traceback" not in result.output
    assert SECRET not in result.output
    assert SECRET not in (result.stderr or "")


def test_adding_an_existing_custom_backend_is_refused(cli, broke_home):
    add = ["backend", "add", "lm/q", "--provider", "openai-compatible", "--api-base",
           "http://127.0.0.1:1234/v1", "--model", "q"]
    assert cli(*add).exit_code == 0
    assert cli("swap", "custom", "lm/q").exit_code == 0
    before = (broke_home / "state.toml").read_bytes()
    result = cli("backend", "add", "lm/q", "--provider", "groq", "--model", "other")
    assert_one_error_line(result, "custom backend 'lm/q' exists", "backend remove")
    assert (broke_home / "state.toml").read_bytes() == before


@pytest.mark.parametrize("url", ["http://x y/v1", "http:///v1", "127.0.0.1:1234", ""])
def test_malformed_api_base_is_refused(cli, url):
    result = cli("backend", "add", "lm/q", "--provider", "openai-compatible", "--api-base", url,
                 "--model", "q")
    assert_one_error_line(result, "--api-base")
