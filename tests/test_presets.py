"""Teams and profiles through the CLI: shipped presets, user presets, loading, access limits."""
from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from broke.catalog import load_catalog
from conftest import assert_one_error_line

SHIPPED_TEAMS = ("all-local", "cloud-direct", "free-cloud", "local-first")
SHIPPED_PROFILES = ("ci", "offline", "solo")
GROQ = "groq/llama-3.3-70b-versatile"


def slot_map(cli_json) -> dict[str, dict]:
    code, data = cli_json("list")
    assert code == 0
    return {row["slot"]: row for row in data["slots"]}


def read_team_file(path: Path) -> dict:
    with path.open("rb") as fh:
        return tomllib.load(fh)


# ---- team list / show -----------------------------------------------------------------

def test_team_list_shows_shipped_presets(cli):
    result = cli("team", "list")
    assert result.exit_code == 0, result.output
    for name in SHIPPED_TEAMS:
        assert name in result.stdout


def test_team_list_json(cli_json):
    code, data = cli_json("team", "list")
    assert code == 0
    by_name = {e["name"]: e for e in data}
    for name in SHIPPED_TEAMS:
        assert by_name[name]["origin"] == "shipped"
        assert by_name[name]["slots"] == len(load_catalog().slots)  # every slot, Codex lanes included
        assert by_name[name]["description"]


def test_team_show_json(cli_json):
    code, data = cli_json("team", "show", "free-cloud")
    assert code == 0
    assert data["name"] == "free-cloud"
    assert data["origin"] == "shipped"
    assert data["description"]
    assert data["slots"]["haiku"]["backend"] == GROQ
    assert data["slots"]["haiku"]["fallbacks"] == ["cerebras/gpt-oss-120b", "gemini/gemini-2.5-flash"]
    assert data["slots"]["subagent"]["fallbacks"] == ["haiku"]


def test_team_show_text(cli):
    result = cli("team", "show", "all-local")
    assert result.exit_code == 0
    assert "all-local" in result.stdout
    assert "shipped" in result.stdout
    assert "mlx-community" in result.stdout


# ---- team load --------------------------------------------------------------------------

def test_team_load_changes_slots_and_sets_active_team(cli, cli_json):
    before = slot_map(cli_json)
    assert before["haiku"]["backend"] == "anthropic/claude-haiku-4-5-20251001"
    result = cli("team", "load", "free-cloud")
    assert result.exit_code == 0, result.output
    assert "free-cloud" in result.stdout
    code, data = cli_json("list")
    assert code == 0
    assert data["active_team"] == "free-cloud"
    slots = {row["slot"]: row for row in data["slots"]}
    assert slots["haiku"]["backend"] == GROQ
    assert slots["haiku"]["fallbacks"] == ["cerebras/gpt-oss-120b", "gemini/gemini-2.5-flash"]
    assert slots["sonnet"]["backend"] == "openrouter/qwen/qwen3-coder:free"
    assert slots["opus"]["fallbacks"] == ["openrouter/deepseek/deepseek-chat-v3.1:free", "sonnet"]


def test_every_shipped_team_loads(cli, cli_json):
    for name in SHIPPED_TEAMS:
        result = cli("team", "load", name)
        assert result.exit_code == 0, (name, result.output)
        code, data = cli_json("list")
        assert data["active_team"] == name


def test_swap_with_a_team_name_loads_it(cli, cli_json):
    result = cli("swap", "all-local")
    assert result.exit_code == 0, result.output
    data = slot_map(cli_json)
    assert all(row["backend"].startswith("mlx/") for row in data.values())


def test_team_save_swap_load_restores_mapping(cli, cli_json, broke_home):
    assert cli("team", "load", "free-cloud").exit_code == 0
    saved = slot_map(cli_json)
    result = cli("team", "save", "mine", "--description", "my own")
    assert result.exit_code == 0, result.output
    assert (broke_home / "teams" / "mine.toml").is_file()

    result = cli("swap", "sonnet", GROQ)
    assert result.exit_code == 0, result.output
    assert slot_map(cli_json)["sonnet"]["backend"] == GROQ

    result = cli("team", "load", "mine")
    assert result.exit_code == 0, result.output
    code, data = cli_json("list")
    assert data["active_team"] == "mine"
    restored = {row["slot"]: row for row in data["slots"]}
    for slot, row in saved.items():
        assert (restored[slot]["backend"], restored[slot]["fallbacks"], restored[slot]["pinned"]) == (
            row["backend"], row["fallbacks"], row["pinned"]), slot


