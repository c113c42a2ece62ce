"""The catalog: slot families, client aliases, providers and backends all come from catalog.toml."""
from __future__ import annotations

import tomllib

import pytest

from broke.catalog import load_catalog, split_backend_id
from broke.errors import InvalidInputError, NotFoundError
from broke.paths import PROJECT_ROOT
from broke.routing.backends import is_slot_reference


@pytest.fixture(scope="module")
def catalog():
    return load_catalog()


def _shipped(kind: str) -> dict[str, dict]:
    out = {}
    for path in sorted((PROJECT_ROOT / kind).glob("*.toml")):
        with path.open("rb") as fh:
            out[path.stem] = tomllib.load(fh)
    return out


# ---- slot families -------------------------------------------------------------------

def test_families_and_their_slots(catalog):
    families = {f.name: f.slots for f in catalog.families}
    assert families["codex"] == ("gpt-5-codex", "gpt-5", "gpt-5-mini", "gpt54", "gpt54mini", "gpt53codex",
                                 "gpt52codex", "gpt52", "gpt51codexmax", "gpt51codexmini")
    assert families["claude"] == ("sonnet", "opus", "haiku", "subagent", "custom")
    assert "auto" in {slot for f in catalog.families for slot in f.slots}
    assert all(f.description for f in catalog.families)


def test_slots_are_every_family_slot_in_order_without_duplicates(catalog):
    flat = tuple(slot for f in catalog.families for slot in f.slots)
    assert catalog.slots == flat
    assert len(set(catalog.slots)) == len(catalog.slots)
    assert set(catalog.slots) == {
        "sonnet", "opus", "haiku", "subagent", "custom", "gpt-5-codex", "gpt-5", "gpt-5-mini", "gpt54",
        "gpt54mini", "gpt53codex", "gpt52codex", "gpt52", "gpt51codexmax", "gpt51codexmini", "gemini-pro",
        "gemini-flash", "auto",
    }


def test_slots_fixture_matches_catalog(slots, catalog):
    assert slots == catalog.slots


@pytest.mark.parametrize("slot, family", [
    ("sonnet", "claude"), ("custom", "claude"), ("gpt-5", "codex"), ("gpt-5-mini", "codex"),
    ("gemini-pro", "gemini"), ("gemini-flash", "gemini"),
])
def test_family_of(catalog, slot, family):
    assert catalog.family_of(slot) == family


def test_auto_is_its_own_family(catalog):
    family = catalog.family_of("auto")
    assert family not in ("claude", "codex")
    assert next(f for f in catalog.families if f.name == family).slots == ("auto",)


# ---- client aliases ------------------------------------------------------------------

@pytest.mark.parametrize("requested, slot", [
    ("claude-opus-5-5", "opus"),
    ("claude-opus-4-1-20250805", "opus"),
    ("claude-sonnet-4-5", "sonnet"),
    ("claude-sonnet-4-5-20250929", "sonnet"),
    ("claude-haiku-4-5-20251001", "haiku"),
    ("claude-3-5-haiku-20241022", "haiku"),
    ("gpt-5.1-codex", "gpt-5-codex"),
    ("gpt-5-codex", "gpt-5-codex"),
    ("gpt-5-mini", "gpt-5-mini"),
    ("gpt-5.1-mini", "gpt-5-mini"),
    ("gpt-5.1", "gpt-5"),
    ("gpt-5-2025-08-07", "gpt-5"),
    # every Codex lane under the name Codex sends, and its dated variants by the same rule
    ("gpt-5.4", "gpt54"), ("gpt-5.4-2026-03-05", "gpt54"),
    ("gpt-5.4-mini", "gpt54mini"), ("gpt-5.4-mini-2026-03-17", "gpt54mini"),
    ("gpt-5.3-codex", "gpt53codex"), ("gpt-5.3-codex-2026-02-05", "gpt53codex"),
    ("gpt-5.2-codex", "gpt52codex"), ("gpt-5.2-codex-2026-01-14", "gpt52codex"),
    ("gpt-5.2", "gpt52"), ("gpt-5.2-2025-12-11", "gpt52"),
    ("gpt-5.1-codex-max", "gpt51codexmax"), ("gpt-5.1-codex-max-2025-11-19", "gpt51codexmax"),
    ("gpt-5.1-codex-mini", "gpt51codexmini"), ("gpt-5.1-codex-mini-2025-11-13", "gpt51codexmini"),
    # the cheap mini lane never lands on the premium codex slot; a longer version number is no lane's
    ("gpt-5.45", "gpt-5"), ("gpt-5.1-codex", "gpt-5-codex"),
    # Gemini CLI's names, preview, dated, lite and -latest variants, with or without `models/`
    ("gemini-2.5-pro", "gemini-pro"), ("gemini-3-pro-preview", "gemini-pro"),
    ("gemini-2.5-pro-preview-06-05", "gemini-pro"), ("models/gemini-2.5-pro", "gemini-pro"),
    ("gemini-2.5-flash", "gemini-flash"), ("gemini-2.5-flash-lite", "gemini-flash"),
    ("gemini-flash-latest", "gemini-flash"), ("gemini-2.0-flash-001", "gemini-flash"),
])
def test_alias_patterns(catalog, requested, slot):
    assert catalog.slot_for_model(requested) == slot
    assert catalog.require_slot(requested) == slot


