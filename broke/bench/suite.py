"""The fixed prompts `benchmark-sequential` runs: short chat, long-context prefill, code generation."""
from __future__ import annotations

from dataclasses import dataclass

SUITES = ("quick", "standard")
DEFAULT_RUNS = {"quick": 2, "standard": 5}

_CONTEXT_PARAGRAPH = (
    "Section {n}. The maintenance log for pump station {n} records a routine inspection: the "
    "operator checked the intake filter, measured the outlet pressure at {p} kPa, replaced a worn "
    "gasket on valve {v}, and noted that the backup generator started within {s} seconds during the "
    "monthly test. No leaks were found and the station returned to normal service the same day.\n"
)


@dataclass(frozen=True)
class BenchPrompt:
    """One prompt of a suite: what to send and how many tokens to let the model write."""

    name: str
    kind: str  # chat / prefill / code
    text: str
    max_tokens: int

    def message(self, run: int) -> str:
        """The prompt of run `run`: a distinct first line so no run reuses another's prompt cache."""
        return f"[benchmark run {run}]\n{self.text}"


def _long_context(sections: int) -> str:
    body = "".join(_CONTEXT_PARAGRAPH.format(n=n, p=300 + 7 * n % 90, v=n % 13, s=5 + n % 11)
                   for n in range(1, sections + 1))
    return body + "\nWhich pump stations replaced a gasket on valve 4? Answer with the station numbers only."


_CODE = ("Write a Python function `merge_intervals(intervals)` that merges overlapping closed "
         "intervals given as (start, end) tuples and returns them sorted. Include a docstring and "
         "three doctest examples.")
_CHAT = "In two sentences, what is the difference between a process and a thread?"


def suite(name: str) -> list[BenchPrompt]:
    """The prompts of suite `quick` or `standard` (the standard one is longer in every part)."""
    if name == "quick":
        return [BenchPrompt("short-chat", "chat", _CHAT, 64),
                BenchPrompt("long-prefill", "prefill", _long_context(12), 16),
                BenchPrompt("code", "code", _CODE, 192)]
    if name == "standard":
        return [BenchPrompt("short-chat", "chat", _CHAT, 128),
                BenchPrompt("long-prefill", "prefill", _long_context(48), 32),
                BenchPrompt("code", "code", _CODE, 512)]
    raise ValueError(f"unknown suite {name!r}")