def test_saved_team_is_listed_and_shown_as_user(cli, cli_json):
    assert cli("team", "save", "mine", "-d", "my own").exit_code == 0
    code, data = cli_json("team", "list")
    mine = next(e for e in data if e["name"] == "mine")
    assert mine["origin"] == "user"
    assert mine["description"] == "my own"
    code, shown = cli_json("team", "show", "mine")
    assert code == 0
    assert shown["origin"] == "user"
    assert shown["slots"]["sonnet"]["backend"] == "anthropic/claude-sonnet-4-5-20250929"


def test_team_save_does_not_change_the_state(cli, broke_home):
    assert cli("swap", "sonnet", GROQ).exit_code == 0
    before = (broke_home / "state.toml").read_bytes()
    assert cli("team", "save", "mine").exit_code == 0
    assert (broke_home / "state.toml").read_bytes() == before


def test_team_delete_user_team(cli):
    assert cli("team", "save", "mine").exit_code == 0
    result = cli("team", "delete", "mine")
    assert result.exit_code == 0, result.output
    assert "mine" in result.stdout
    assert_one_error_line(cli("team", "show", "mine"), "mine")
    assert_one_error_line(cli("team", "delete", "mine"), "mine")


def test_deleting_a_shipped_team_is_refused(cli):
    result = cli("team", "delete", "free-cloud")
    assert_one_error_line(result, "free-cloud", "shipped")
    assert cli("team", "show", "free-cloud").exit_code == 0


@pytest.mark.parametrize("command", ["load", "show", "delete"])
def test_unknown_team(cli, command):
    result = cli("team", command, "nosuchteam")
    assert_one_error_line(result, "nosuchteam")


@pytest.mark.parametrize("command", ["load", "show", "delete", "save"])
@pytest.mark.parametrize("name", ["../x", "a/b", ".hidden", "-x", "x" * 65, ""])
def test_bad_team_names_refused(cli, broke_home, command, name):
    args = ["team", command, "--", name] if name.startswith("-") else ["team", command, name]
    result = cli(*args)
    assert_one_error_line(result, "team name")
    assert not (broke_home / "x.toml").exists()
    assert not (broke_home.parent / "x.toml").exists()


def test_user_team_with_unknown_backend_is_refused_state_unchanged(cli, broke_home):
    assert cli("swap", "sonnet", GROQ).exit_code == 0
    state_file = broke_home / "state.toml"
    before = state_file.read_bytes()
    team_file = broke_home / "teams" / "broken.toml"
    team_file.parent.mkdir(parents=True, exist_ok=True)
    team_file.write_text(
        'description = "bad"\n'
        '[slots.haiku]\nbackend = "groq/llama-3.3-70b-versatile"\n'
        '[slots.sonnet]\nbackend = "acme/rocket-9"\n'
    )
    result = cli("team", "load", "broken")
    assert_one_error_line(result, str(team_file), "acme/rocket-9")
    assert state_file.read_bytes() == before


def test_user_team_with_unknown_slot_reference_is_refused(cli, broke_home):
    assert cli("swap", "sonnet", GROQ).exit_code == 0
    before = (broke_home / "state.toml").read_bytes()
    team_file = broke_home / "teams" / "broken.toml"
    team_file.parent.mkdir(parents=True, exist_ok=True)
    team_file.write_text('[slots.haiku]\nbackend = "groq/llama-3.3-70b-versatile"\n'
                         'fallbacks = ["nosuchslot"]\n')
    assert_one_error_line(cli("team", "load", "broken"), "nosuchslot")
    assert (broke_home / "state.toml").read_bytes() == before


def test_user_team_with_unknown_key_is_refused_naming_file(cli, broke_home):
    team_file = broke_home / "teams" / "broken.toml"
    team_file.parent.mkdir(parents=True, exist_ok=True)
    team_file.write_text('[slots.haiku]\nbackend = "groq/llama-3.3-70b-versatile"\ncolour = "red"\n')
    result = cli("team", "load", "broken")
    assert_one_error_line(result, str(team_file), "colour")
    assert not (broke_home / "state.toml").exists()


def test_user_team_with_invalid_toml_is_refused(cli, broke_home):
    team_file = broke_home / "teams" / "broken.toml"
    team_file.parent.mkdir(parents=True, exist_ok=True)
    team_file.write_text("[slots.haiku\n")
    assert_one_error_line(cli("team", "load", "broken"), str(team_file))


def test_partial_user_team_keeps_other_slots(cli, cli_json, broke_home):
    assert cli("swap", "sonnet", GROQ).exit_code == 0
    team_file = broke_home / "teams" / "part.toml"
    team_file.parent.mkdir(parents=True, exist_ok=True)
    team_file.write_text('[slots.haiku]\nbackend = "cerebras/gpt-oss-120b"\n')
    assert cli("team", "load", "part").exit_code == 0
    slots = slot_map(cli_json)
    assert slots["haiku"]["backend"] == "cerebras/gpt-oss-120b"
    assert slots["sonnet"]["backend"] == GROQ


