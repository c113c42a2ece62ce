"""`swap` in its four forms, and `fallback`."""
from __future__ import annotations

from broke.catalog import load_catalog


def backends_of(cli_json) -> dict[str, str]:
    _, listing = cli_json("list")
    return {row["slot"]: row["backend"] for row in listing["slots"]}


def test_swap_one_slot_and_many(cli, cli_json):
    result = cli("swap", "haiku", "groq/llama-3.3-70b-versatile")
    assert result.exit_code == 0 and "haiku → groq/llama-3.3-70b-versatile" in result.stdout
    assert cli("swap", "sonnet=cerebras/gpt-oss-120b", "gpt-5=gemini/gemini-2.5-pro").exit_code == 0
    mapping = backends_of(cli_json)
    assert mapping["haiku"] == "groq/llama-3.3-70b-versatile"
    assert mapping["sonnet"] == "cerebras/gpt-oss-120b" and mapping["gpt-5"] == "gemini/gemini-2.5-pro"


def test_swap_many_is_all_or_nothing(cli, cli_json):
    before = backends_of(cli_json)
    result = cli("swap", "sonnet=cerebras/gpt-oss-120b", "opus=nope/none")
    assert result.exit_code == 1
    assert backends_of(cli_json) == before


def test_swap_team_loads_a_shipped_preset(cli, cli_json):
    result = cli("swap", "all-local")
    assert result.exit_code == 0 and "team all-local loaded" in result.stdout
    _, listing = cli_json("list")
    assert listing["active_team"] == "all-local"
    assert all(row["backend"].startswith("mlx/") for row in listing["slots"])
    assert all(row["chosen"] for row in listing["slots"])  # local models need no key


def test_interactive_swap_picks_by_number(cli, cli_json):
    catalog = load_catalog()
    slot_number = list(catalog.slots).index("opus") + 1
    backend_number = list(catalog.backends).index("gemini/gemini-2.5-pro") + 1
    result = cli("swap", input=f"{slot_number}\n{backend_number}\n")
    assert result.exit_code == 0, result.output
    assert backends_of(cli_json)["opus"] == "gemini/gemini-2.5-pro"


def test_interactive_swap_without_input_is_a_clear_error(cli, cli_json):
    before = backends_of(cli_json)
    result = cli("swap", input="")
    assert result.exit_code == 1 and "no selection made" in result.stderr
    assert backends_of(cli_json) == before


def test_fallback_set_show_clear(cli, cli_json):
    assert cli("fallback", "sonnet", "groq/llama-3.3-70b-versatile", "haiku").exit_code == 0
    code, shown = cli_json("fallback", "sonnet")
    assert code == 0 and shown == {"slot": "sonnet", "fallbacks": ["groq/llama-3.3-70b-versatile", "haiku"]}
    _, explained = cli_json("explain", "sonnet")
    sources = [(c["backend"], c["source"]) for c in explained["candidates"]]
    assert sources == [("anthropic/claude-sonnet-4-5-20250929", "primary"),
                       ("groq/llama-3.3-70b-versatile", "fallback"),
                       ("anthropic/claude-haiku-4-5-20251001", "via slot haiku")]
    assert cli("fallback", "sonnet", "--clear").exit_code == 0
    assert cli_json("fallback", "sonnet")[1]["fallbacks"] == []
    both = cli("fallback", "sonnet", "haiku", "--clear")
    assert both.exit_code == 2
