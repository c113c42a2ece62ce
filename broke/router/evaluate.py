"""Router quality as RouteLLM measures it (`routellm/evals/evaluate.py`, `benchmarks.py`).

A router gives each prompt a score (higher: send to the strong model). Thresholds are the
score quantiles at `points` + 1 evenly spaced levels (RouteLLM: `pd.qcut(scores, 10)` bins);
at each threshold the prompts scoring ≥ it go to the strong model (> it for the last one),
and quality is the mean score of the model each prompt went to. On the resulting curve of
quality against strong-call share:

- APGR = (area under the curve − weak-only area) / (strong-only area − weak-only area), the
  areas by the trapezoid rule over the same share range; a random router gets about 0.5.
  A router can exceed 1 where the weak model sometimes beats the strong one.
- CPT(x) = the strong-call share at which the curve first recovers x of the gap between
  weak-only and strong-only quality (linear between points). RouteLLM uses `np.interp`, which
  is the same on a rising curve; the first crossing is also defined where the curve dips.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

ROUTELLM_POINTS = 10


@dataclass(frozen=True)
class CurvePoint:
    """One threshold of the sweep: the share of prompts sent to the strong model and the quality."""

    threshold: float
    strong_share: float
    quality: float


@dataclass(frozen=True)
class Quality:
    """A router's evaluation on one prompt set."""

    n: int
    weak_quality: float
    strong_quality: float
    apgr: float
    cpt50: float
    cpt80: float
    curve: tuple[CurvePoint, ...]


def curve(scores: np.ndarray, weak: np.ndarray, strong: np.ndarray,
          points: int = ROUTELLM_POINTS) -> list[CurvePoint]:
    """The threshold sweep, sorted by strong-call share."""
    scores, weak, strong = (np.asarray(a, dtype=np.float64) for a in (scores, weak, strong))
    thresholds = np.quantile(scores, np.linspace(0.0, 1.0, points + 1))
    out = []
    for i, threshold in enumerate(thresholds):
        chosen = scores > threshold if i == len(thresholds) - 1 else scores >= threshold
        out.append(CurvePoint(float(threshold), float(chosen.mean()),
                              float(np.where(chosen, strong, weak).mean())))
    return sorted(out, key=lambda p: (p.strong_share, p.threshold))


def apgr(points: list[CurvePoint], weak_quality: float, strong_quality: float) -> float:
    """Average performance gap recovered by the curve `points` (sorted by share)."""
    x = np.array([p.strong_share for p in points])
    y = np.array([p.quality for p in points])
    span = x[-1] - x[0]
    area = float(np.trapezoid(y, x))
    return (area - weak_quality * span) / ((strong_quality - weak_quality) * span)


def cpt(points: list[CurvePoint], weak_quality: float, strong_quality: float, recover: float) -> float:
    """Share of strong calls at which the curve first recovers `recover` (0..1) of the gap; nan if never."""
    target = weak_quality + recover * (strong_quality - weak_quality)
    prev = points[0]
    if prev.quality >= target:
        return prev.strong_share
    for point in points[1:]:
        if point.quality >= target:
            step = (target - prev.quality) / (point.quality - prev.quality)
            return prev.strong_share + step * (point.strong_share - prev.strong_share)
        prev = point
    return float("nan")


def evaluate(scores: np.ndarray, weak: np.ndarray, strong: np.ndarray,
             points: int = ROUTELLM_POINTS) -> Quality:
    """APGR, CPT(50%), CPT(80%) and the curve of a router's `scores` on prompts with these outcomes."""
    sweep = curve(scores, weak, strong, points)
    wq, sq = float(np.mean(weak)), float(np.mean(strong))
    return Quality(len(scores), wq, sq, apgr(sweep, wq, sq), cpt(sweep, wq, sq, 0.5),
                   cpt(sweep, wq, sq, 0.8), tuple(sweep))