# ---- profiles -------------------------------------------------------------------------

def test_profile_list_shows_shipped(cli, cli_json):
    result = cli("profile", "list")
    assert result.exit_code == 0
    for name in SHIPPED_PROFILES:
        assert name in result.stdout
    code, data = cli_json("profile", "list")
    ci = next(p for p in data if p["name"] == "ci")
    assert ci["origin"] == "shipped"
    assert ci["team"] == "free-cloud"
    assert ci["access"]["slots"] == ["haiku", "subagent", "gpt-5-mini", "gpt54mini", "gpt51codexmini", "gemini-flash"]


def test_profile_new_creates(cli, cli_json, broke_home):
    result = cli("profile", "new", "p", "--team", "free-cloud", "--slots", "haiku,subagent", "--rpm", "30")
    assert result.exit_code == 0, result.output
    assert "created" in result.stdout
    assert (broke_home / "profiles" / "p.toml").is_file()
    code, data = cli_json("profile", "show", "p")
    assert code == 0
    assert data["origin"] == "user"
    assert data["team"] == "free-cloud"
    assert data["access"] == {"slots": ["haiku", "subagent"], "rpm": 30, "tpm": 0}


def test_profile_new_again_changes_only_given_fields(cli, cli_json):
    assert cli("profile", "new", "p", "--team", "free-cloud", "--slots", "haiku,subagent",
               "--rpm", "30", "-d", "bots").exit_code == 0
    result = cli("profile", "new", "p", "--tpm", "100")
    assert result.exit_code == 0, result.output
    assert "updated" in result.stdout
    code, data = cli_json("profile", "show", "p")
    assert data["team"] == "free-cloud"
    assert data["description"] == "bots"
    assert data["access"] == {"slots": ["haiku", "subagent"], "rpm": 30, "tpm": 100}


def test_profile_rpm_zero_is_unlimited(cli, cli_json):
    assert cli("profile", "new", "p", "--rpm", "30").exit_code == 0
    assert cli("profile", "new", "p", "--rpm", "0").exit_code == 0
    code, data = cli_json("profile", "show", "p")
    assert data["access"]["rpm"] == 0
    result = cli("profile", "show", "p")
    assert result.exit_code == 0
    rpm_line = next(line for line in result.stdout.splitlines() if "rpm" in line)
    assert "unlimited" in rpm_line


def test_profile_empty_slots_means_all(cli, cli_json):
    assert cli("profile", "new", "p", "--slots", "haiku").exit_code == 0
    assert cli("profile", "new", "p", "--slots", "").exit_code == 0
    code, data = cli_json("profile", "show", "p")
    assert data["access"]["slots"] == []
    result = cli("profile", "show", "p")
    slots_line = next(line for line in result.stdout.splitlines() if "slots" in line)
    assert "all" in slots_line


