"""Codex's model discovery: `GET /v1/models?client_version=…` answered in Codex's own catalog shape, so that
Codex lists broke's Codex lanes and runs them without its "model metadata not found" warning.

Each lane appears under the name Codex knows it by (listed in its picker) and under its slot name (hidden).
A catalog entry carries the agent's base instructions; broke ships its own (codex_prompt.md).
"""
from __future__ import annotations

from functools import cache
from pathlib import Path
from typing import Any

from broke.catalog import Catalog

#: The query parameter only Codex's discovery request carries.
CODEX_QUERY = "client_version"
_PROMPT = Path(__file__).with_name("codex_prompt.md")
_EFFORTS = (("low", "Fast responses with lighter reasoning"),
            ("medium", "Balances speed and reasoning depth"),
            ("high", "Greater reasoning depth for complex problems"))


@cache
def _instructions() -> str:
    return _PROMPT.read_text()


def _entry(slug: str, slot: str, priority: int, listed: bool) -> dict[str, Any]:
    return {
        "slug": slug,
        "display_name": slug,
        "description": f"broke lane '{slot}' (routed by `broke route {slot}`)",
        "base_instructions": _instructions(),
        "supported_reasoning_levels": [{"effort": e, "description": d} for e, d in _EFFORTS],
        "default_reasoning_level": "medium",
        "shell_type": "shell_command",
        "visibility": "list" if listed else "hide",
        "supported_in_api": True,
        "priority": priority,
        "support_verbosity": False,
        "truncation_policy": {"mode": "tokens", "limit": 10000},
        "experimental_supported_tools": [],
    }


def codex_catalog(catalog: Catalog, slots: list[str]) -> dict[str, Any]:
    """The catalog of the Codex lanes among `slots` (the ones the asking token may use)."""
    models = []
    for priority, slot in enumerate(s for s in slots if s in catalog.codex_names):
        name = catalog.codex_names[slot]
        models.append(_entry(name, slot, priority, listed=True))
        if name != slot:
            models.append(_entry(slot, slot, priority, listed=False))
    return {"models": models}
