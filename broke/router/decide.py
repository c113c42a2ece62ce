"""What the CLI asks of the router: estimates with their tier, evaluation on labelled prompts, retraining."""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

from broke.errors import InvalidInputError, StateFileError
from broke.state.model import State

if TYPE_CHECKING:
    from broke.router.evaluate import Quality
    from broke.router.learned import Explanation, Learned


class _Labelled(TypedDict):
    """What evaluation reads of a labelled prompt (a shipped data row has these keys too)."""

    prompt: str
    weak: float | None
    strong: float | None


def estimate_prompt(home: Path, prompt: str, state: State) -> dict:
    """The dimensions, p_strong (the prior's moved by the user's labels), the tier (with the state's
    thresholds) and the quality temperature."""
    from broke.router.learned import load
    from broke.router.tiers import temperature

    estimate = load(home).estimate(prompt)
    return {**estimate.to_dict(), "tier": state.router.tier_for(estimate.p_strong),
            "temperature": temperature(estimate)}


def prompt_drivers(home: Path, prompt: str) -> list[tuple[str, float]]:
    """What drove the prior's p_strong for the prompt (see Router.drivers): signed logit contributions."""
    from broke.router.model import load_or_train

    return load_or_train(home).drivers(prompt)


def prompt_neighbours(home: Path, prompt: str) -> Explanation:
    """How the user's labels moved the prompt's p_strong, and the labels that moved it most."""
    from broke.router.learned import load

    return load(home).explain(prompt)


def learn_file(home: Path, path: Path) -> tuple[int, Learned]:
    """Learn from an outcome set (JSON lines; see labels.parse_outcomes): every line is read and checked
    before anything is stored, and the router is fitted before this returns. Returns the lines learned
    and the learned router."""
    from broke.router.labels import parse_outcomes
    from broke.router.learned import learn

    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    outcomes = parse_outcomes(lines, str(path))
    if not outcomes:
        raise InvalidInputError(f"{path}: no labelled prompts; nothing was learned")
    return len(outcomes), learn(home, outcomes)


def learning_summary(home: Path) -> dict:
    """How many labels the router learned from (by origin), and how much weight they carry on average
    over those labelled prompts' own neighbourhoods (0: the prior alone)."""
    import math
    from collections import Counter

    import numpy as np

    from broke.router.embed import load_vectors
    from broke.router.labels import read
    from broke.router.learned import local_model

    dims = load_vectors().vectors.shape[1]
    local = local_model(home, dims)  # no prior needed: nothing here is estimated
    origins = dict(Counter(read(home, dims).origins))
    weight = float(np.mean(local.blend(np.zeros(len(local)), local.vectors)[1])) if len(local) else 0.0
    strength = None if math.isinf(local.strength) else local.strength  # None: the prior alone
    return {"labels": len(local), "by_origin": origins, "mean_weight": weight, "prior_strength": strength,
            "strong_preferred": float(np.mean(local.targets)) if len(local) else None}


#: Outcome records `router calibrate --own` needs at least.
MIN_OWN_PROMPTS = 20


def own_p_strong(home: Path) -> list[float]:
    """The p_strong of the user's recorded `auto` requests as the router estimates them now: each one's
    prior p_strong (as recorded) moved by the labels the router has now."""
    import numpy as np

    from broke.router import outcomes
    from broke.router.learned import load

    prior, vectors = outcomes.priors(home)
    if len(prior) < MIN_OWN_PROMPTS:
        raise InvalidInputError(f"{len(prior)} recorded `auto` requests are too few to calibrate on "
                                f"(at least {MIN_OWN_PROMPTS}); calibrate on the reference prompts meanwhile")
    p, _ = load(home).local.blend(np.asarray(prior), vectors)
    return [float(v) for v in p]


def forget_learning(home: Path) -> int:
    """Return to the prior: delete every label; returns how many there were."""
    from broke.router.labels import forget

    return forget(home)


def estimate_batch(home: Path, lines: Iterable[str], state: State, source: str) -> Iterator[dict]:
    """One result per JSON line `{"id": …, "prompt": …}` (the model is loaded once)."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise StateFileError(f"{source}:{number}: not JSON ({exc.msg})") from None
        if not isinstance(item, dict) or not isinstance(item.get("prompt"), str):
            raise StateFileError(f"{source}:{number}: needs a string \"prompt\"")
        yield {"id": item.get("id"), **estimate_prompt(home, item["prompt"], state)}


def evaluate_labelled(home: Path, data: Path | None = None) -> Quality:
    """APGR / CPT of the router on labelled prompts: the shipped held-out split, or a JSONL file of
    `{"prompt", "weak", "strong"}` (scores 0..1). Returns broke.router.evaluate.Quality."""
    import numpy as np

    from broke.router.data import EVAL_SPLIT, has_outcome, load_rows
    from broke.router.evaluate import evaluate
    from broke.router.model import load_or_train

    rows: list[_Labelled]
    if data is None:
        rows = [r for r in load_rows() if r["split"] == EVAL_SPLIT and has_outcome(r)]
    else:
        rows = []
        for number, line in enumerate(data.read_text().splitlines(), start=1):
            if line.strip():
                try:
                    item = json.loads(line)
                    rows.append({"prompt": str(item["prompt"]), "weak": float(item["weak"]),
                                 "strong": float(item["strong"])})
                except (ValueError, KeyError, TypeError):
                    raise StateFileError(f"{data}:{number}: needs \"prompt\", \"weak\" and \"strong\"") from None
    if len(rows) < 10:
        raise InvalidInputError(f"{len(rows)} labelled prompts are too few to evaluate a router")
    estimates = load_or_train(home).estimate_many([r["prompt"] for r in rows])
    return evaluate(np.array([e.p_strong for e in estimates]), np.array([r["weak"] for r in rows]),
                    np.array([r["strong"] for r in rows]))


def plot_quality(quality: Quality, path: Path) -> Path:
    """Draw `quality`'s curve (a broke.router.evaluate.Quality) to `path`: quality against the share
    of strong calls, next to a random router's straight line from weak-only to strong-only quality.
    Raises InvalidInputError (from broke.plotting) for a bad path or without matplotlib."""
    from broke.plotting import line_plot

    shares = [point.strong_share for point in quality.curve]
    gap = quality.strong_quality - quality.weak_quality
    return line_plot(
        path, x=shares,
        series={f"router (APGR {quality.apgr:.3f})": [point.quality for point in quality.curve],
                "random router (APGR 0.5)": [quality.weak_quality + share * gap for share in shares]},
        title=f"Router quality on {quality.n} labelled prompts", xlabel="share of calls to the strong model",
        ylabel="mean score of the chosen model")


def retrain(home: Path) -> None:
    """Drop the cached model and fit it again from the shipped data."""
    import shutil

    from broke.router.artifact import router_dir
    from broke.router.model import forget_loaded, load_or_train

    shutil.rmtree(router_dir(home), ignore_errors=True)
    forget_loaded()
    load_or_train(home)