def test_profile_load_sets_access_and_active_profile(cli, cli_json, monkeypatch):
    assert cli("profile", "new", "p", "--team", "free-cloud", "--slots", "haiku,subagent",
               "--rpm", "30").exit_code == 0
    result = cli("profile", "load", "p")
    assert result.exit_code == 0, result.output
    code, data = cli_json("list")
    assert data["active_profile"] == "p"
    assert data["active_team"] == "free-cloud"
    slots = {row["slot"]: row for row in data["slots"]}
    assert slots["haiku"]["backend"] == GROQ

    result = cli("route", "sonnet")
    assert result.exit_code == 1
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1, result.output
    assert "not allowed by profile 'p'" in lines[0]
    assert "Traceback" not in result.output

    monkeypatch.setenv("GROQ_API_KEY", "gsk-test-value")
    result = cli("route", "haiku", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["allowed"] is True
    assert data["profile"] == "p"
    assert data["chosen"]["backend"] == GROQ
    assert "gsk-test-value" not in result.output


def test_route_allowed_slot_without_key_is_still_allowed(cli):
    assert cli("profile", "new", "p", "--team", "free-cloud", "--slots", "haiku").exit_code == 0
    assert cli("profile", "load", "p").exit_code == 0
    result = cli("route", "haiku", "--json")
    data = json.loads(result.stdout)
    assert data["allowed"] is True
    assert data["chosen"] is None
    assert "GROQ_API_KEY" in data["reason"]
    assert result.exit_code == 1


def test_route_with_shipped_profile_option_is_refused_without_loading(cli, cli_json, broke_home):
    result = cli("route", "sonnet", "--profile", "ci")
    assert result.exit_code == 1
    assert "not allowed by profile 'ci'" in result.output
    code, data = cli_json("route", "sonnet", "--profile", "ci")
    assert code == 1
    assert data["allowed"] is False
    assert data["profile"] == "ci"
    # nothing was loaded
    code, listing = cli_json("list")
    assert listing["active_profile"] == ""
    assert listing["active_team"] == ""
    assert not (broke_home / "state.toml").exists()


def test_route_with_profile_option_allows_its_slots(cli_json):
    code, data = cli_json("route", "haiku", "--profile", "ci")
    assert data["allowed"] is True
    assert data["profile"] == "ci"


def test_route_with_unknown_profile(cli):
    assert_one_error_line(cli("route", "sonnet", "--profile", "nosuch"), "nosuch")


def test_profile_unknown_slot_refused(cli, broke_home):
    result = cli("profile", "new", "p", "--slots", "haiku,nosuchslot")
    assert_one_error_line(result, "nosuchslot")
    assert not (broke_home / "profiles" / "p.toml").exists()


@pytest.mark.parametrize("option", ["--rpm=-1", "--tpm=-5"])
def test_profile_negative_limits_refused(cli, broke_home, option):
    result = cli("profile", "new", "p", option)
    assert_one_error_line(result, "rpm and tpm")
    assert not (broke_home / "profiles" / "p.toml").exists()


def test_profile_negative_limit_on_existing_profile_leaves_it(cli, cli_json):
    assert cli("profile", "new", "p", "--rpm", "30").exit_code == 0
    assert_one_error_line(cli("profile", "new", "p", "--rpm=-1"), "rpm")
    code, data = cli_json("profile", "show", "p")
    assert data["access"]["rpm"] == 30


def test_profile_unknown_team_refused(cli, broke_home):
    result = cli("profile", "new", "p", "--team", "nosuchteam")
    assert_one_error_line(result, "nosuchteam")
    assert not (broke_home / "profiles" / "p.toml").exists()


def test_profile_rpm_not_a_number_is_usage_error(cli):
    assert_one_error_line(cli("profile", "new", "p", "--rpm", "lots"), code=2)


def test_profile_delete(cli):
    assert cli("profile", "new", "p").exit_code == 0
    assert cli("profile", "delete", "p").exit_code == 0
    assert_one_error_line(cli("profile", "show", "p"), "p")
    assert_one_error_line(cli("profile", "delete", "ci"), "ci", "shipped")


@pytest.mark.parametrize("command", ["new", "load", "show", "delete"])
def test_bad_profile_names_refused(cli, command):
    assert_one_error_line(cli("profile", command, "../x"), "profile name")


def test_unknown_profile_load(cli, broke_home):
    assert_one_error_line(cli("profile", "load", "nosuch"), "nosuch")
    assert not (broke_home / "state.toml").exists()


def test_shipped_ci_profile_loads(cli, cli_json):
    assert cli("profile", "load", "ci").exit_code == 0
    code, data = cli_json("list")
    assert data["active_profile"] == "ci"
    assert data["active_team"] == "free-cloud"
    code, routed = cli_json("route", "opus")
    assert code == 1 and routed["allowed"] is False


def test_profile_without_team_keeps_mapping(cli, cli_json):
    assert cli("swap", "sonnet", GROQ).exit_code == 0
    assert cli("profile", "load", "solo").exit_code == 0
    code, data = cli_json("list")
    assert data["active_profile"] == "solo"
    assert {r["slot"]: r for r in data["slots"]}["sonnet"]["backend"] == GROQ
    code, routed = cli_json("route", "sonnet")
    assert routed["allowed"] is True


def test_team_with_a_floating_backend_on_a_pinned_slot_is_refused(cli, broke_home):
    teams = broke_home / "teams"
    teams.mkdir(parents=True)
    (teams / "pf.toml").write_text('[slots.sonnet]\nbackend = "anthropic/claude-sonnet-4-5"\npinned = true\n')
    result = cli("team", "load", "pf")
    assert_one_error_line(result, "pf.toml", "slot 'sonnet'", "pinned", "floating")
    assert not (broke_home / "state.toml").exists()


def test_floating_on_pinned_is_an_error_even_without_a_key(cli, cli_json, broke_home):
    broke_home.mkdir(parents=True)
    (broke_home / "state.toml").write_text(
        '[slots.sonnet]\nbackend = "anthropic/claude-sonnet-4-5"\npinned = true\n')
    code, report = cli_json("validate")
    assert code == 1
    sonnet = [(f["level"], f["code"]) for f in report["findings"] if f["subject"] == "sonnet"]
    assert ("error", "floating_on_pinned") in sonnet
    assert ("warning", "missing_key") not in sonnet
