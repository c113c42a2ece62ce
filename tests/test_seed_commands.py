"""The seed tool's small commands: team fallback and access, model policy retries and cooldown,
key and model state set by hand, the fixed tokens, and the `.env` template of a new home."""
from __future__ import annotations

import json
import stat
import tomllib

import pytest

from broke.catalog import load_catalog
from broke.control.runfiles import TokenStore, new_master_key
from broke.keys import ENV_TEMPLATE, key_pool, seed_dotenv
from conftest import assert_one_error_line

pytest_plugins = ("proxy_harness",)

FIXED = "team-wide-client-token-0123456789abcdef"


# ---- team fallback / team access --------------------------------------------------------------

def test_team_fallback_saves_a_user_copy_of_a_shipped_team(cli, cli_json, broke_home):
    result = cli("team", "fallback", "cloud-direct", "sonnet", "openai/gpt-5.4", "haiku")
    assert result.exit_code == 0, result.output
    team = tomllib.loads((broke_home / "teams" / "cloud-direct.toml").read_text())
    assert team["slots"]["sonnet"]["fallbacks"] == ["openai/gpt-5.4", "haiku"]
    assert cli_json("list")[1]["generation"] == 0  # the state waits for `team load`
    assert cli("team", "load", "cloud-direct").exit_code == 0
    slots = {row["slot"]: row for row in cli_json("list")[1]["slots"]}
    assert slots["sonnet"]["fallbacks"] == ["openai/gpt-5.4", "haiku"]


def test_team_access_is_applied_when_the_team_loads(cli, cli_json):
    assert cli("team", "access", "demo", "--slots", "haiku,gpt54mini", "--rpm", "30", "--tpm", "9000").exit_code == 0
    assert cli("team", "load", "demo").exit_code == 0
    assert cli_json("route", "sonnet")[1]["allowed"] is False
    assert cli_json("route", "gpt-5.4-mini")[1]["allowed"] is True
    assert cli("team", "access", "demo", "--rpm", "0").exit_code == 0  # other limits kept
    assert cli("team", "load", "demo").exit_code == 0
    assert cli_json("route", "sonnet")[1]["allowed"] is False


@pytest.mark.parametrize("args, fragment", [
    (["team", "fallback", "nonesuch", "sonnet", "haiku"], "unknown team 'nonesuch'"),
    (["team", "fallback", "demo", "nonesuch", "haiku"], "unknown slot 'nonesuch'"),
    (["team", "fallback", "demo", "sonnet", "nope/none"], "unknown backend 'nope/none'"),
    (["team", "fallback", "demo", "sonnet", "sonnet"], "cannot fall back to itself"),
    (["team", "access", "demo", "--slots", "nonesuch"], "unknown slot 'nonesuch'"),
    (["team", "access", "demo", "--rpm", "-1"], "0 (unlimited) or more"),
    (["team", "access", "demo"], "give --slots, --rpm or --tpm"),
])
def test_team_edits_refuse_bad_input_and_write_nothing(cli, broke_home, args, fragment):
    assert_one_error_line(cli(*args), fragment)
    assert not (broke_home / "teams").exists()


# ---- model policy: priority_order, retries, cooldown --------------------------------------------

