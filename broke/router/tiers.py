"""From an estimate to a tier (basic / balanced / premium), calibration of the thresholds, and the
quality temperature shown to users.

Tiers use p_strong only: premium at or above `Thresholds.premium_from`, balanced at or above
`Thresholds.balanced_from`, basic below (the names of the state's `[router]` fields).
`calibrate` sets premium_from RouteLLM-style, as the p_strong quantile of a reference prompt
set such that about `strong_share` of it reaches premium, and balanced_from at half of it
(BALANCED_FRACTION): prompts with at least half the premium evidence get the middle tier.

The temperature is a colour for prompt_complexity, the estimated probability that the weak
(basic) model fails: green < 0.2 ≤ yellow < 0.5 ≤ orange < 0.8 ≤ red.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import numpy as np

from broke.state.model import Tier, tier_at

if TYPE_CHECKING:
    from broke.router.estimator import Router
    from broke.router.learned import Learned
    from broke.routing.resolve import Estimate

Temperature = Literal["green", "yellow", "orange", "red"]
BALANCED_FRACTION = 0.5
TEMPERATURE_BOUNDS: tuple[tuple[float, Temperature], ...] = ((0.2, "green"), (0.5, "yellow"), (0.8, "orange"))


@dataclass(frozen=True)
class Thresholds:
    """Where the tiers start on p_strong: balanced at `balanced_from`, premium at `premium_from`."""

    balanced_from: float
    premium_from: float

    def __post_init__(self) -> None:
        if not 0.0 <= self.balanced_from <= self.premium_from <= 1.0:
            raise ValueError(f"thresholds must satisfy 0 <= balanced_from <= premium_from <= 1, got {self}")

    def tier_for(self, p_strong: float) -> Tier:
        """The tier a prompt with this p_strong goes to (the state's own rule)."""
        return tier_at(p_strong, self.balanced_from, self.premium_from)


def calibrate(strong_share: float, reference_prompts: Sequence[str],
              router: Router | Learned | None = None) -> Thresholds:
    """Thresholds sending about `strong_share` (0..1) of `reference_prompts` to premium.

    `router` defaults to the one `load_or_train()` gives for $BROKE_HOME.
    """
    if not reference_prompts:
        raise ValueError("calibrate needs at least one reference prompt")
    if router is None:
        from broke.router.model import load_or_train

        router = load_or_train()
    return calibrate_scores(strong_share, [e.p_strong for e in router.estimate_many(reference_prompts)])


def calibrate_scores(strong_share: float, p_strong: Sequence[float]) -> Thresholds:
    """Thresholds sending about `strong_share` (0..1) of prompts with these p_strong to premium."""
    if not 0.0 <= strong_share <= 1.0:
        raise ValueError(f"strong_share must be within 0..1, got {strong_share}")
    if not len(p_strong):
        raise ValueError("calibrate needs at least one prompt")
    scores = np.asarray(p_strong, dtype=np.float64)
    premium = 1.0 if strong_share == 0.0 else float(np.quantile(scores, 1.0 - strong_share, method="higher"))
    return Thresholds(balanced_from=premium * BALANCED_FRACTION, premium_from=premium)


def temperature(estimate: Estimate) -> Temperature:
    """The quality-risk colour of a prompt for the basic tier (from prompt_complexity)."""
    for bound, colour in TEMPERATURE_BOUNDS:
        if estimate.prompt_complexity < bound:
            return colour
    return "red"
