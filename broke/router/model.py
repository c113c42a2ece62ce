"""Training the complexity router, and the one Router per home and process (`load_or_train`).

The fitted model itself (`Router`, `Estimate`, the fixed blend and answer formula) is in `estimator`;
its cached copy under $BROKE_HOME in `artifact`. What is learned, and how:

Three linear heads are learned, each a ridge regression on the hashed words and the linear hand
features (`features.LINEAR_FEATURES`); p_strong adds boosted trees on top of its linear head.
Each output goes through a Platt sigmoid fitted on 2-fold out-of-fold scores, so it is a
calibrated probability:

- `p_strong`: P(the strong model scores higher than the weak one), RouteLLM's label. Its logit is
  a blend (BLEND, BLEND_WEIGHTS) of three parts, each standardised on the training rows:
  1. `trees`: gradient-boosted regression trees (scikit-learn's HistGradientBoostingRegressor,
     BOOST_PARAMS, stored as node arrays and walked with numpy) over every hand feature and a
     ridge head's score over hashed words, trained on every source with outcomes on the
     within-source ranks of the gain (strong − weak) and of the weak model's failure, every source
     weighing the same (`_rank_target`: scores differ in scale between sources, and a router only
     has to rank).
  2. `meaning`: a ridge over the prompt's static embedding (`embed`: token vectors distilled from
     all-MiniLM-L6-v2, SIF-weighted mean) and the standardised hand features, on the same target.
  3. `answer`: answer_complexity's logit, a prior for prompts unlike the benchmarks ("say hi" looks
     like a short arithmetic question, where GPT-4 does win).
  A Platt sigmoid on 2-fold out-of-fold blends gives the probability; label: strong > weak.
  `Router.drivers` reports each part's contribution and the hand features that moved it most
  (what `explain auto --prompt` shows).
- `prompt_complexity`: P(the weak model fails): ridge target (1 − weak score), smoothed as
  ITEM_SHARE of the row's own value and the rest of its category's mean; Platt label: weak score
  < 0.5. Same rows.
- `code_bias`: P(the prompt is a coding request). Label: Arena-Hard category `coding` (1) versus
  its math / creative-writing prompts and the GSM8K and non-computing MMLU prompts (0).
  Weights: coding prompts 1/2 of the total, the other Arena-Hard prompts 1/4 (the only chat-like
  negatives), MMLU and GSM8K 1/4; so 0.5 means "as likely code as not".

`answer_complexity` has no training data (the data holds no answers), so it is derived: a fixed
logistic formula over the hand features (length, instruction verb, code and reasoning cues,
multi-step cues, list items, questions, multiple choice) plus prompt_complexity; see
ANSWER_WEIGHTS.

p_strong's design (the trees' target, source weights and settings, the meaning head, BLEND_WEIGHTS)
was chosen on leave-one-source-out APGR: fitted on every source but one (CRUXEval's two tasks,
which share their functions, are left out together), scored on the one left out
(perf/router_quality.py). The held-out split is for reporting only.
"""
from __future__ import annotations

import math
import threading
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from broke.router import artifact, embed, features
from broke.router.data import DATA_FILE, TRAIN_SPLITS, Row, data_version, has_outcome, load_rows
from broke.router.estimator import BLEND, BLEND_WEIGHTS, N_TREE_INPUTS, Estimate, Router, _answer_logit, _sigmoid

#: What callers import from here (the fitted model itself is defined in `estimator`).
__all__ = ["BLEND", "N_TREE_INPUTS", "Estimate", "Router", "forget_loaded", "load_or_train", "train"]

RIDGE_ALPHA = 3.0
#: Weight of the standardised hand features next to the L2-normalised hashed-word block.
HAND_WEIGHT = 0.3
#: Share of a row's own outcome in its ridge target; the rest is its category's mean.
ITEM_SHARE = 0.5
#: p_strong's boosted trees (HistGradientBoostingRegressor; no early stopping: deterministic).
BOOST_PARAMS = {"max_iter": 200, "learning_rate": 0.05, "max_leaf_nodes": 15, "min_samples_leaf": 200,
                "early_stopping": False, "random_state": 0}
#: Sources of code_bias's negatives (besides Arena-Hard's non-coding prompts): benchmark questions
#: that are clearly not code.
NOT_CODE_SOURCES = frozenset({"routellm_mmlu", "routellm_gsm8k"})
#: MMLU subjects about computing: neither code nor clearly not code, left out of code_bias.
COMPUTING_SUBJECTS = frozenset(
    {"college_computer_science", "high_school_computer_science", "computer_security", "machine_learning"})
