"""How far any learner gets on the router's representation from a left-out source's own labels: the
ceiling behind `perf/router_quality.py --adapt`.

    .venv/bin/python perf/router_ceiling.py [--k 200 100000] [--draws 3]

For each source with outcomes left out (the prior fitted on every other source, as in LOSO), K of its
prompts (capped at half the source: K=100000 means "half of it labelled") are the labels and the rest
is scored by:

- `shipped`: what `broke router learn` fits (`local.LocalModel`: similarity-weighted neighbours on the
  static embedding, blended with the prior);
- `ridge`: a ridge regression on the target over the prior's outputs (p_strong, prompt and answer
  complexity, code bias, as logits), log length and the hand features; penalty chosen leave-one-out;
- `ridge+emb`: the same with the static embedding added;
- `trees`: gradient-boosted trees on the `ridge` inputs;
- `logistic`: L2 logistic regression on "strong scored higher" over the `ridge+emb` inputs, penalty
  by 5-fold ROC AUC;

next to the prior alone, the length router and the spread (sd) of a random router's APGR on the same
rest: a source's noise floor. The issue's targets at K = 200: APGR >= length + 0.05 on every source,
mean >= 0.62.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable

import numpy as np

from broke.router import features, model
from broke.router.data import Row, family, has_outcome, load_rows
from broke.router.evaluate import evaluate
from broke.router.labels import target_of
from broke.router.local import LocalModel

LEARNERS = ("prior", "shipped", "ridge", "ridge+emb", "trees", "logistic")
ALPHAS = (1.0, 3.0, 10.0, 30.0, 100.0, 300.0, 1e3, 3e3, 1e4)
Scorer = Callable[[np.ndarray], np.ndarray]


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(p, 1e-4, 1 - 1e-4)
    return np.log(p / (1 - p))


def _ridge(x: np.ndarray, y: np.ndarray) -> Scorer:
    """Ridge on standardised `x`, its penalty the one of ALPHAS whose leave-one-out predictions
    correlate best with `y`."""
    mu, sd = x.mean(0), x.std(0) + 1e-9
    xs, yc = (x - mu) / sd, y - y.mean()
    best = (-np.inf, ALPHAS[0])
    for alpha in ALPHAS:
        hat = xs @ np.linalg.solve(xs.T @ xs + alpha * np.eye(x.shape[1]), xs.T)
        loo = (hat @ yc - np.diag(hat) * yc) / (1 - np.diag(hat))
        score = float(np.corrcoef(loo, yc)[0, 1]) if loo.std() > 0 else -np.inf
        best = max(best, (score, alpha))
    w = np.linalg.solve(xs.T @ xs + best[1] * np.eye(x.shape[1]), xs.T @ yc)
    return lambda z: ((z - mu) / sd) @ w


def _trees(x: np.ndarray, y: np.ndarray) -> Scorer:
    from sklearn.ensemble import HistGradientBoostingRegressor

    fitted = HistGradientBoostingRegressor(max_iter=100, learning_rate=0.05, max_leaf_nodes=7,
                                           min_samples_leaf=max(10, len(y) // 20), random_state=0).fit(x, y)
    return fitted.predict


def _logistic(x: np.ndarray, won: np.ndarray) -> Scorer | None:
    from sklearn.linear_model import LogisticRegressionCV

    if won.min() == won.max():
        return None
    mu, sd = x.mean(0), x.std(0) + 1e-9
    fitted = LogisticRegressionCV(Cs=8, cv=5, scoring="roc_auc", max_iter=2000).fit((x - mu) / sd, won)
    return lambda z: fitted.decision_function((z - mu) / sd)


def source_table(rows: list[Row], name: str) -> dict[str, np.ndarray]:
    """The left-out source's rows scored by the prior fitted on the others: outputs, features, outcomes."""
    fit = [dict(r, split="contaminated" if r["split"] == "contaminated" else "train")
           for r in rows if family(r["source"]) != family(name)]
    held = [r for r in rows if r["source"] == name and has_outcome(r) and r["split"] != "contaminated"]
    estimates = model.train(fit).estimate_many([r["prompt"] for r in held])
    hand = np.array([features.hand_features(r["prompt"], features.tokens(r["prompt"])) for r in held])
    chars = np.array([len(r["prompt"]) for r in held], dtype=np.float64)
    p = np.array([e.p_strong for e in estimates])
    parts = np.column_stack([_logit(p), _logit(np.array([e.prompt_complexity for e in estimates])),
                             _logit(np.array([e.answer_complexity for e in estimates])),
                             _logit(np.array([e.code_bias for e in estimates])), np.log1p(chars), hand])
    return {"p": p, "parts": parts, "vectors": np.stack([np.asarray(e.vector) for e in estimates]),
            "chars": chars, "weak": np.array([r["weak"] for r in held], dtype=np.float64),
            "strong": np.array([r["strong"] for r in held], dtype=np.float64)}