def test_every_slot_name_maps_to_itself(catalog):
    for slot in catalog.slots:
        assert catalog.slot_for_model(slot) == slot
        assert catalog.require_slot(slot) == slot


@pytest.mark.parametrize("name", ["llama-3", "nope", "", "Claude-Sonnet-4-5", "gpt-4o", "sonnet2"])
def test_unknown_name_maps_to_nothing(catalog, name):
    assert catalog.slot_for_model(name) is None


def test_require_slot_unknown_raises_and_lists_slots(catalog):
    with pytest.raises(NotFoundError) as info:
        catalog.require_slot("llama-3")
    message = str(info.value)
    assert "llama-3" in message
    for slot in catalog.slots:
        assert slot in message


def test_every_codex_lane_has_a_codex_name_that_maps_back_to_it(catalog):
    codex = next(f for f in catalog.families if f.name == "codex").slots
    assert set(catalog.codex_names) == set(codex)
    for slot, name in catalog.codex_names.items():
        assert catalog.slot_for_model(name) == slot


def test_every_alias_targets_a_real_slot(catalog):
    assert catalog.aliases
    for _pattern, slot in catalog.aliases:
        assert slot in catalog.slots


# ---- providers -----------------------------------------------------------------------

def test_every_provider_has_a_litellm_prefix_and_label(catalog):
    assert catalog.providers
    for name, provider in catalog.providers.items():
        assert provider.name == name
        assert provider.litellm_prefix, name
        assert provider.label, name


@pytest.mark.parametrize("provider, key_env", [
    ("openrouter", "OPENROUTER_API_KEY"),
    ("groq", "GROQ_API_KEY"),
    ("cerebras", "CEREBRAS_API_KEY"),
    ("github", "GITHUB_API_KEY"),
    ("gemini", "GEMINI_API_KEY"),
    ("huggingface", "HF_TOKEN"),
    ("openai", "OPENAI_API_KEY"),
    ("anthropic", "ANTHROPIC_API_KEY"),
    ("mlx", ""),
    ("openai-compatible", ""),
])
def test_provider_key_env(catalog, provider, key_env):
    assert catalog.provider(provider).key_env == key_env


def test_local_and_api_base_flags(catalog):
    assert catalog.provider("mlx").local is True
    assert catalog.provider("openai-compatible").needs_api_base is True
    assert catalog.provider("openai").local is False
    assert catalog.provider("openai").needs_api_base is False


def test_unknown_provider_raises_and_lists_providers(catalog):
    with pytest.raises(NotFoundError) as info:
        catalog.provider("nosuch")
    assert "nosuch" in str(info.value)
    assert "openrouter" in str(info.value)


# ---- backends ------------------------------------------------------------------------

def test_default_slots_cover_every_slot_with_known_backends(catalog):
    assert set(catalog.default_slots) == set(catalog.slots)
    for slot, backend_id in catalog.default_slots.items():
        assert backend_id in catalog.backends, (slot, backend_id)


def test_every_backend_used_by_a_shipped_team_is_known(catalog):
    teams = _shipped("teams")
    assert set(teams) >= {"all-local", "cloud-direct", "free-cloud", "local-first"}
    for name, team in teams.items():
        for slot, config in team["slots"].items():
            assert slot in catalog.slots, (name, slot)
            for entry in [config["backend"], *config.get("fallbacks", [])]:
                if is_slot_reference(entry):
                    assert entry in catalog.slots, (name, slot, entry)
                else:
                    assert entry in catalog.backends, (name, slot, entry)


def test_shipped_profiles_name_known_teams_and_slots(catalog):
    teams = _shipped("teams")
    for name, profile in _shipped("profiles").items():
        if profile.get("team"):
            assert profile["team"] in teams, name
        for slot in profile.get("access", {}).get("slots", []):
            assert slot in catalog.slots, (name, slot)


def test_backends_split_into_provider_and_model(catalog):
    for backend_id, backend in catalog.backends.items():
        assert backend.id == backend_id
        assert f"{backend.provider}/{backend.model}" == backend_id
        assert backend.provider in catalog.providers, backend_id
        assert backend.custom is False
        assert backend.floating is (not backend.pinned)


def test_backend_model_keeps_later_slashes(catalog):
    backend = catalog.backends["openrouter/qwen/qwen3-coder"]
    assert backend.provider == "openrouter"
    assert backend.model == "qwen/qwen3-coder"


def test_pinned_and_floating_backends(catalog):
    assert catalog.backends["anthropic/claude-sonnet-4-5-20250929"].pinned is True
    assert catalog.backends["anthropic/claude-sonnet-4-5"].floating is True


@pytest.mark.parametrize("backend_id, expected", [
    ("groq/llama-3.3-70b-versatile", ("groq", "llama-3.3-70b-versatile")),
    ("openrouter/qwen/qwen3-coder:free", ("openrouter", "qwen/qwen3-coder:free")),
    ("a/b", ("a", "b")),
])
def test_split_backend_id(backend_id, expected):
    assert split_backend_id(backend_id) == expected


@pytest.mark.parametrize("bad", ["nomodel", "/model", "provider/", "", "/"])
def test_split_backend_id_refuses_malformed(bad):
    with pytest.raises(InvalidInputError) as info:
        split_backend_id(bad)
    assert "PROVIDER/MODEL" in str(info.value)


def test_load_catalog_is_cached():
    assert load_catalog() is load_catalog()
