"""How much of a pool's traffic each replica should take: its measured decode speed for the model on
its machine (baselines: this machine's own records, a node's from its `export-baseline` file imported
here and named by `node add --machine`). A replica with no measurement takes the pool's median
(or 1 when nothing is measured): weights only ever shift traffic toward measured-faster machines."""
from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from broke.catalog import local_backend_id
from broke.state.model import State

#: The share of a machine's memory a model's weights may take (macOS lets the GPU wire about 3/4).
FITS = 0.75


@dataclass(frozen=True)
class Weight:
    """A replica's share of its pool, and why."""

    value: float
    why: str


def pool_weights(home: Path, state: State, local: Mapping[str, list[str]]) -> dict[str, dict[str, Weight]]:
    """backend -> replica URL -> its weight, for this machine's workers (`local`: backend -> bases) and
    the state's nodes."""
    from broke.baselines import expected_speeds
    from broke.machine import hardware

    here = hardware()["id"]
    memory, sizes = _facts(home)
    machines: dict[str, dict] = {here: expected_speeds(home, here)}
    members: dict[str, list[tuple[str, str | None, str]]] = {}  # backend -> (url, machine, label)
    for backend, urls in local.items():
        members.setdefault(backend, []).extend((url, here, "this machine") for url in urls)
    for name, node in state.nodes.items():
        if node.machine and node.machine not in machines:
            machines[node.machine] = expected_speeds(home, node.machine)
        members.setdefault(local_backend_id(node.model), []).append((node.url, node.machine, f"node {name}"))
    out: dict[str, dict[str, Weight]] = {}
    for backend, rows in members.items():
        measured = {url: speed.decode_tps for url, machine, _ in rows
                    if machine and (speed := machines[machine].get(backend)) and speed.decode_tps}
        fallback = statistics.median(measured.values()) if measured else 1.0
        out[backend] = {}
        for url, machine, label in rows:
            size, room = sizes.get(backend), memory.get(machine or "")
            if size and room and size > FITS * room:
                out[backend][url] = Weight(0.0, f"{label} cannot hold it: {size / 2**30:.1f} GiB of weights, "
                                                f"{room / 2**30:.0f} GiB of memory; never chosen")
            elif url in measured:
                out[backend][url] = Weight(measured[url], f"{measured[url]:.1f} tok/s measured on {label}")
            else:
                why = "no machine given (`node add --machine`)" if not machine else "no baseline of this model there"
                out[backend][url] = Weight(fallback, f"{label}: {why}; the pool's median")
    return out


def _facts(home: Path) -> tuple[dict[str, int], dict[str, int]]:
    """(machine id -> memory bytes, backend -> size of its weights) from the baseline records."""
    from broke.baselines import stored
    from broke.errors import BrokeError

    memory: dict[str, int] = {}
    sizes: dict[str, int] = {}
    try:
        entries = stored(home, check=False)
    except BrokeError:
        return memory, sizes  # a bad record costs the memory rule, never a request (explain names it)
    for entry in entries:
        machine = entry.record.get("machine") or {}
        if isinstance(machine.get("memory_bytes"), int) and machine.get("id"):
            memory[machine["id"]] = machine["memory_bytes"]
        for model in entry.record.get("models") or []:
            size = (model.get("identity") or {}).get("size_bytes")
            if isinstance(size, int) and model.get("backend"):
                sizes[model["backend"]] = size
    return memory, sizes