#: Ridge penalty of the meaning head (its sample weights sum to the row count; chosen on LOSO over the
#: four earlier sources: 1 scored a mean of 0.551, 100 0.561, 1,000 0.567, 3,000 0.569, 10,000 0.560),
#: and the weight of its hand features next to the unit embedding.
MEANING_ALPHA = 1000.0
MEANING_HAND_WEIGHT = 0.3


def _category_blend(rows: Sequence[Row], item: np.ndarray) -> np.ndarray:
    """ITEM_SHARE of each row's own value plus the rest of its (source, category) mean."""
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, row in enumerate(rows):
        groups[row["source"], row["category"]].append(i)
    means = np.empty(len(rows))
    for idx in groups.values():
        means[idx] = item[idx].mean()
    return ITEM_SHARE * item + (1 - ITEM_SHARE) * means


def _folds(n: int) -> np.ndarray:
    """The 2 folds of the out-of-fold scores: alternate rows (in the data's sorted order)."""
    return np.arange(n) % 2


def _fit_ridge(hashed, hand_scaled: np.ndarray, target: np.ndarray,
               weight: np.ndarray) -> tuple[np.ndarray, float, np.ndarray]:
    """Ridge on `target` over [hashed | hand]: (coefficients, intercept, 2-fold out-of-fold scores)."""
    import scipy.sparse as sp
    from sklearn.linear_model import Ridge

    x = sp.hstack([hashed, sp.csr_matrix(hand_scaled)], format="csr")
    folds = _folds(len(target))
    oof = np.empty(len(target))
    for k in (0, 1):
        part = Ridge(alpha=RIDGE_ALPHA, solver="sparse_cg").fit(
            x[folds != k], target[folds != k], sample_weight=weight[folds != k])
        oof[folds == k] = part.predict(x[folds == k])
    full = Ridge(alpha=RIDGE_ALPHA, solver="sparse_cg").fit(x, target, sample_weight=weight)
    return full.coef_, float(full.intercept_), oof


def _rank_target(rows: Sequence[Row]) -> tuple[np.ndarray, np.ndarray]:
    """p_strong's target and sample weights (trees and meaning head): per source, the centred within-source rank of
    the gain (strong − weak) plus that of the weak model's failure (1 − weak), each in −0.5..0.5
    (scores differ in scale between sources; a router only has to rank); weights give every source
    the same total."""
    from scipy.stats import rankdata

    sources = np.array([r["source"] for r in rows])
    weak = np.array([r["weak"] for r in rows], dtype=np.float64)
    strong = np.array([r["strong"] for r in rows], dtype=np.float64)
    target, weight = np.empty(len(rows)), np.empty(len(rows))
    names = sorted(set(sources))
    for name in names:
        sel = sources == name
        n = int(sel.sum())
        target[sel] = rankdata(strong[sel] - weak[sel]) / n + rankdata(1.0 - weak[sel]) / n - 1.0
        weight[sel] = len(rows) / (len(names) * n)
    return target, weight


def _ridge(x: np.ndarray, target: np.ndarray, weight: np.ndarray):
    """A fitted dense ridge regression (MEANING_ALPHA; cholesky: deterministic)."""
    from sklearn.linear_model import Ridge

    return Ridge(alpha=MEANING_ALPHA, solver="cholesky").fit(x, target, sample_weight=weight)


def _fit_platt(scores: np.ndarray, label: np.ndarray, weight: np.ndarray) -> tuple[float, float]:
    """A Platt sigmoid (slope, intercept) from out-of-fold `scores` to `label`."""
    from sklearn.linear_model import LogisticRegression

    platt = LogisticRegression(C=1e4).fit(scores[:, None], label, sample_weight=weight)
    return float(platt.coef_[0, 0]), float(platt.intercept_[0])


