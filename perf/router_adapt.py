"""`perf/router_quality.py --adapt K …`: the router as it learns from the user's own labels.

For each source with outcomes left out (as in LOSO: the prior is fitted on every other source), a
deterministic draw of K of its prompts is learned through `broke router learn`'s code path (the
outcome lines parsed by `labels.parse_outcomes`, stored in a scratch home's records database,
fitted by `learned.fit`), and the rest of the source is scored by the learned router, beside the
length router and a random router on the same rest. K is capped at half of a small source (the
`K` column says what was used). Each figure is the mean over `draws` draws.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from broke.router import learned, model
from broke.router.data import Row, family, has_outcome
from broke.router.evaluate import evaluate
from broke.router.labels import parse_outcomes

#: Targets: with K = 200, APGR >= length + 0.05 on every source and a mean >= 0.62; with K = 0, mean >= length's.
TARGET_K, TARGET_MARGIN, TARGET_MEAN = 200, 0.05, 0.62


def _draw(n: int, k: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    return order[:k], order[k:]


def adapt(rows: list[Row], sources: list[str], ks: list[int], points: int, seeds: int, draws: int) -> bool:
    """Print the per-source table for each K; returns whether the targets were met."""
    results: dict[int, list[tuple[float, float, float]]] = {k: [] for k in ks}
    print(f"\n{'adapt: left out':18} {'K':>4} {'rest':>5}  {'APGR':>6} {'length':>6} {'random':>6}  {'vs length':>9}")
    for name in sources:
        fit = [dict(r, split="contaminated" if r["split"] == "contaminated" else "train")
               for r in rows if family(r["source"]) != family(name)]
        held = [r for r in rows if r["source"] == name and has_outcome(r) and r["split"] != "contaminated"]
        prior = model.train(fit)
        estimates = prior.estimate_many([r["prompt"] for r in held])
        weak = np.array([r["weak"] for r in held], dtype=np.float64)
        strong = np.array([r["strong"] for r in held], dtype=np.float64)
        chars = np.array([len(r["prompt"]) for r in held], dtype=np.float64)
        lines = [json.dumps({"prompt": r["prompt"], "weak": r["weak"], "strong": r["strong"]}) for r in held]
        for k in ks:
            used = min(k, len(held) // 2)
            ours, length, rand = [], [], []
            for draw in range(draws):
                taught, rest = _draw(len(held), used, draw)
                with tempfile.TemporaryDirectory() as scratch:
                    router = learned.learn(Path(scratch), parse_outcomes([lines[i] for i in taught], name),
                                           prior=prior)
                    p = np.array([e.p_strong for e in router.adjust([estimates[i] for i in rest])])
                ours.append(evaluate(p, weak[rest], strong[rest], points).apgr)
                length.append(evaluate(chars[rest], weak[rest], strong[rest], points).apgr)
                rand.append(np.mean([evaluate(np.random.default_rng(s).random(len(rest)), weak[rest], strong[rest],
                                              points).apgr for s in range(seeds)]))
            row = (float(np.mean(ours)), float(np.mean(length)), float(np.mean(rand)))
            results[k].append(row)
            print(f"{name:18} {used:4} {len(held) - used:5}  {row[0]:6.3f} {row[1]:6.3f} {row[2]:6.3f}  "
                  f"{row[0] - row[1]:+9.3f}", flush=True)
    print(f"\n{'mean of sources':18} {'K':>4}  {'APGR':>6} {'length':>6} {'random':>6}  {'vs length':>9}")
    for k in ks:
        mean = np.mean(results[k], axis=0)
        print(f"{'':18} {k:4}  {mean[0]:6.3f} {mean[1]:6.3f} {mean[2]:6.3f}  {mean[0] - mean[1]:+9.3f}")
    verdicts = []
    if TARGET_K in results:
        misses = [n for n, r in zip(sources, results[TARGET_K], strict=True) if r[0] < r[1] + TARGET_MARGIN]
        mean = float(np.mean([r[0] for r in results[TARGET_K]]))
        verdicts.append(not misses and mean >= TARGET_MEAN)
        print(f"K={TARGET_K}: mean APGR {mean:.3f} (target >= {TARGET_MEAN}); length + {TARGET_MARGIN} missed on "
              f"{', '.join(misses) or 'no source'}")
    if 0 in results:
        mean = np.mean(results[0], axis=0)
        verdicts.append(bool(mean[0] >= mean[1]))
        print(f"K=0: mean APGR {mean[0]:.3f}, length {mean[1]:.3f}")
    return all(verdicts)
