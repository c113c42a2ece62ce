"""Static checks of the state (`validate`) and the static part of `doctor`, both built on the resolver."""
from __future__ import annotations

import os
import stat
from dataclasses import asdict, dataclass
from pathlib import Path

from broke.changes import backend_users
from broke.context import RoutingContext
from broke.health import corrupt_copies
from broke.keys import key_pool
from broke.local.demo import NEXT_STEP
from broke.local.models import DEMO_BACKEND
from broke.preflight import preflight
from broke.routing.backends import find_backend
from broke.routing.resolve import FLOATING_ON_PINNED, Resolution
from broke.state.model import TIERS


@dataclass(frozen=True)
class Finding:
    level: str  # error / warning / info
    code: str
    subject: str  # slot, backend, provider or file it is about
    message: str


def _backend_findings(ctx: RoutingContext) -> list[Finding]:
    state, catalog = ctx.state, ctx.catalog
    found = []
    referenced = {b for slot in state.slots.values() for b in [slot.backend, *slot.fallbacks] if "/" in b}
    referenced |= {b for p in state.model_policy.values() for b in p.order}
    referenced |= {b for tier in state.router.tiers.values() for b in tier}
    for backend_id in sorted(referenced):
        backend = find_backend(backend_id, state, catalog)
        if backend is None:
            where = ", ".join(backend_users(state, backend_id))
            found.append(Finding("error", "unknown_backend", backend_id,
                                 f"unknown backend '{backend_id}' (used by {where})"))
        elif backend.floating:
            found.append(Finding("warning", "floating_alias", backend_id,
                                 f"'{backend_id}' is a floating alias: what answers can change "
                                 "without notice; prefer a pinned version"))
    for backend_id, custom in sorted(state.backends.items()):
        provider = catalog.providers.get(custom.provider)
        if provider is None:
            found.append(Finding("error", "unknown_provider", backend_id,
                                 f"custom backend '{backend_id}' names unknown provider '{custom.provider}'"))
        elif provider.needs_api_base and not custom.api_base:
            found.append(Finding("error", "missing_api_base", backend_id,
                                 f"custom backend '{backend_id}' needs an api_base"))
    for tier in state.router.tiers:
        if tier not in TIERS:
            found.append(Finding("error", "unknown_tier", tier,
                                 f"router tier '{tier}' is not one of {', '.join(TIERS)}"))
    for slot in state.slots:
        if slot not in catalog.slots:
            found.append(Finding("error", "unknown_slot", slot, f"state maps unknown slot '{slot}'"))
    for slot in state.access.slots:
        if slot not in catalog.slots:
            found.append(Finding("error", "unknown_slot", slot, f"access limits name unknown slot '{slot}'"))
    return found


def _slot_findings(resolution: Resolution) -> list[Finding]:
    slot = resolution.slot
    found = [
        Finding("error", "fallback_cycle" if note.startswith("fallback cycle") else "unknown_slot_ref",
                slot, note)
        for note in resolution.notes
    ]
    for candidate in resolution.candidates:
        if candidate.skip_reason == FLOATING_ON_PINNED:
            found.append(Finding("error", "floating_on_pinned", slot,
                                 f"{candidate.backend} is a floating alias on pinned slot '{slot}'"))
        elif not candidate.key_present:
            found.append(Finding("warning", "missing_key", slot,
                                 f"{candidate.backend}: {candidate.skip_reason}"))
    if not resolution.allowed:
        found.append(Finding("info", "not_allowed", slot, resolution.reason))
    elif resolution.chosen is None:
        found.append(Finding("error", "no_candidate", slot, f"slot '{slot}': {resolution.reason}"))
    return found


def validate(ctx: RoutingContext) -> tuple[list[Finding], list[Resolution]]:
    """Every static problem of the state, and every slot's resolution the findings are based on."""
    resolutions = ctx.resolve_all()
    findings = _backend_findings(ctx)
    for resolution in resolutions:
        findings += _slot_findings(resolution)
    for resolution in resolutions:
        policy = ctx.state.model_policy.get(resolution.slot)
        if policy and policy.mode == "fastest" and not any(c.decode_tps for c in resolution.candidates):
            findings.append(Finding("warning", "unmeasured", resolution.slot,
                                    f"model policy of '{resolution.slot}' is fastest, but none of its backends "
                                    "is measured on this machine (the chain order is used); "
                                    "run `broke benchmark-sequential`"))
    demo_slots = [r.slot for r in resolutions if r.chosen and r.chosen.backend == DEMO_BACKEND]
    if demo_slots:
        findings.append(Finding("info", "demo", ", ".join(demo_slots), NEXT_STEP))
    if ctx.state.frozen:
        findings.append(Finding("info", "frozen", "state",
                                "state is frozen: changes are refused until `broke freeze off`"))
    return findings, resolutions


@dataclass(frozen=True)
class ProviderKeys:
    provider: str
    key_env: str
    present: list[str]  # variable names only


def _mode_finding(path, wanted: int, kind: str) -> Finding | None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & ~wanted:
        return Finding("warning", "permissions", str(path),
                       f"{kind} {path} has mode {mode:o}; expected {wanted:o} (chmod {wanted:o} {path})")
    return None


def health_findings(home: Path, problem: str) -> list[Finding]:
    """health.json unreadable (an error), and the corrupt copies the gateway kept aside (info)."""
    path = home / "health.json"
    out = []
    if problem:
        out.append(Finding("error", "health_file", str(path),
                           f"{problem}; the gateway keeps serving from what it knows and rewrites the file "
                           "on its next health change (keeping this one as health.json.corrupt-TIME), "
                           "or delete it (every key and backend counts as unknown)"))
    for copy in corrupt_copies(path):
        out.append(Finding("info", "health_file_kept", str(copy),
                           f"a corrupt health.json was kept aside as {copy}; delete it once looked at"))
    return out


def doctor(ctx: RoutingContext) -> dict:
    """The static part of `doctor`: state file, permissions, keys per provider, findings, resolutions."""
    findings, resolutions = validate(ctx)
    home, state_path = ctx.home, ctx.home / "state.toml"
    findings += [Finding(f.level, f.code, f.subject, f.message) for f in preflight(home, os.environ)]
    if state_path.is_file():
        findings += [f for f in [_mode_finding(state_path, 0o600, "state file")] if f]
    findings += health_findings(home, ctx.health_problem)
    keys = [
        ProviderKeys(name, p.key_env, key_pool(p.key_env, ctx.env))
        for name, p in ctx.catalog.providers.items() if p.key_env
    ]
    for custom in ctx.state.backends.values():  # custom backends may name their own key variable
        if custom.key_env and custom.key_env not in {k.key_env for k in keys}:
            keys.append(ProviderKeys(f"{custom.provider}:{custom.key_env}", custom.key_env,
                                     key_pool(custom.key_env, ctx.env)))
    return {
        "home": str(home),
        "state": {
            "path": str(state_path),
            "exists": ctx.loaded.exists,
            "schema_version": ctx.state.schema_version,
            "generation": ctx.state.generation,
            "frozen": ctx.state.frozen,
            "active_team": ctx.state.active_team,
            "active_profile": ctx.state.active_profile,
        },
        "keys": [asdict(k) for k in keys],
        "findings": [asdict(f) for f in findings],
        "resolutions": [r.to_dict() for r in resolutions],
        "ok": not any(f.level == "error" for f in findings),
    }
