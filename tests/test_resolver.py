"""The pure resolver: (state, health, env, now, scope) -> Resolution, tested without the CLI."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from broke.errors import NotFoundError, StateFileError
from broke.health import Health, HealthRecord, load_health
from broke.routing.resolve import Scope, resolve
from broke.state.model import Access, CustomBackend, KeyPolicy, ModelPolicy, SlotConfig
from broke.state.store import default_state

NOW = 1_700_000_000.0

SONNET = "anthropic/claude-sonnet-4-5-20250929"
SONNET_FLOAT = "anthropic/claude-sonnet-4-5"
HAIKU = "anthropic/claude-haiku-4-5-20251001"
OPUS = "anthropic/claude-opus-4-1-20250805"
GROQ = "groq/llama-3.3-70b-versatile"
CEREBRAS = "cerebras/gpt-oss-120b"
QWEN_FLOAT = "openrouter/qwen/qwen3-coder"
MLX = "mlx/mlx-community/Qwen2.5-Coder-7B-Instruct-4bit"
LOCAL = "mlx/tiny"

ALL_KEYS = {
    "ANTHROPIC_API_KEY": "a1",
    "GROQ_API_KEY": "g1",
    "CEREBRAS_API_KEY": "c1",
    "OPENROUTER_API_KEY": "o1",
    "OPENAI_API_KEY": "oa1",
}


def state_with(**slots: SlotConfig):
    """The default state with some slots replaced."""
    state = default_state()
    for name, config in slots.items():
        state.slots[name.replace("_", "-")] = config
    return state


def chain(resolution) -> list[tuple[str, str | None]]:
    return [(c.backend, c.key_env) for c in resolution.candidates]


# ---- key pools -------------------------------------------------------------------------

def test_key_pool_candidates_in_number_order():
    state = state_with(sonnet=SlotConfig(SONNET))
    env = {"ANTHROPIC_API_KEY_3": "k3", "ANTHROPIC_API_KEY": "k1", "ANTHROPIC_API_KEY_2": "k2"}
    r = resolve("sonnet", state, Health(), env=env, now=NOW)
    assert chain(r) == [(SONNET, "ANTHROPIC_API_KEY"), (SONNET, "ANTHROPIC_API_KEY_2"),
                        (SONNET, "ANTHROPIC_API_KEY_3")]
    assert all(c.key_present and c.usable for c in r.candidates)
    assert r.chosen.key_env == "ANTHROPIC_API_KEY"
    assert r.chosen.deployment == f"{SONNET}@ANTHROPIC_API_KEY"


def test_key_pool_numbers_sort_numerically():
    state = state_with(sonnet=SlotConfig(SONNET))
    env = {"ANTHROPIC_API_KEY_10": "x", "ANTHROPIC_API_KEY_2": "y"}
    r = resolve("sonnet", state, Health(), env=env, now=NOW)
    assert [c.key_env for c in r.candidates] == ["ANTHROPIC_API_KEY_2", "ANTHROPIC_API_KEY_10"]
    assert r.chosen.key_env == "ANTHROPIC_API_KEY_2"


def test_empty_key_values_are_ignored():
    state = state_with(sonnet=SlotConfig(SONNET))
    env = {"ANTHROPIC_API_KEY": "", "ANTHROPIC_API_KEY_2": "   ", "ANTHROPIC_API_KEY_3": "k3"}
    r = resolve("sonnet", state, Health(), env=env, now=NOW)
    assert [c.key_env for c in r.candidates] == ["ANTHROPIC_API_KEY_3"]
    assert r.chosen.key_env == "ANTHROPIC_API_KEY_3"


def test_unrelated_variables_are_not_in_the_pool():
    state = state_with(sonnet=SlotConfig(SONNET))
    env = {"ANTHROPIC_API_KEY_X": "x", "MY_ANTHROPIC_API_KEY": "y", "ANTHROPIC_API_KEYS": "z"}
    r = resolve("sonnet", state, Health(), env=env, now=NOW)
    assert r.chosen is None
    assert [c.key_env for c in r.candidates] == ["ANTHROPIC_API_KEY"]
    assert not r.candidates[0].key_present


def test_missing_key_means_nothing_chosen_and_reason_names_the_variable():
    state = state_with(sonnet=SlotConfig(SONNET))
    r = resolve("sonnet", state, Health(), env={}, now=NOW)
    assert r.chosen is None
    assert r.allowed is True
    assert "ANTHROPIC_API_KEY" in r.reason
    (candidate,) = r.candidates
    assert candidate.key_present is False
    assert candidate.key_env == "ANTHROPIC_API_KEY"
    assert candidate.skip_reason == "missing key ANTHROPIC_API_KEY"
    assert not candidate.usable


def test_missing_key_reason_counts_the_other_unusable_candidates():
    state = state_with(sonnet=SlotConfig(SONNET, [GROQ, CEREBRAS]))
    r = resolve("sonnet", state, Health(), env={}, now=NOW)
    assert r.chosen is None
    assert SONNET in r.reason and "ANTHROPIC_API_KEY" in r.reason
    assert "2 more" in r.reason


def test_missing_primary_key_falls_through_to_fallback_with_key():
    state = state_with(sonnet=SlotConfig(SONNET, [GROQ]))
    r = resolve("sonnet", state, Health(), env={"GROQ_API_KEY": "g"}, now=NOW)
    assert r.chosen.backend == GROQ
    assert r.chosen.source == "fallback"
    assert r.reason == ""


# ---- fallback chains -------------------------------------------------------------------

def test_chain_is_primary_then_fallbacks_in_order():
    state = state_with(sonnet=SlotConfig(SONNET, [GROQ, CEREBRAS]))
    r = resolve("sonnet", state, Health(), env=ALL_KEYS, now=NOW)
    assert [(c.backend, c.source) for c in r.candidates] == [
        (SONNET, "primary"), (GROQ, "fallback"), (CEREBRAS, "fallback")]
    assert r.chosen.backend == SONNET
    assert r.notes == ()


def test_slot_reference_expands_to_that_slots_chain():
    state = state_with(
        sonnet=SlotConfig(SONNET, ["haiku", CEREBRAS]),
        haiku=SlotConfig(HAIKU, [GROQ]),
    )
    r = resolve("sonnet", state, Health(), env=ALL_KEYS, now=NOW)
    assert [(c.backend, c.source) for c in r.candidates] == [
        (SONNET, "primary"),
        (HAIKU, "via slot haiku"),
        (GROQ, "via slot haiku"),
        (CEREBRAS, "fallback"),
    ]


def test_nested_slot_references_name_the_innermost_slot():
    state = state_with(
        subagent=SlotConfig(CEREBRAS, ["haiku"]),
        haiku=SlotConfig(HAIKU, ["opus"]),
        opus=SlotConfig(OPUS),
    )
    r = resolve("subagent", state, Health(), env=ALL_KEYS, now=NOW)
    assert [(c.backend, c.source) for c in r.candidates] == [
        (CEREBRAS, "primary"), (HAIKU, "via slot haiku"), (OPUS, "via slot opus")]


def test_duplicate_backends_are_removed_keeping_the_first():
    state = state_with(
        sonnet=SlotConfig(SONNET, [GROQ, "haiku", SONNET, GROQ]),
        haiku=SlotConfig(GROQ, [SONNET, HAIKU]),
    )
    r = resolve("sonnet", state, Health(), env=ALL_KEYS, now=NOW)
    assert [(c.backend, c.source) for c in r.candidates] == [
        (SONNET, "primary"), (GROQ, "fallback"), (HAIKU, "via slot haiku")]


def test_cycle_is_noted_not_followed():
    state = state_with(
        haiku=SlotConfig(HAIKU, ["subagent"]),
        subagent=SlotConfig(GROQ, ["haiku"]),
    )
    r = resolve("haiku", state, Health(), env=ALL_KEYS, now=NOW)
    assert [c.backend for c in r.candidates] == [HAIKU, GROQ]
    assert r.notes == ("fallback cycle: haiku -> subagent -> haiku",)
    assert r.chosen.backend == HAIKU


def test_self_reference_is_a_cycle_note():
    state = state_with(haiku=SlotConfig(HAIKU, ["haiku"]))
    r = resolve("haiku", state, Health(), env=ALL_KEYS, now=NOW)
    assert [c.backend for c in r.candidates] == [HAIKU]
    assert len(r.notes) == 1
    assert r.notes[0].startswith("fallback cycle")
    assert "haiku -> haiku" in r.notes[0]


def test_unknown_slot_reference_is_noted():
    state = state_with(haiku=SlotConfig(HAIKU, ["nosuchslot"]))
    r = resolve("haiku", state, Health(), env=ALL_KEYS, now=NOW)
    assert [c.backend for c in r.candidates] == [HAIKU]
    assert len(r.notes) == 1
    assert "nosuchslot" in r.notes[0] and "haiku" in r.notes[0]


# ---- health ----------------------------------------------------------------------------

def test_model_in_cooldown_is_skipped_and_next_chosen():
    state = state_with(sonnet=SlotConfig(SONNET, [GROQ]))
    health = Health(models={SONNET: HealthRecord("cooldown", until=NOW + 60)})
    r = resolve("sonnet", state, health, env=ALL_KEYS, now=NOW)
    first = r.candidates[0]
    assert first.backend == SONNET
    assert first.model_health == "cooldown"
    assert first.skip_reason == "backend cooldown"
    assert r.chosen.backend == GROQ


def test_cooldown_without_until_stays_in_cooldown():
    state = state_with(sonnet=SlotConfig(SONNET, [GROQ]))
    health = Health(models={SONNET: HealthRecord("cooldown")})
    r = resolve("sonnet", state, health, env=ALL_KEYS, now=NOW)
    assert r.chosen.backend == GROQ


@pytest.mark.parametrize("until", [NOW - 1, NOW])
def test_expired_cooldown_counts_as_healthy(until):
    state = state_with(sonnet=SlotConfig(SONNET, [GROQ]))
    health = Health(models={SONNET: HealthRecord("cooldown", until=until)})
    r = resolve("sonnet", state, health, env=ALL_KEYS, now=NOW)
    assert r.candidates[0].model_health == "healthy"
    assert r.chosen.backend == SONNET


def test_key_in_cooldown_skips_that_key_only():
    state = state_with(sonnet=SlotConfig(SONNET, [GROQ]))
    env = {**ALL_KEYS, "ANTHROPIC_API_KEY_2": "a2"}
    health = Health(keys={"ANTHROPIC_API_KEY": HealthRecord("cooldown", until=NOW + 30)})
    r = resolve("sonnet", state, health, env=env, now=NOW)
    first, second = r.candidates[:2]
    assert (first.key_env, first.key_health, first.skip_reason) == (
        "ANTHROPIC_API_KEY", "cooldown", "key cooldown")
    assert second.key_env == "ANTHROPIC_API_KEY_2" and second.usable
    assert (r.chosen.backend, r.chosen.key_env) == (SONNET, "ANTHROPIC_API_KEY_2")


@pytest.mark.parametrize("status", ["blocked", "auth_failed", "incompatible"])
def test_unusable_model_status_skips_backend(status):
    state = state_with(sonnet=SlotConfig(SONNET, [GROQ]))
    health = Health(models={SONNET: HealthRecord(status)})
    r = resolve("sonnet", state, health, env=ALL_KEYS, now=NOW)
    assert r.candidates[0].skip_reason == f"backend {status}"
    assert r.chosen.backend == GROQ


@pytest.mark.parametrize("status", ["blocked", "auth_failed"])
def test_unusable_key_status_skips_key(status):
    state = state_with(sonnet=SlotConfig(SONNET, [GROQ]))
    health = Health(keys={"ANTHROPIC_API_KEY": HealthRecord(status, until=NOW + 1e9)})
    r = resolve("sonnet", state, health, env=ALL_KEYS, now=NOW)
    assert r.candidates[0].skip_reason == f"key {status}"
    assert r.chosen.backend == GROQ


def test_blocked_without_until_stays_blocked_and_expires_with_one():
    state = state_with(sonnet=SlotConfig(SONNET, [GROQ]))
    health = Health(models={SONNET: HealthRecord("blocked")})
    r = resolve("sonnet", state, health, env=ALL_KEYS, now=NOW)
    assert r.candidates[0].model_health == "blocked"
    assert r.chosen.backend == GROQ
    expired = Health(models={SONNET: HealthRecord("auth_failed", until=NOW - 100)})
    r = resolve("sonnet", state, expired, env=ALL_KEYS, now=NOW)
    assert r.chosen.backend == SONNET


def test_healthy_and_unknown_are_usable():
    state = state_with(sonnet=SlotConfig(SONNET, [GROQ]))
    health = Health(models={SONNET: HealthRecord("healthy")},
                    keys={"ANTHROPIC_API_KEY": HealthRecord("healthy")})
    r = resolve("sonnet", state, health, env=ALL_KEYS, now=NOW)
    assert (r.chosen.model_health, r.chosen.key_health) == ("healthy", "healthy")
    assert r.candidates[1].model_health == "unknown"
    assert r.candidates[1].key_health == "unknown"
    assert r.candidates[1].usable


def test_everything_unusable_gives_reason():
    state = state_with(sonnet=SlotConfig(SONNET, [GROQ]))
    health = Health(models={SONNET: HealthRecord("blocked"), GROQ: HealthRecord("auth_failed")})
    r = resolve("sonnet", state, health, env=ALL_KEYS, now=NOW)
    assert r.chosen is None
    assert "no usable candidate" in r.reason
    assert "blocked" in r.reason


def test_by_default_cooldowns_are_tried_last_and_blocked_never():
    """Nothing usable left: the candidates in cooldown are the attempts (a blip is not an outage)."""
    state = state_with(sonnet=SlotConfig(SONNET, [GROQ]))
    env = {**ALL_KEYS, "ANTHROPIC_API_KEY_2": "a2"}
    health = Health(keys={"ANTHROPIC_API_KEY": HealthRecord("blocked"),
                          "ANTHROPIC_API_KEY_2": HealthRecord("cooldown", until=NOW + 30)},
                    models={GROQ: HealthRecord("cooldown", until=NOW + 30)})
    r = resolve("sonnet", state, health, env=env, now=NOW)
    assert r.cooldown_last
    assert [(a.deployment, a.last_resort) for a in r.attempts] == [
        (f"{SONNET}@ANTHROPIC_API_KEY_2", True), (f"{GROQ}@GROQ_API_KEY", True)]


def test_fail_fast_policy_attempts_nothing_in_cooldown():
    """`--no-cooldown-last`: no attempt at all (the gateway sends nothing), and the reason says why."""
    state = state_with(sonnet=SlotConfig(SONNET, [GROQ]))
    state.model_policy["sonnet"] = ModelPolicy(cooldown_last=False)
    env = {**ALL_KEYS, "ANTHROPIC_API_KEY_2": "a2"}
    health = Health(keys={"ANTHROPIC_API_KEY": HealthRecord("blocked"),
                          "ANTHROPIC_API_KEY_2": HealthRecord("cooldown", until=NOW + 30)},
                    models={GROQ: HealthRecord("cooldown", until=NOW + 30)})
    r = resolve("sonnet", state, health, env=env, now=NOW)
    assert r.chosen is None and r.attempts == () and not r.cooldown_last
    assert "--cooldown-last" in r.reason


def test_cooldown_last_policy_tries_cooldowns_after_usable_ones_and_blocked_never():
    state = state_with(sonnet=SlotConfig(SONNET, [GROQ, CEREBRAS]))
    state.model_policy["sonnet"] = ModelPolicy(cooldown_last=True)
    env = {**ALL_KEYS, "ANTHROPIC_API_KEY_2": "a2"}
    health = Health(keys={"ANTHROPIC_API_KEY": HealthRecord("blocked"),
                          "ANTHROPIC_API_KEY_2": HealthRecord("cooldown", until=NOW + 30),
                          "CEREBRAS_API_KEY": HealthRecord("auth_failed", until=NOW + 300)},
                    models={GROQ: HealthRecord("healthy")})
    r = resolve("sonnet", state, health, env=env, now=NOW)
    assert r.cooldown_last
    assert [(a.deployment, a.last_resort) for a in r.attempts] == [
        (f"{GROQ}@GROQ_API_KEY", False), (f"{SONNET}@ANTHROPIC_API_KEY_2", True)]
    # A blocked backend whose key is only cooling down is still blocked.
    health = Health(models={GROQ: HealthRecord("blocked"), SONNET: HealthRecord("blocked"),
                            CEREBRAS: HealthRecord("blocked")},
                    keys={"GROQ_API_KEY": HealthRecord("cooldown", until=NOW + 30)})
    r = resolve("sonnet", state, health, env=env, now=NOW)
    assert r.chosen is None and r.attempts == ()
    # Only cooldowns left: the first of them is what route shows and the gateway tries.
    health = Health(models={SONNET: HealthRecord("cooldown", until=NOW + 5), GROQ: HealthRecord("blocked"),
                            CEREBRAS: HealthRecord("incompatible")})
    r = resolve("sonnet", state, health, env=env, now=NOW)
    assert r.chosen.backend == SONNET and r.chosen.last_resort and r.reason == ""


def test_attempts_keep_at_most_retries_plus_one_keys_per_backend():
    state = state_with(sonnet=SlotConfig(SONNET, [GROQ]))
    state.key_policy["anthropic"] = KeyPolicy(retries=1)
    env = {**ALL_KEYS, "ANTHROPIC_API_KEY_2": "a2", "ANTHROPIC_API_KEY_3": "a3"}
    r = resolve("sonnet", state, Health(), env=env, now=NOW)
    assert [a.deployment for a in r.attempts] == [f"{SONNET}@ANTHROPIC_API_KEY", f"{SONNET}@ANTHROPIC_API_KEY_2",
                                                 f"{GROQ}@GROQ_API_KEY"]


def test_a_busy_local_model_is_tried_after_the_other_candidates():
    from broke.routing.rotation import Rotation

    state = state_with(sonnet=SlotConfig(LOCAL, [GROQ]))
    state.backends[LOCAL] = CustomBackend("mlx", "/models/tiny", pinned=True, concurrency=1)
    r = resolve("sonnet", state, Health(), env=ALL_KEYS, now=NOW)
    assert [a.backend for a in r.attempts] == [LOCAL, GROQ] and not r.chosen.busy
    r = resolve("sonnet", state, Health(), env=ALL_KEYS, now=NOW, rotation=Rotation(busy=frozenset({LOCAL})))
    assert [(a.backend, a.busy) for a in r.attempts] == [(GROQ, False), (LOCAL, True)]
    assert r.candidates[0].backend == LOCAL  # the chain itself keeps its order


# ---- pinned slots and policies --------------------------------------------------------

def test_pinned_slot_skips_floating_backend():
    state = state_with(sonnet=SlotConfig(SONNET_FLOAT, [SONNET], pinned=True))
    r = resolve("sonnet", state, Health(), env=ALL_KEYS, now=NOW)
    assert r.candidates[0].backend == SONNET_FLOAT
    assert r.candidates[0].pinned is False
    assert r.candidates[0].skip_reason == "floating alias on a pinned slot"
    assert r.chosen.backend == SONNET
    assert r.chosen.pinned is True


def test_unpinned_slot_accepts_floating_backend():
    state = state_with(sonnet=SlotConfig(SONNET_FLOAT, [SONNET]))
    r = resolve("sonnet", state, Health(), env=ALL_KEYS, now=NOW)
    assert r.chosen.backend == SONNET_FLOAT


def test_model_policy_order_puts_listed_backends_first():
    state = state_with(sonnet=SlotConfig(SONNET, [GROQ, CEREBRAS, QWEN_FLOAT]))
    state.model_policy["sonnet"] = ModelPolicy(order=[CEREBRAS, "groq/not-in-chain", GROQ])
    r = resolve("sonnet", state, Health(), env=ALL_KEYS, now=NOW)
    assert [c.backend for c in r.candidates] == [CEREBRAS, GROQ, SONNET, QWEN_FLOAT]
    assert r.chosen.backend == CEREBRAS
    # the source stays what the chain said
    assert r.chosen.source == "fallback"


def test_model_policy_of_another_slot_does_not_apply():
    state = state_with(sonnet=SlotConfig(SONNET, [GROQ]))
    state.model_policy["haiku"] = ModelPolicy(order=[GROQ])
    r = resolve("sonnet", state, Health(), env=ALL_KEYS, now=NOW)
    assert r.chosen.backend == SONNET


def test_key_policy_order_reorders_the_pool():
    state = state_with(sonnet=SlotConfig(SONNET))
    state.key_policy["anthropic"] = KeyPolicy(order=["ANTHROPIC_API_KEY_3", "ANTHROPIC_API_KEY_9"])
    env = {"ANTHROPIC_API_KEY": "1", "ANTHROPIC_API_KEY_2": "2", "ANTHROPIC_API_KEY_3": "3"}
    r = resolve("sonnet", state, Health(), env=env, now=NOW)
    assert [c.key_env for c in r.candidates] == [
        "ANTHROPIC_API_KEY_3", "ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY_2"]
    assert r.chosen.key_env == "ANTHROPIC_API_KEY_3"


def test_key_policy_of_another_provider_does_not_apply():
    state = state_with(sonnet=SlotConfig(SONNET))
    state.key_policy["groq"] = KeyPolicy(order=["ANTHROPIC_API_KEY_2"])
    env = {"ANTHROPIC_API_KEY": "1", "ANTHROPIC_API_KEY_2": "2"}
    r = resolve("sonnet", state, Health(), env=env, now=NOW)
    assert r.chosen.key_env == "ANTHROPIC_API_KEY"


# ---- access scope ----------------------------------------------------------------------

def test_scope_not_allowing_the_slot():
    state = state_with(sonnet=SlotConfig(SONNET))
    scope = Scope("ci", Access(slots=["haiku", "subagent"]))
    r = resolve("sonnet", state, Health(), env=ALL_KEYS, now=NOW, scope=scope)
    assert r.chosen is None
    assert r.allowed is False
    assert r.profile == "ci"
    assert "profile 'ci'" in r.reason
    assert "haiku, subagent" in r.reason
    # candidates are still listed for explain
    assert r.candidates and r.candidates[0].usable


def test_scope_allowing_the_slot():
    state = state_with(haiku=SlotConfig(HAIKU))
    scope = Scope("ci", Access(slots=["haiku"]))
    r = resolve("haiku", state, Health(), env=ALL_KEYS, now=NOW, scope=scope)
    assert r.allowed is True
    assert r.chosen.backend == HAIKU


def test_empty_access_slots_allow_everything():
    state = state_with(sonnet=SlotConfig(SONNET))
    r = resolve("sonnet", state, Health(), env=ALL_KEYS, now=NOW, scope=Scope("solo", Access()))
    assert r.allowed and r.chosen is not None


def test_default_scope_is_the_states_access_and_profile():
    state = state_with(sonnet=SlotConfig(SONNET))
    state.access = Access(slots=["haiku"])
    state.active_profile = "mine"
    r = resolve("sonnet", state, Health(), env=ALL_KEYS, now=NOW)
    assert r.allowed is False
    assert r.profile == "mine"
    assert "profile 'mine'" in r.reason


def test_access_limits_without_a_profile_name():
    state = state_with(sonnet=SlotConfig(SONNET))
    state.access = Access(slots=["haiku"])
    r = resolve("sonnet", state, Health(), env=ALL_KEYS, now=NOW)
    assert r.allowed is False
    assert "access limits" in r.reason


# ---- backend kinds ---------------------------------------------------------------------

def test_mlx_backend_needs_no_key():
    state = state_with(haiku=SlotConfig(MLX))
    r = resolve("haiku", state, Health(), env={}, now=NOW)
    (candidate,) = r.candidates
    assert candidate.key_env is None
    assert candidate.key_present is True
    assert candidate.usable
    assert candidate.deployment == MLX
    assert r.chosen == candidate


def test_unknown_backend_is_annotated_unusable():
    state = state_with(sonnet=SlotConfig("acme/rocket-1", [GROQ]))
    r = resolve("sonnet", state, Health(), env=ALL_KEYS, now=NOW)
    unknown = r.candidates[0]
    assert unknown.backend == "acme/rocket-1"
    assert unknown.provider == "acme"
    assert unknown.pinned is None
    assert not unknown.usable
    assert "unknown backend" in unknown.skip_reason
    assert r.chosen.backend == GROQ


def test_custom_backend_with_own_key_pool():
    state = state_with(custom=SlotConfig("lmstudio/qwen3"))
    state.backends["lmstudio/qwen3"] = CustomBackend(
        "openai-compatible", "qwen3", "http://127.0.0.1:1234/v1", "FAKE_API_KEY")
    env = {"FAKE_API_KEY_2": "b", "FAKE_API_KEY": "a"}
    r = resolve("custom", state, Health(), env=env, now=NOW)
    assert [c.key_env for c in r.candidates] == ["FAKE_API_KEY", "FAKE_API_KEY_2"]
    assert r.chosen.provider == "openai-compatible"


def test_custom_backend_without_key_env_needs_no_key():
    state = state_with(custom=SlotConfig("lmstudio/qwen3"))
    state.backends["lmstudio/qwen3"] = CustomBackend("openai-compatible", "qwen3", "http://h:1/v1")
    r = resolve("custom", state, Health(), env={}, now=NOW)
    assert r.chosen is not None and r.chosen.key_env is None


def test_custom_backend_with_unknown_provider_is_unusable():
    state = state_with(custom=SlotConfig("x/y", [GROQ]))
    state.backends["x/y"] = CustomBackend("acme", "y", key_env="ACME_KEY")
    r = resolve("custom", state, Health(), env={**ALL_KEYS, "ACME_KEY": "k"}, now=NOW)
    assert r.candidates[0].skip_reason == "unknown provider 'acme'"
    assert r.chosen.backend == GROQ


# ---- requested names -------------------------------------------------------------------

def test_client_alias_resolves_slot_and_keeps_requested():
    state = state_with(opus=SlotConfig(OPUS))
    r = resolve("claude-opus-5-5", state, Health(), env=ALL_KEYS, now=NOW)
    assert r.slot == "opus"
    assert r.requested == "claude-opus-5-5"
    assert r.chosen.backend == OPUS


def test_unknown_requested_name_raises():
    with pytest.raises(NotFoundError):
        resolve("llama-3", default_state(), Health(), env=ALL_KEYS, now=NOW)


def test_generation_comes_from_the_state():
    state = default_state()
    state.generation = 42
    r = resolve("sonnet", state, Health(), env=ALL_KEYS, now=NOW)
    assert r.generation == 42


def test_resolve_does_not_read_the_process_environment(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "from-process")
    r = resolve("sonnet", state_with(sonnet=SlotConfig(SONNET)), Health(), env={}, now=NOW)
    assert r.chosen is None


def test_to_dict_is_json_serialisable():
    state = state_with(sonnet=SlotConfig(SONNET, ["haiku", "acme/x"]), haiku=SlotConfig(HAIKU))
    health = Health(models={SONNET: HealthRecord("cooldown", until=NOW + 5, reason="429")})
    r = resolve("claude-sonnet-4-5", state, health, env=ALL_KEYS, now=NOW)
    data = json.loads(json.dumps(r.to_dict()))
    assert data["slot"] == "sonnet"
    assert data["requested"] == "claude-sonnet-4-5"
    assert data["allowed"] is True
    assert data["chosen"]["backend"] == HAIKU
    assert data["chosen"]["deployment"] == f"{HAIKU}@ANTHROPIC_API_KEY"
    assert data["chosen"]["usable"] is True
    assert [c["backend"] for c in data["candidates"]] == [SONNET, HAIKU, "acme/x"]
    assert data["candidates"][0]["usable"] is False
    assert isinstance(data["notes"], list)


def test_to_dict_with_nothing_chosen():
    r = resolve("sonnet", state_with(sonnet=SlotConfig(SONNET)), Health(), env={}, now=NOW)
    data = json.loads(json.dumps(r.to_dict()))
    assert data["chosen"] is None
    assert "ANTHROPIC_API_KEY" in data["reason"]


def test_resolution_never_holds_key_values():
    secret = "sk-very-secret-value"
    env = {"ANTHROPIC_API_KEY": secret, "ANTHROPIC_API_KEY_2": secret}
    r = resolve("sonnet", state_with(sonnet=SlotConfig(SONNET)), Health(), env=env, now=NOW)
    assert secret not in json.dumps(r.to_dict())


# ---- health.json -----------------------------------------------------------------------

def test_load_health_absent_file(tmp_path: Path):
    health = load_health(tmp_path / "health.json")
    assert health == Health()
    assert health.model_status(SONNET, NOW) == "unknown"
    assert health.key_status("ANTHROPIC_API_KEY", NOW) == "unknown"


def test_load_health_reads_records(tmp_path: Path):
    path = tmp_path / "health.json"
    path.write_text(json.dumps({
        "generation": 3,
        "keys": {"ANTHROPIC_API_KEY": {"status": "cooldown", "until": NOW + 10, "reason": "429"}},
        "models": {SONNET: {"status": "blocked"}},
        "workers": {"mlx-1": {"status": "healthy"}},
    }))
    health = load_health(path)
    assert health.generation == 3
    assert health.key_status("ANTHROPIC_API_KEY", NOW) == "cooldown"
    assert health.key_status("ANTHROPIC_API_KEY", NOW + 11) == "healthy"
    assert health.keys["ANTHROPIC_API_KEY"].reason == "429"
    assert health.model_status(SONNET, NOW) == "blocked"
    assert health.workers["mlx-1"].status == "healthy"
    r = resolve("sonnet", state_with(sonnet=SlotConfig(SONNET, [GROQ])), health, env=ALL_KEYS, now=NOW)
    assert r.chosen.backend == GROQ


def test_load_health_empty_object(tmp_path: Path):
    path = tmp_path / "health.json"
    path.write_text("{}")
    assert load_health(path) == Health()


def test_load_health_malformed_json_names_the_file(tmp_path: Path):
    path = tmp_path / "health.json"
    path.write_text('{"keys": {')
    with pytest.raises(StateFileError) as info:
        load_health(path)
    assert str(path) in str(info.value)
    assert "invalid JSON" in str(info.value)


@pytest.mark.parametrize("payload", [
    {"models": {SONNET: {"status": "sleepy"}}},
    {"keys": {"ANTHROPIC_API_KEY": {}}},
    {"keys": {"ANTHROPIC_API_KEY": "cooldown"}},
    {"workers": {"w": {"status": None}}},
])
def test_load_health_wrong_status(tmp_path: Path, payload):
    path = tmp_path / "health.json"
    path.write_text(json.dumps(payload))
    with pytest.raises(StateFileError) as info:
        load_health(path)
    assert str(path) in str(info.value)
    assert "status" in str(info.value)


@pytest.mark.parametrize("payload, fragment", [
    ([], "JSON object"),
    ({"generation": "1"}, "generation"),
    ({"models": []}, "models"),
    ({"keys": {"K": {"status": "cooldown", "until": "soon"}}}, "until"),
])
def test_load_health_other_shape_errors(tmp_path: Path, payload, fragment):
    path = tmp_path / "health.json"
    path.write_text(json.dumps(payload))
    with pytest.raises(StateFileError) as info:
        load_health(path)
    assert str(path) in str(info.value)
    assert fragment in str(info.value)


@pytest.mark.parametrize("body", [
    '{"models": {"a/b": {"status": "cooldown", "until": true}}}',
    '{"generation": true}',
])
def test_health_booleans_are_not_numbers(tmp_path, body):
    path = tmp_path / "health.json"
    path.write_text(body)
    with pytest.raises(StateFileError, match="health.json"):
        load_health(path)


# ---- the complexity router's tiers ----------------------------------------------------------------

def tiered_state(**slots: SlotConfig):
    state = state_with(**slots)
    state.router.tiers = {"basic": [MLX], "balanced": [GROQ], "premium": [OPUS]}
    state.router.balanced_from, state.router.premium_from = 0.3, 0.6
    return state


@pytest.mark.parametrize("p_strong, tier, backend", [(0.05, "basic", MLX), (0.45, "balanced", GROQ),
                                                     (0.95, "premium", OPUS)])
def test_auto_picks_the_tier_of_its_estimate(p_strong, tier, backend):
    r = resolve("auto", tiered_state(), Health(), env=ALL_KEYS, now=NOW, p_strong=p_strong)
    assert (r.tier, r.chosen.backend, r.chosen.source) == (tier, backend, f"tier {tier}")
    assert r.to_dict()["p_strong"] == p_strong


def test_a_tier_that_is_all_down_falls_back_upwards_then_to_the_slot_chain():
    health = Health(models={MLX: HealthRecord("blocked"), GROQ: HealthRecord("blocked")})
    r = resolve("auto", tiered_state(), health, env=ALL_KEYS, now=NOW, p_strong=0.05)
    assert r.tier == "basic" and r.chosen.backend == OPUS
    assert [c.backend for c in r.candidates][-1] == SONNET  # auto's own backend comes last


def test_without_an_estimate_or_tiers_the_slot_chain_is_used():
    r = resolve("auto", tiered_state(), Health(), env=ALL_KEYS, now=NOW)
    assert r.tier == "" and r.chosen.backend == SONNET
    bare = resolve("auto", state_with(), Health(), env=ALL_KEYS, now=NOW, p_strong=0.9)
    assert bare.tier == "" and bare.chosen.backend == SONNET
    assert any("no router tiers" in note for note in bare.notes)


def test_other_slots_use_tiers_only_when_configured():
    plain = resolve("sonnet", tiered_state(), Health(), env=ALL_KEYS, now=NOW, p_strong=0.05)
    assert plain.tier == "" and plain.chosen.backend == SONNET
    routed = tiered_state(sonnet=SlotConfig(SONNET, router="complexity"))
    r = resolve("sonnet", routed, Health(), env=ALL_KEYS, now=NOW, p_strong=0.05)
    assert r.tier == "basic" and r.chosen.backend == MLX


def test_a_fallback_to_a_slot_the_scope_does_not_allow_is_skipped():
    state = state_with(haiku=SlotConfig(HAIKU, ["sonnet", GROQ]), sonnet=SlotConfig(SONNET, [CEREBRAS]))
    scope = Scope("x", Access(slots=["haiku"]))
    r = resolve("haiku", state, Health(), env=ALL_KEYS, now=NOW, scope=scope)
    assert [(c.backend, c.skip_reason) for c in r.candidates] == [
        (HAIKU, ""),
        (SONNET, "via slot sonnet: not allowed by profile 'x'"),
        (CEREBRAS, "via slot sonnet: not allowed by profile 'x'"),
        (GROQ, ""),
    ]
    assert [c.backend for c in r.attempts] == [HAIKU, GROQ]


def test_a_chain_stops_at_a_slot_the_scope_does_not_allow_even_if_the_next_one_is():
    state = state_with(haiku=SlotConfig(HAIKU, ["sonnet"]), sonnet=SlotConfig(SONNET, ["opus"]),
                       opus=SlotConfig(OPUS))
    scope = Scope("x", Access(slots=["haiku", "opus"]))
    health = Health(models={HAIKU: HealthRecord(status="blocked")})
    r = resolve("haiku", state, health, env=ALL_KEYS, now=NOW, scope=scope)
    assert [(c.backend, c.skip_reason) for c in r.candidates] == [
        (HAIKU, "backend blocked"),
        (SONNET, "via slot sonnet: not allowed by profile 'x'"),
        (OPUS, "via slot sonnet: not allowed by profile 'x'"),
    ]
    assert r.chosen is None and "2 more unusable" in r.reason


def test_a_fallback_to_an_allowed_slot_is_used():
    state = state_with(haiku=SlotConfig(HAIKU, ["sonnet"]), sonnet=SlotConfig(SONNET))
    scope = Scope("x", Access(slots=["haiku", "sonnet"]))
    r = resolve("haiku", state, Health(), env=ALL_KEYS, now=NOW, scope=scope)
    assert [c.backend for c in r.attempts] == [HAIKU, SONNET]
