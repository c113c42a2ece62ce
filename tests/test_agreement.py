"""route, explain, doctor and validate tell the same truth: one resolver behind all of them."""
from __future__ import annotations

import json
import time

import pytest


def _resolutions(cli, cli_json, slots):
    by_surface = {"route": {}, "explain": {}}
    for slot in slots:
        for surface in by_surface:
            result = cli(surface, slot, "--json")
            by_surface[surface][slot] = json.loads(result.stdout)
            by_surface[surface][slot].pop("budgets", None)  # explain also shows the budgets a request meets
    _, doctor = cli_json("doctor")
    _, validate = cli_json("validate")
    by_surface["doctor"] = {r["slot"]: r for r in doctor["resolutions"]}
    by_surface["validate"] = {r["slot"]: r for r in validate["resolutions"]}
    return by_surface


def _write_health(home, data):
    home.mkdir(parents=True, exist_ok=True)
    (home / "health.json").write_text(json.dumps(data))


@pytest.mark.parametrize("scenario", ["fresh", "keys", "health", "profile-and-fallbacks"])
def test_every_surface_agrees_for_every_slot(scenario, cli, cli_json, slots, broke_home, monkeypatch):
    if scenario in ("keys", "health", "profile-and-fallbacks"):
        monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-a")
        monkeypatch.setenv("ANTHROPIC_API_KEY_2", "sk-b")
        monkeypatch.setenv("GROQ_API_KEY", "gsk")
    if scenario == "health":
        _write_health(broke_home, {
            "generation": 3,
            "models": {"anthropic/claude-opus-4-1-20250805": {"status": "blocked", "reason": "500"}},
            "keys": {"ANTHROPIC_API_KEY": {"status": "cooldown", "until": time.time() + 600,
                                           "reason": "429"}},
        })
    if scenario == "profile-and-fallbacks":
        assert cli("fallback", "gpt-5", "groq/llama-3.3-70b-versatile", "haiku").exit_code == 0
        assert cli("profile", "new", "narrow", "--slots", "gpt-5,haiku").exit_code == 0
        assert cli("profile", "load", "narrow").exit_code == 0

    surfaces = _resolutions(cli, cli_json, slots)
    for slot in slots:
        reference = surfaces["route"][slot]
        for name, by_slot in surfaces.items():
            assert by_slot[slot] == reference, f"{name} disagrees with route on {slot}"
    chosen = {slot: (r["chosen"] or {}).get("deployment") for slot, r in surfaces["route"].items()}
    if scenario == "fresh":
        assert set(chosen.values()) == {None}
    if scenario == "keys":
        assert chosen["sonnet"] == "anthropic/claude-sonnet-4-5-20250929@ANTHROPIC_API_KEY"
    if scenario == "health":
        assert chosen["sonnet"] == "anthropic/claude-sonnet-4-5-20250929@ANTHROPIC_API_KEY_2"
        assert chosen["opus"] is None
    if scenario == "profile-and-fallbacks":
        assert chosen["gpt-5"] == "groq/llama-3.3-70b-versatile@GROQ_API_KEY"
        assert chosen["sonnet"] is None and surfaces["route"]["sonnet"]["allowed"] is False


def test_route_exit_code_follows_the_choice(cli, monkeypatch):
    assert cli("route", "sonnet").exit_code == 1
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-a")
    result = cli("route", "claude-sonnet-4-5")
    assert result.exit_code == 0
    assert "sonnet → anthropic/claude-sonnet-4-5-20250929" in result.stdout
    assert "sk-a" not in result.output


def test_explain_shows_every_candidate_and_why(cli, monkeypatch):
    monkeypatch.setenv("GROQ_API_KEY", "gsk")
    assert cli("fallback", "sonnet", "groq/llama-3.3-70b-versatile").exit_code == 0
    result = cli("explain", "sonnet")
    assert result.exit_code == 0
    assert "missing key ANTHROPIC_API_KEY" in result.stdout
    assert "groq/llama-3.3-70b-versatile" in result.stdout and "chosen" in result.stdout
    assert "gsk" not in result.output


def test_doctor_reports_state_keys_and_slots(cli, cli_json, monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-o")
    code, report = cli_json("doctor")
    assert code == 1  # the Claude slots have no key
    assert report["state"]["exists"] is False
    assert {"provider": "openai", "key_env": "OPENAI_API_KEY", "present": ["OPENAI_API_KEY"]} in report["keys"]
    assert "sk-o" not in json.dumps(report)
    codes = {(f["code"], f["subject"]) for f in report["findings"]}
    assert ("no_candidate", "sonnet") in codes
    assert ("no_candidate", "gpt-5") not in codes
    human = cli("doctor")
    assert human.exit_code == 1
    assert "ok  gpt-5 → openai/gpt-5-2025-08-07@OPENAI_API_KEY" in human.stdout


def test_doctor_counts_keys_of_custom_backends(cli, cli_json, monkeypatch):
    monkeypatch.setenv("LAB_TOKEN_VAR", "secret-1")
    monkeypatch.setenv("LAB_TOKEN_VAR_2", "secret-2")
    assert cli("backend", "add", "lab/m", "--provider", "openai-compatible", "--api-base",
               "http://127.0.0.1:9/v1", "--model", "m", "--key-env", "LAB_TOKEN_VAR").exit_code == 0
    _, report = cli_json("doctor", "--static")
    entry = next(k for k in report["keys"] if k["key_env"] == "LAB_TOKEN_VAR")
    assert entry["present"] == ["LAB_TOKEN_VAR", "LAB_TOKEN_VAR_2"]
    assert "secret" not in json.dumps(report)
    assert "openai-compatible:LAB_TOKEN_VAR ×2" in cli("doctor", "--static").stdout


def test_validate_passes_when_every_slot_resolves(cli, cli_json, monkeypatch):
    for var in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "OPENROUTER_API_KEY", "GEMINI_API_KEY"):
        monkeypatch.setenv(var, "k")
    code, report = cli_json("validate")
    assert code == 0 and report["ok"] is True
    assert {f["code"] for f in report["findings"]} <= {"floating_alias"}