def scores(t: dict[str, np.ndarray], taught: np.ndarray, rest: np.ndarray) -> dict[str, np.ndarray]:
    """Each learner's scores on `rest` after learning the labels of `taught`."""
    target = target_of(t["weak"], t["strong"])
    both = np.column_stack([t["parts"], t["vectors"]])
    local = LocalModel.fit(t["vectors"][taught], target[taught], np.ones(len(taught)),
                           tuple(map(str, taught)), t["p"][taught])
    out = {"prior": t["p"][rest], "shipped": local.blend(t["p"][rest], t["vectors"][rest])[0],
           "ridge": _ridge(t["parts"][taught], target[taught])(t["parts"][rest]),
           "ridge+emb": _ridge(both[taught], target[taught])(both[rest]),
           "trees": _trees(t["parts"][taught], target[taught])(t["parts"][rest])}
    logistic = _logistic(both[taught], (t["strong"][taught] > t["weak"][taught]).astype(int))
    if logistic is not None:
        out["logistic"] = logistic(both[rest])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, nargs="+", default=[200, 100_000], help="labels learned (capped at half)")
    parser.add_argument("--draws", type=int, default=3, help="draws of K prompts to average (default 3)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    rows = load_rows()
    names = sorted({r["source"] for r in rows if has_outcome(r)})
    tables = {name: source_table(rows, name) for name in names}
    for k in args.k:
        print(f"\nK={k}: {'source':16} {'K':>5} " + " ".join(f"{n:>9}" for n in LEARNERS)
              + f" {'length':>7} {'rand sd':>7} {'target':>7}")
        means: dict[str, list[float]] = {n: [] for n in (*LEARNERS, "length")}
        for name, t in tables.items():
            n = len(t["p"])
            used = min(k, n // 2)
            got: dict[str, list[float]] = {m: [] for m in means}
            spread = []
            for draw in range(args.draws):
                order = np.random.default_rng(draw).permutation(n)
                taught, rest = order[:used], order[used:]
                weak, strong = t["weak"][rest], t["strong"][rest]
                for learner, s in scores(t, taught, rest).items():
                    got[learner].append(evaluate(s, weak, strong).apgr)
                got["length"].append(evaluate(t["chars"][rest], weak, strong).apgr)
                spread.append(np.std([evaluate(np.random.default_rng(s).random(len(rest)), weak, strong).apgr
                                      for s in range(20)]))
            row = {m: float(np.mean(v)) if v else float("nan") for m, v in got.items()}
            for m, v in row.items():
                means[m].append(v)
            print(f"     {name:16} {used:5} " + " ".join(f"{row[m]:9.3f}" for m in LEARNERS)
                  + f" {row['length']:7.3f} {np.mean(spread):7.3f} {row['length'] + 0.05:7.3f}", flush=True)
        print(f"     {'mean':16} {'':5} " + " ".join(f"{np.nanmean(means[m]):9.3f}" for m in LEARNERS)
              + f" {np.mean(means['length']):7.3f} {'':7} {0.62:7.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