def test_model_policy_priority_order_retries_and_cooldown(cli, cli_json, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant")
    assert cli("fallback", "gpt54", "openai/gpt-5.2", "anthropic/claude-haiku-4-5").exit_code == 0
    assert len({c.split("@")[0] for c in cli_json("route", "gpt54")[1]["attempts"]}) == 3
    result = cli("model-policy", "gpt54", "--mode", "priority_order", "--retries", "1", "--cooldown", "20")
    assert result.exit_code == 0, result.output
    assert cli_json("model-policy", "gpt54")[1]["gpt54"] == {
        "mode": "priority_order", "order": [], "cooldown_last": True, "retries": 1, "cooldown_s": 20}
    attempts = cli_json("route", "gpt54")[1]["attempts"]
    assert [a.split("@")[0] for a in attempts] == ["openai/gpt-5.4", "openai/gpt-5.2"]  # the first, then one more
    assert cli("model-policy", "gpt54", "--mode", "ordered").exit_code == 0  # the older name still works
    assert cli_json("model-policy", "gpt54")[1]["gpt54"]["mode"] == "ordered"


def test_the_gateway_tries_no_more_backends_than_the_model_policy_retries(store, cloud, start_proxy):
    from broke import changes

    changes.set_fallbacks(store, "sonnet", ["fake/model-b"])
    changes.set_model_policy(store, "sonnet", retries=0)
    proxy = start_proxy()
    cloud.fail("500", model="model-a", times=1)
    answer = proxy.chat("sonnet")
    assert answer.status_code == 500 and answer.headers["x-broke-attempts"] == "1"
    assert [r["model"] for r in cloud.requests] == ["model-a"]  # model-b not tried
    changes.set_model_policy(store, "sonnet", retries=1)
    cloud.fail("500", model="model-b", times=1)
    answer = proxy.chat("sonnet")  # model-a sits out: model-b first, then model-a as the last resort
    assert answer.status_code == 200 and answer.headers["x-broke-attempts"] == "2"


def test_the_model_policy_cooldown_caps_a_failed_backends_sit_out(store, cloud, start_proxy):
    from broke import changes

    changes.set_model_policy(store, "sonnet", cooldown_s=3)
    proxy = start_proxy()
    cloud.fail("500", model="model-a", times=4)
    cooldowns = []
    for _ in range(4):
        assert proxy.chat("sonnet").status_code == 500
        record = proxy.health().models["fake/model-a"]
        assert record.until is not None
        cooldowns.append(round(record.until - record.updated_at))
    assert cooldowns == [1, 2, 3, 3]  # the backoff, never past the slot's 3 s


@pytest.mark.parametrize("args, fragment", [
    (["model-policy", "gpt54", "--retries", "-1"], "0 or more"),
    (["model-policy", "gpt54", "--cooldown", "-5"], "0 or more"),
    (["model-policy", "gpt54", "--mode", "priority"], "--mode must be one of"),
])
def test_model_policy_bad_values(cli, cli_json, args, fragment):
    assert_one_error_line(cli(*args), fragment)
    assert cli_json("list")[1]["generation"] == 0


# ---- key and model state by hand --------------------------------------------------------------

def test_key_state_auth_failed_and_model_state_incompatible_by_hand(cli, cli_json, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-openai-secret")
    assert cli("key-state", "set", "OPENAI_API_KEY", "auth_failed").exit_code == 0
    keys = {r["name"]: r for r in cli_json("key-state")[1]}
    assert keys["OPENAI_API_KEY"]["status"] == "auth_failed" and keys["OPENAI_API_KEY"]["until"] is None
    assert cli("model-state", "set", "openai/gpt-5.2", "incompatible").exit_code == 0
    models = {r["name"]: r["status"] for r in cli_json("model-state")[1]}
    assert models["openai/gpt-5.2"] == "incompatible"
    route = cli_json("route", "gpt52")[1]
    assert route["attempts"] == [] and "incompatible" in route["reason"]
    assert "sk-openai-secret" not in json.dumps(cli_json("key-state")[1])


@pytest.mark.parametrize("args, fragment, code", [
    (["key-state", "set", "OPENAI_API_KEY", "incompatible"], "status must be one of", 2),
    (["model-state", "set", "openai/gpt-5.2", "auth_failed"], "status must be one of", 2),
    (["model-state", "set", "nope/none", "incompatible"], "unknown backend 'nope/none'", 1),
    (["key-state", "set", "lower-case", "blocked"], "not a key variable name", 1),
])
def test_state_by_hand_bad_input(cli, broke_home, args, fragment, code):
    assert_one_error_line(cli(*args), fragment, code=code)
    assert not (broke_home / "health.json").exists()


# ---- fixed tokens -----------------------------------------------------------------------------

def test_fixed_client_token_from_the_environment(cli, broke_home, monkeypatch):
    monkeypatch.setenv("BROKE_CLIENT_TOKEN", FIXED)
    assert json.loads(cli("connect", "--json").stdout)["token"] == FIXED
    assert TokenStore(broke_home).load()["client"] == FIXED  # the file the gateway reads
    plan = cli("launch-env", "codex")
    assert plan.exit_code == 0 and FIXED not in plan.output  # masked


def test_launched_clients_never_get_the_fixed_tokens_variables(cli, monkeypatch):
    monkeypatch.setenv("BROKE_CLIENT_TOKEN", FIXED)
    monkeypatch.setenv("BROKE_INTERNAL_MASTER_KEY", "m" * 40)
    for client in ("claude", "codex"):
        plan = json.loads(cli("launch-env", client, "--json").stdout)
        assert {"BROKE_CLIENT_TOKEN", "BROKE_INTERNAL_MASTER_KEY"} <= set(plan["removed"])
        assert "m" * 40 not in json.dumps(plan)


def test_fixed_tokens_from_the_home_env_file(cli, broke_home, monkeypatch):
    broke_home.mkdir(parents=True)
    master = "m" * 40
    (broke_home / ".env").write_text(f"BROKE_CLIENT_TOKEN={FIXED}\nBROKE_INTERNAL_MASTER_KEY={master}\n")
    assert json.loads(cli("connect", "--json").stdout)["token"] == FIXED
    assert new_master_key(broke_home) == master
    monkeypatch.setenv("BROKE_CLIENT_TOKEN", FIXED[::-1])  # the environment wins
    assert TokenStore(broke_home).token_for("client") == FIXED[::-1]


@pytest.mark.parametrize("variable", ["BROKE_CLIENT_TOKEN", "BROKE_INTERNAL_MASTER_KEY"])
def test_a_short_fixed_token_is_refused_without_showing_it(cli, broke_home, monkeypatch, variable):
    monkeypatch.setenv(variable, "short-secret-value")
    result = cli("start") if variable == "BROKE_INTERNAL_MASTER_KEY" else cli("connect")
    assert_one_error_line(result, variable, "at least 32")
    assert "short-secret-value" not in result.output
    assert not (broke_home / "run" / "tokens.json").exists()


def test_the_gateway_accepts_the_fixed_client_token(start_proxy, cloud, monkeypatch):
    monkeypatch.setenv("BROKE_CLIENT_TOKEN", FIXED)
    proxy = start_proxy()
    assert proxy.token == FIXED
    assert proxy.chat("sonnet").status_code == 200
    assert proxy.chat("sonnet", token="broke-some-other-token-0123456789abcdef").status_code == 401


def test_connect_admin_prints_the_admin_token_and_refuses_a_profile(cli, broke_home):
    result = cli("connect", "--admin")
    token = (broke_home / "run" / "admin_token").read_text()
    assert result.exit_code == 0 and token in result.stdout and "/admin/v1/openapi.json" in result.stdout
    assert token != TokenStore(broke_home).token_for("client")
    assert_one_error_line(cli("connect", "--admin", "--profile", "ci"), "--admin and --profile", code=2)


# ---- the .env template ------------------------------------------------------------------------

def test_the_template_lists_every_provider_key_with_pools_and_the_fixed_tokens():
    names = [line.split("=")[0] for line in ENV_TEMPLATE.read_text().splitlines()
             if line and not line.startswith("#")]
    for provider in load_catalog().providers.values():
        if provider.key_env:
            assert key_pool(provider.key_env, dict.fromkeys(names, "x")) == [
                provider.key_env, f"{provider.key_env}_2", f"{provider.key_env}_3"]
    assert {"BROKE_CLIENT_TOKEN", "BROKE_INTERNAL_MASTER_KEY"} <= set(names)


def test_a_new_home_gets_the_template_and_an_existing_env_is_kept(tmp_path):
    home = tmp_path / "fresh"
    made = seed_dotenv(home)
    assert made == home / ".env" and made.read_text() == ENV_TEMPLATE.read_text()
    assert stat.S_IMODE(made.stat().st_mode) == 0o600
    made.write_text("OPENAI_API_KEY=mine\n")
    assert seed_dotenv(home) is None
    assert made.read_text() == "OPENAI_API_KEY=mine\n"