def _boost(inputs: np.ndarray, target: np.ndarray, weight: np.ndarray):
    """Fitted HistGradientBoostingRegressor; on one thread, so the sums (and the trees) are the same every run."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return HistGradientBoostingRegressor(**BOOST_PARAMS).fit(inputs, target, sample_weight=weight)


def _tree_arrays(fitted) -> dict[str, np.ndarray]:
    """The trees of a fitted HistGradientBoostingRegressor as Router's flat node table."""
    parts: dict[str, list[np.ndarray]] = defaultdict(list)
    roots, offset, depth = [], 0, 0
    for (predictor,) in fitted._predictors:  # one tree per iteration for a single-output regressor
        nodes = predictor.nodes
        leaf = nodes["is_leaf"].astype(bool)
        here = np.arange(len(nodes)) + offset
        parts["tree_feature"].append(np.where(leaf, 0, nodes["feature_idx"]))
        parts["tree_threshold"].append(np.where(leaf, np.inf, nodes["num_threshold"]))
        parts["tree_left"].append(np.where(leaf, here, nodes["left"].astype(np.int64) + offset))
        parts["tree_right"].append(np.where(leaf, here, nodes["right"].astype(np.int64) + offset))
        parts["tree_value"].append(np.where(leaf, nodes["value"], 0.0))
        roots.append(offset)
        offset += len(nodes)
        depth = max(depth, int(nodes["depth"].max()))
    ints = ("tree_feature", "tree_left", "tree_right")
    arrays = {name: np.concatenate(values).astype(np.int32 if name in ints else np.float64)
              for name, values in parts.items()}
    arrays["tree_roots"] = np.array(roots, dtype=np.int32)
    arrays["tree_base"] = np.array([float(np.ravel(fitted._baseline_prediction)[0])])
    arrays["tree_depth"] = np.array([depth], dtype=np.int32)
    return arrays


def _typical(hand: np.ndarray, sources: Sequence[str]) -> np.ndarray:
    """Each hand feature's median over the sources of its median within the source: a typical prompt,
    every source counting the same (a feature most rows of one big source share is not "typical")."""
    names = np.array(sources)
    return np.median([np.median(hand[names == name], axis=0) for name in sorted(set(sources))], axis=0)


def _code_weights(rows: Sequence[Row], label: np.ndarray) -> np.ndarray:
    """code_bias sample weights (mean 1): coding 1/2, other Arena-Hard 1/4, benchmark rows 1/4."""
    arena = np.array([r["source"] == "arena_hard_v2" for r in rows])
    groups = (label == 1, arena & (label == 0), ~arena)
    weights = np.zeros(len(rows))
    for members, share in zip(groups, (0.5, 0.25, 0.25), strict=False):
        weights[members] = share * len(rows) / max(int(members.sum()), 1)
    return weights


