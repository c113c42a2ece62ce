"""Reading runs back: one run's timeline (broke's events, the shims' commands, the gateway's requests),
the list of runs, and the checklist of what harness mode needs."""
from __future__ import annotations

import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from broke.harness.ledger import Ledger, find_run, run_ids
from broke.harness.requests import run_requests


def _alive(pid: object) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def run_state(events: list[dict[str, Any]]) -> tuple[str, str]:
    """(status, why): finished, running, or incomplete (a checkpoint saying so, or none at all)."""
    kinds = {e.get("kind") for e in events}
    checkpoints = [e for e in events if e.get("kind") == "checkpoint"]
    if checkpoints and not checkpoints[-1].get("complete"):
        return "incomplete", str(checkpoints[-1].get("why") or "the client did not finish")
    if "finished" in kinds:
        return "finished", ""
    started = next((e for e in events if e.get("kind") == "started"), {})
    if _alive(started.get("pid")):
        return "running", ""
    return "incomplete", "no checkpoint: broke stopped before the client's end was recorded"


def _last(events: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    return next((e for e in reversed(events) if e.get("kind") == kind), {})


def run_view(home: Path, wanted: str | None) -> dict[str, Any]:
    """Everything recorded about one run (the latest if `wanted` is None)."""
    ledger = find_run(home, wanted)
    events, problems = ledger.events()
    commands, command_problems = ledger.commands()
    requests = run_requests(home, ledger.run_id)
    status, why = run_state(events)
    started = _last(events, "started")
    reviews = [e for e in events if e.get("kind") == "review"]
    timeline = sorted([*events, *commands, *({**r, "kind": "request"} for r in requests)],
                      key=lambda e: float(e.get("ts") or 0))
    return {"run": ledger.run_id, "dir": str(ledger.root), "status": status, "why": why,
            "client": started.get("client"), "task": started.get("task"), "cwd": started.get("cwd"),
            "policy": started.get("policy"), "sandbox": started.get("sandbox"), "plan": started.get("plan"),
            "verdict": _last(events, "finished").get("verdict") or (reviews[-1]["verdict"] if reviews else None),
            "reviews": reviews, "commands": commands, "requests": requests, "timeline": timeline,
            "problems": problems + command_problems}


def run_rows(home: Path, limit: int = 50) -> list[dict[str, Any]]:
    """The newest runs, newest first: id, client, task, status, verdict, commands and requests counted."""
    rows = []
    for run_id in reversed(run_ids(home)[-limit:]):
        ledger = Ledger(home, run_id)
        events, _ = ledger.events()
        commands, _ = ledger.commands()
        started = _last(events, "started")
        status, _why = run_state(events)
        review = _last(events, "review")
        lanes = review.get("lanes") or {}
        rows.append({"run": run_id, "client": started.get("client"), "task": started.get("task") or "",
                     "policy": started.get("policy"), "status": status,
                     "verdict": _last(events, "finished").get("verdict") or review.get("verdict"),
                     "lanes": {lane: r.get("verdict") for lane, r in lanes.items()},
                     "commands": len(commands), "requests": len(run_requests(home, run_id))})
    return rows


def lane_health(rows: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    """Per lane, how many of the given runs' last reviews said each verdict (DEGRADED: the lane failed)."""
    health: dict[str, dict[str, int]] = {}
    for row in rows:
        for lane, said in row["lanes"].items():
            counts = health.setdefault(lane, {})
            counts[str(said)] = counts.get(str(said), 0) + 1
    return health


def dashboard_view(home: Path, limit: int = 20) -> dict[str, Any]:
    """The dashboard's harness panel: recent runs and the lanes' health over them."""
    rows = run_rows(home, limit)
    return {"runs": rows, "lanes": lane_health(rows)}


def checklist(home: Path, environ: Mapping[str, str]) -> list[tuple[str, bool, str]]:
    """(item, ready, detail) for what a reviewed, recorded, confined run needs on this machine."""
    from broke.harness.shims import TOOLS
    from broke.sandbox.support import check
    from broke.state.store import StateStore

    state = StateStore(home).load()
    path = environ.get("PATH", os.defpath)
    items = []
    for lane in ("verifier", "adversary"):
        slot = getattr(state.harness, lane)
        routed = slot in state.slots
        items.append((f"{lane} lane", routed, f"slot {slot} → {state.slots[slot].backend}" if routed else
                      f"slot {slot} has no backend: `broke swap {slot}=BACKEND` or `broke harness lanes`"))
    backends = {state.slots[s].backend for s in (state.harness.verifier, state.harness.adversary) if s in state.slots}
    items.append(("independent lanes", len(backends) == 2, "the verifier and the adversary ask different backends"
                  if len(backends) == 2 else "both lanes ask the same backend: one model would review twice "
                  "(`broke harness lanes --adversary SLOT`)"))
    items.append(("policy", state.harness.policy != "off", f"{state.harness.policy} (`broke harness set POLICY`)"))
    found = [t for t in TOOLS if shutil.which(t, path=path)]
    items.append(("shims", bool(found), f"shimmed when found: {', '.join(found) or 'none of ' + ', '.join(TOOLS)}"))
    items.append(("git", "git" in found, "diffs of the working tree need git" if "git" not in found else
                  "diff of the working tree since the run began"))
    support = check()
    why = support.profiles.get("hardened", "")
    items.append(("sandbox", not why, "hardened enforced: writes outside the working directory are caught"
                  if not why else f"hardened not enforceable ({why}): no boundary violations can be seen"))
    return items
