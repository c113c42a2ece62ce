"""Live policy commands without a gateway: what they store and how the resolver follows it."""
from __future__ import annotations

import json

import pytest

from conftest import assert_one_error_line


@pytest.fixture
def two_keys(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-one")
    monkeypatch.setenv("ANTHROPIC_API_KEY_2", "sk-ant-two")


def deployments(cli_json, slot="sonnet"):
    return [c["deployment"] for c in cli_json("explain", slot)[1]["candidates"]]


def test_key_policy_defaults_and_change(cli, cli_json, two_keys):
    code, policies = cli_json("key-policy")
    assert code == 0 and policies["anthropic"] == {"mode": "rotate_on_rate_limit", "cooldown_s": 60,
                                                   "retries": 2, "order": [],
                                                   "budget": {"usd": 0.0, "period": "month"}}
    result = cli("key-policy", "anthropic", "--mode", "priority", "--cooldown", "15", "--retries", "1",
                 "--order", "ANTHROPIC_API_KEY_2,ANTHROPIC_API_KEY")
    assert result.exit_code == 0, result.output
    assert cli_json("key-policy", "anthropic")[1]["anthropic"] == {
        "mode": "priority", "cooldown_s": 15, "retries": 1, "order": ["ANTHROPIC_API_KEY_2", "ANTHROPIC_API_KEY"],
        "budget": {"usd": 0.0, "period": "month"}}
    assert deployments(cli_json)[:2] == ["anthropic/claude-sonnet-4-5-20250929@ANTHROPIC_API_KEY_2",
                                         "anthropic/claude-sonnet-4-5-20250929@ANTHROPIC_API_KEY"]
    # Omitted options stay as they were.
    assert cli("key-policy", "anthropic", "--cooldown", "30").exit_code == 0
    assert cli_json("key-policy", "anthropic")[1]["anthropic"]["mode"] == "priority"


@pytest.mark.parametrize("args, fragment", [
    (["key-policy", "nonesuch", "--mode", "priority"], "unknown provider 'nonesuch'"),
    (["key-policy", "anthropic", "--mode", "random"], "--mode must be one of"),
    (["key-policy", "anthropic", "--cooldown", "-1"], "0 or more"),
    (["key-policy", "anthropic", "--order", "OPENAI_API_KEY"], "not a key variable of anthropic"),
    (["model-policy", "sonnet", "--mode", "fastest-ever"], "--mode must be one of"),
    (["model-policy", "nonesuch", "--mode", "ordered"], "unknown slot 'nonesuch'"),
    (["model-policy", "sonnet", "--order", "nope/x"], "unknown backend 'nope/x'"),
])
def test_bad_policy_input_is_refused(cli, broke_home, args, fragment):
    assert_one_error_line(cli(*args), fragment)
    assert not (broke_home / "state.toml").exists()


def test_model_policy_orders_the_chain(cli, cli_json):
    assert cli("fallback", "sonnet", "groq/llama-3.3-70b-versatile", "cerebras/gpt-oss-120b").exit_code == 0
    assert cli("model-policy", "sonnet", "--order", "cerebras/gpt-oss-120b").exit_code == 0
    backends = [c["backend"] for c in cli_json("explain", "sonnet")[1]["candidates"]]
    assert backends == ["cerebras/gpt-oss-120b", "anthropic/claude-sonnet-4-5-20250929",
                        "groq/llama-3.3-70b-versatile"]
    assert cli_json("model-policy", "sonnet")[1]["sonnet"] == {"mode": "ordered", "cooldown_last": True,
                                                               "order": ["cerebras/gpt-oss-120b"]}


def test_policy_edits_are_blocked_while_frozen(cli, broke_home):
    assert cli("freeze", "on").exit_code == 0
    before = (broke_home / "state.toml").read_bytes()
    for args in (["key-policy", "anthropic", "--mode", "sticky"], ["model-policy", "sonnet", "--mode", "round_robin"]):
        assert_one_error_line(cli(*args), "state is frozen")
    assert (broke_home / "state.toml").read_bytes() == before


def test_key_state_set_by_hand_steers_the_resolver(cli, cli_json, two_keys, broke_home):
    assert cli("key-state", "set", "ANTHROPIC_API_KEY", "cooldown", "--for", "120").exit_code == 0
    code, keys = cli_json("key-state")
    by_name = {k["name"]: k for k in keys}
    assert by_name["ANTHROPIC_API_KEY"]["status"] == "cooldown" and by_name["ANTHROPIC_API_KEY"]["until"]
    assert by_name["ANTHROPIC_API_KEY_2"]["status"] == "unknown"
    assert "sk-ant" not in json.dumps(keys) and "sk-ant" not in cli("key-state").output
    chosen = cli_json("route", "sonnet")[1]["chosen"]["deployment"]
    assert chosen.endswith("@ANTHROPIC_API_KEY_2")
    assert cli("key-state", "set", "ANTHROPIC_API_KEY", "healthy").exit_code == 0
    assert cli_json("route", "sonnet")[1]["chosen"]["deployment"].endswith("@ANTHROPIC_API_KEY")
    log = (broke_home / "run" / "rotation.log").read_text()
    assert '"reason": "manual"' in log and "sk-ant" not in log


def test_model_state_set_benches_a_backend(cli, cli_json, two_keys):
    assert cli("fallback", "sonnet", "opus").exit_code == 0
    assert cli("model-state", "set", "anthropic/claude-sonnet-4-5-20250929", "blocked").exit_code == 0
    assert cli_json("route", "sonnet")[1]["chosen"]["backend"] == "anthropic/claude-opus-4-1-20250805"
    states = {r["name"]: r["status"] for r in cli_json("model-state")[1]}
    assert states["anthropic/claude-sonnet-4-5-20250929"] == "blocked"


@pytest.mark.parametrize("args", [
    ["key-state", "set", "ANTHROPIC_API_KEY", "exploded"],
    ["key-state", "set", "ANTHROPIC_API_KEY"],
    ["key-state", "unset", "ANTHROPIC_API_KEY", "healthy"],
    ["model-state", "set", "anthropic/claude-sonnet-4-5-20250929", "maybe"],
])
def test_bad_state_commands_are_usage_errors(cli, args):
    assert_one_error_line(cli(*args), code=2)


def test_model_state_of_unknown_backend_is_refused(cli):
    assert_one_error_line(cli("model-state", "set", "nope/x", "blocked"), "unknown backend 'nope/x'")


def test_key_policy_of_a_custom_provider_is_listed(cli, cli_json):
    """A policy set for a provider without a catalog key (a custom backend's --key-env) is shown."""
    assert cli("backend", "add", "openai-compatible/lab", "--provider", "openai-compatible", "--model", "m",
               "--api-base", "http://127.0.0.1:9/v1", "--key-env", "LAB_API_KEY").exit_code == 0
    assert cli("key-policy", "openai-compatible", "--mode", "priority", "--order", "LAB_API_KEY_2").exit_code == 0
    code, policies = cli_json("key-policy")
    assert code == 0 and policies["openai-compatible"]["mode"] == "priority"
    assert policies["openai-compatible"]["order"] == ["LAB_API_KEY_2"]
    assert "openai-compatible" in cli("key-policy").output


def test_explain_auto_without_a_prompt_shows_every_tiers_candidates(cli, cli_json):
    """No prompt, no tier: every tier's candidates, cheapest tier first, then the slot's own chain."""
    assert cli("router", "tier", "basic", "groq/llama-3.3-70b-versatile").exit_code == 0
    assert cli("router", "tier", "premium", "anthropic/claude-opus-4-1-20250805").exit_code == 0
    code, data = cli_json("explain", "auto")
    assert code == 0 and data["tier"] == "" and data["p_strong"] is None
    sources = [(c["backend"], c["source"]) for c in data["candidates"]]
    assert sources[:2] == [("groq/llama-3.3-70b-versatile", "tier basic"),
                           ("anthropic/claude-opus-4-1-20250805", "tier premium")]
    assert all(not source.startswith("tier ") for _, source in sources[2:])  # the slot's own chain after them
    assert any("no prompt given" in note for note in data["notes"])
    shown = cli("explain", "auto").stdout
    assert "tier basic" in shown and "tier premium" in shown and "no prompt given" in shown
    assert cli("router", "tier", "premium").exit_code == 0 and cli("router", "tier", "basic").exit_code == 0
    assert [c["source"] for c in cli_json("explain", "auto")[1]["candidates"]][0] == "primary"  # no tiers: as before