def train(rows: Sequence[Row]) -> Router:
    """Fit a Router on the training splits of `rows` (deterministic: same rows, same weights)."""
    rows = [r for r in rows if r["split"] in TRAIN_SPLITS]
    scored = [i for i, r in enumerate(rows) if has_outcome(r)]
    code_rows = [i for i, r in enumerate(rows) if r["source"] == "arena_hard_v2"
                 or (r["source"] in NOT_CODE_SOURCES and r["category"] not in COMPUTING_SUBJECTS)]
    if not scored or not any(rows[i]["category"] == "coding" for i in code_rows):
        raise ValueError("training data needs rows with outcomes and Arena-Hard coding prompts")

    hashed, hand = features.batch_features([r["prompt"] for r in rows])
    linear = hand[:, : features.N_LINEAR]
    hand_mean = linear.mean(axis=0)
    hand_scale = HAND_WEIGHT / np.where(linear.std(axis=0) > 0, linear.std(axis=0), 1.0)
    hand_scaled = (linear - hand_mean) * hand_scale

    outcome = [rows[i] for i in scored]
    weak = np.array([r["weak"] for r in outcome], dtype=np.float64)
    strong = np.array([r["strong"] for r in outcome], dtype=np.float64)
    gain_target = _category_blend(outcome, strong - weak)
    fail_target = _category_blend(outcome, 1.0 - weak)
    ones = np.ones(len(outcome))
    coding = [rows[i] for i in code_rows]
    code_label = np.array([r["category"] == "coding" for r in coding], dtype=int)
    code_weights = _code_weights(coding, code_label)
    heads = [
        _fit_ridge(hashed[scored], hand_scaled[scored], gain_target, ones),
        _fit_ridge(hashed[scored], hand_scaled[scored], fail_target, ones),
        _fit_ridge(hashed[code_rows], hand_scaled[code_rows], code_label.astype(np.float64), code_weights),
    ]

    # p_strong: trees over every hand feature and the linear score (out-of-fold, as at request
    # time the linear head never saw the prompt); their Platt sigmoids use out-of-fold scores too.
    inputs = np.column_stack([hand[scored], heads[0][2]])
    folds = _folds(len(scored))
    rank_target, source_weight = _rank_target(outcome)
    tree_oof = np.empty(len(scored))
    for k in (0, 1):
        tree_oof[folds == k] = _boost(inputs[folds != k], rank_target[folds != k],
                                      source_weight[folds != k]).predict(inputs[folds == k])
    trees = _tree_arrays(_boost(inputs, rank_target, source_weight))
    label = (strong > weak).astype(int)
    platt = [
        (0.0, 0.0),  # p_strong's: below
        _fit_platt(heads[1][2], (weak < 0.5).astype(int), ones),
        _fit_platt(heads[2][2], code_label, code_weights),
    ]
    prompt_oof = _sigmoid(heads[1][2] * platt[1][0] + platt[1][1])
    answer_oof = _answer_logit(hand[scored], prompt_oof)

    # The meaning head: ridge over [static embedding | hand features] on the trees' target and
    # weights (_rank_target), out-of-fold like the rest.
    vectors = embed.load_vectors()
    ids = [vectors.ids(features.tokens(r["prompt"])) for r in rows]
    token_weights = embed.sif_weights(ids, len(vectors.vectors))
    embedding = np.stack([vectors.embed(i, token_weights) for i in ids])[scored].astype(np.float64)
    meaning_mean = hand[scored].mean(axis=0)
    meaning_std = hand[scored].std(axis=0)
    meaning_scale = MEANING_HAND_WEIGHT / math.sqrt(hand.shape[1]) / np.where(meaning_std > 0, meaning_std, 1.0)
    meaning_x = np.hstack([embedding, (hand[scored] - meaning_mean) * meaning_scale])
    meaning_oof = np.empty(len(scored))
    for k in (0, 1):
        meaning_oof[folds == k] = _ridge(meaning_x[folds != k], rank_target[folds != k],
                                         source_weight[folds != k]).predict(meaning_x[folds == k])
    meaning = _ridge(meaning_x, rank_target, source_weight)
    blend_oof = np.column_stack([tree_oof, meaning_oof, answer_oof])
    spread = blend_oof.std(axis=0)
    blend_norm = np.column_stack([blend_oof.mean(axis=0), np.where(spread > 0, spread, 1.0)])
    platt[0] = _fit_platt(((blend_oof - blend_norm[:, 0]) / blend_norm[:, 1]) @ BLEND_WEIGHTS, label, ones)

    coef = np.column_stack([h[0] for h in heads])
    return Router(
        word_weights=np.ascontiguousarray(coef[: features.N_HASH], dtype=np.float32),
        hand_weights=coef[features.N_HASH:],
        bias=np.array([h[1] for h in heads]),
        platt=np.array(platt),
        hand_mean=hand_mean,
        hand_scale=hand_scale,
        **trees,
        token_weights=token_weights,
        meaning_coef=meaning.coef_.astype(np.float64),
        meaning_bias=np.array([float(meaning.intercept_)]),
        meaning_mean=meaning_mean,
        hand_reference=_typical(hand[scored], [rows[i]["source"] for i in scored]),
        meaning_scale=meaning_scale,
        blend_norm=blend_norm,
    )


_LOADED: dict[tuple[Path, Path], Router] = {}
_LOADING = threading.Lock()


def load_or_train(home: Path | None = None, data_path: Path = DATA_FILE) -> Router:
    """The Router for `home` (default $BROKE_HOME): loaded once per process from the cached
    artifact, else the prior shipped in the package (`artifact.load_shipped`, for the shipped data),
    else one trained here and cached (the artifact was missing, stale or not broke's own)."""
    from broke.paths import broke_home

    home = (home or broke_home()).resolve()
    key = (home, data_path.resolve())
    with _LOADING:  # a gateway's threads share one load (or one training)
        if key not in _LOADED:
            version = artifact.version(data_version(data_path))
            router = artifact.load(home, version)
            if router is None and data_path.resolve() == DATA_FILE.resolve():
                router = artifact.load_shipped(version)  # the package's own: nothing to cache
            if router is None:
                router = train(load_rows(data_path))
                artifact.save(home, version, router)
            _LOADED[key] = router
        return _LOADED[key]


def forget_loaded() -> None:
    """Drop the per-process cache, so the next load_or_train reads (or rebuilds) the artifact."""
    with _LOADING:
        _LOADED.clear()
