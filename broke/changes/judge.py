"""Judged samples of `auto`: which slot judges, the share of requests judged, and the USD cap."""
from __future__ import annotations

import math

from broke.catalog import load_catalog
from broke.changes.slots import check_slot
from broke.errors import InvalidInputError
from broke.state.model import JudgeConfig, State
from broke.state.store import StateStore


def check_judge(slot: str, rate: float, budget_usd: float) -> JudgeConfig:
    """A judge setting whose rate is in 0..1, budget 0 or more and slot a known slot."""
    if not math.isfinite(rate) or not 0.0 <= rate <= 1.0:
        raise InvalidInputError(f"--rate must be a share of `auto` requests in 0..1, got {rate}")
    if not math.isfinite(budget_usd) or budget_usd < 0:
        raise InvalidInputError(f"--budget-usd must be USD, 0 or more, got {budget_usd}")
    check_slot(slot, load_catalog())
    return JudgeConfig(slot, rate, budget_usd)


def set_judge(store: StateStore, slot: str, rate: float, budget_usd: float) -> State:
    """Judge a share `rate` of `auto` requests with `slot`, spending at most `budget_usd` in all."""
    judge = check_judge(slot, rate, budget_usd)

    def apply(state: State) -> None:
        state.router.judge = judge

    return store.update(apply)[0]


def judge_off(store: StateStore) -> State:
    """Stop judging samples (what was spent and learned stays)."""

    def apply(state: State) -> None:
        state.router.judge = JudgeConfig()

    return store.update(apply)[0]
