"""The complexity estimate of a prompt, the model behind it, and its training.

Three linear heads are learned, each a ridge regression on the hashed words and the linear hand
features (`features.LINEAR_FEATURES`); p_strong adds boosted trees on top of its linear head.
Each output goes through a Platt sigmoid fitted on 2-fold out-of-fold scores, so it is a
calibrated probability:

- `p_strong`: P(the strong model scores higher than the weak one), RouteLLM's label. Trained on
  the RouteLLM rows (MMLU, GSM8K; weak Mixtral-8x7B, strong GPT-4). Ridge target: the gain
  (strong − weak score), smoothed as ITEM_SHARE of the row's own value and the rest of its
  category's mean (MMLU subject, GSM8K), because single outcomes are very noisy. Its linear score
  then goes, with every hand feature (`features.HAND_FEATURES`: also the shape of a question, its
  answer options and its numbers), into gradient-boosted regression trees (scikit-learn's
  HistGradientBoostingRegressor, BOOST_PARAMS) fitted on the same target, the linear score of
  each row taken out-of-fold (2 folds) so the trees learn how far to trust it. The trees are
  stored as plain node arrays and walked with numpy at request time. The trees' score (on a logit
  scale through its own Platt slope) plus ANSWER_PRIOR × answer_complexity's logit is what the
  Platt sigmoid turns into p_strong; label: strong > weak. The benchmarks' prompts are multiple
  choice questions and word problems, so the trees alone judge other prompts poorly: "say hi"
  looks like a short arithmetic question, where GPT-4 does win. ANSWER_PRIOR is the prior for such
  prompts: the smallest weight, in steps of 0.1, with which every cross-validation model (15, see
  below) ranks the tests' trivial prompts below their hard ones (tests/test_router.py TRIVIAL,
  HARD); it costs 0.007 pooled validation APGR (0.677 without it).
- `prompt_complexity`: P(the weak model fails): ridge target (1 − weak score), smoothed the same
  way; Platt label: weak score < 0.5. Same rows.
- `code_bias`: P(the prompt is a coding request). Label: Arena-Hard category `coding` (1) versus
  its math / creative-writing prompts and the GSM8K and non-computing MMLU prompts (0).
  Weights: coding prompts 1/2 of the total, the other Arena-Hard prompts 1/4 (the only chat-like
  negatives), MMLU and GSM8K 1/4; so 0.5 means "as likely code as not".

`answer_complexity` has no training data (the data holds no answers), so it is derived: a fixed
logistic formula over the hand features (length, instruction verb, code and reasoning cues,
multi-step cues, list items, questions, multiple choice) plus prompt_complexity; see
ANSWER_WEIGHTS.

The p_strong design (the boosted stage and its inputs, no weak-failure term in its target, the
tree settings, ANSWER_PRIOR) was chosen by cross-validation on the training split only: 5 folds
by a hash of source/item_id (`data.validation_fold`), repeated with 3 salts, on pooled APGR of
MMLU and GSM8K. The held-out split is for reporting only (bench/router_quality.py).
"""
from __future__ import annotations

import math
import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from broke.router import features
from broke.router.data import DATA_FILE, TRAIN_SPLITS, Row, data_version, has_outcome, load_rows

HEADS = ("p_strong", "prompt_complexity", "code_bias")
RIDGE_ALPHA = 3.0
#: Weight of the standardised hand features next to the L2-normalised hashed-word block.
HAND_WEIGHT = 0.3
#: Share of a row's own outcome in its ridge target; the rest is its category's mean.
ITEM_SHARE = 0.5
#: p_strong's boosted trees (HistGradientBoostingRegressor; no early stopping: deterministic).
BOOST_PARAMS = {"max_iter": 100, "learning_rate": 0.1, "max_leaf_nodes": 31, "min_samples_leaf": 50,
                "early_stopping": False, "random_state": 0}
#: Inputs of the trees: every hand feature, then p_strong's linear score.
N_TREE_INPUTS = len(features.HAND_FEATURES) + 1
#: MMLU subjects about computing: neither code nor clearly not code, left out of code_bias.
COMPUTING_SUBJECTS = frozenset(
    {"college_computer_science", "high_school_computer_science", "computer_security", "machine_learning"})

#: answer_complexity = sigmoid(bias + Σ weight · hand feature + weight · prompt_complexity).
ANSWER_BIAS = -3.2
ANSWER_WEIGHTS = {
    "log_tokens": 0.35, "starts_with_instruction": 0.8, "code_fences": 0.4, "code_words": 0.5,
    "languages": 0.5, "reasoning_words": 0.5, "multistep_cues": 0.6, "list_items": 0.4,
    "questions": 0.3, "constraint_words": 0.3, "multiple_choice": -2.0,
}
ANSWER_PROMPT_WEIGHT = 1.5
_ANSWER_INDEX = [features.HAND_FEATURES.index(name) for name in ANSWER_WEIGHTS]
_ANSWER_COEF = np.array(list(ANSWER_WEIGHTS.values()))
#: Weight of answer_complexity's logit next to the trees' (Platt-scaled) logit in p_strong: the
#: prior for prompts unlike the benchmarks (see the module docstring).
ANSWER_PRIOR = 0.3


@dataclass(frozen=True)
class Estimate:
    """What the router thinks of a prompt; every field is in 0..1."""

    prompt_complexity: float
    answer_complexity: float
    code_bias: float
    p_strong: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _answer_logit(hand: np.ndarray, prompt_complexity: np.ndarray) -> np.ndarray:
    """answer_complexity before its sigmoid: the fixed formula over hand features and prompt_complexity."""
    return ANSWER_BIAS + hand[:, _ANSWER_INDEX] @ _ANSWER_COEF + ANSWER_PROMPT_WEIGHT * prompt_complexity


@dataclass(frozen=True, eq=False)
class Router:
    """A fitted model: per-head linear weights, the hand-feature scaling, p_strong's boosted trees
    and the Platt sigmoids.

    The trees are one flat node table: node i tests `inputs[tree_feature[i]] <= tree_threshold[i]`
    and moves to `tree_left[i]` or `tree_right[i]`; a leaf points to itself (threshold +inf) and
    holds its `tree_value`. `tree_roots` lists each tree's first node, `tree_depth` the depth of
    the deepest leaf; the trees' sum plus `tree_base` is their score, already on a logit scale
    (see `train`), to which p_strong adds ANSWER_PRIOR × answer_complexity's logit.
    """

    word_weights: np.ndarray  # (N_HASH, len(HEADS)) float32
    hand_weights: np.ndarray  # (N_LINEAR, len(HEADS))
    bias: np.ndarray  # (len(HEADS),)
    platt: np.ndarray  # (len(HEADS), 2): slope, intercept
    hand_mean: np.ndarray  # (N_LINEAR,)
    hand_scale: np.ndarray  # HAND_WEIGHT / std, (N_LINEAR,)
    tree_feature: np.ndarray  # (nodes,) int32, index into the tree inputs
    tree_threshold: np.ndarray  # (nodes,) float64
    tree_left: np.ndarray  # (nodes,) int32
    tree_right: np.ndarray  # (nodes,) int32
    tree_value: np.ndarray  # (nodes,) float64, 0 except at leaves
    tree_roots: np.ndarray  # (trees,) int32
    tree_base: np.ndarray  # (1,) float64
    tree_depth: np.ndarray  # (1,) int32: the deepest leaf's depth

    def _linear(self, hand: np.ndarray) -> np.ndarray:
        """The hand features' part of the linear heads, for rows of all hand features."""
        return self.bias + ((hand[:, :features.N_LINEAR] - self.hand_mean) * self.hand_scale) @ self.hand_weights

    def _trees(self, inputs: np.ndarray) -> np.ndarray:
        """The boosted trees' score for each row of `inputs` (n, N_TREE_INPUTS).

        Every node's test is evaluated at once (one gather and compare over the node table),
        giving each node's next node; then `tree_depth` steps from the roots reach the leaves
        (a leaf's next node is itself). Rows go in chunks to bound the (rows, nodes) tables.
        """
        if len(inputs) == 1:  # the request-time path, without the row bookkeeping
            step = np.where(inputs[0, self.tree_feature] <= self.tree_threshold, self.tree_left, self.tree_right)
            node = self.tree_roots
            for _ in range(int(self.tree_depth[0])):
                node = step[node]
            return self.tree_base[0] + self.tree_value[node].sum(keepdims=True)
        nodes, chunk = len(self.tree_value), 256
        out = np.empty(len(inputs))
        for start in range(0, len(inputs), chunk):
            part = inputs[start:start + chunk]
            offset = (np.arange(len(part)) * nodes)[:, None]  # row r's copy of the table starts at r * nodes
            step = (np.where(part[:, self.tree_feature] <= self.tree_threshold, self.tree_left, self.tree_right)
                    + offset).ravel()
            node = (self.tree_roots + offset).ravel()
            for _ in range(int(self.tree_depth[0])):
                node = step[node]
            out[start:start + chunk] = self.tree_value[node.reshape(len(part), -1) - offset].sum(axis=1)
        return self.tree_base[0] + out

    def _finish(self, raw: np.ndarray, hand: np.ndarray) -> np.ndarray:
        """Calibrated head probabilities (n, heads) plus answer_complexity as a last column."""
        probs = _sigmoid(raw * self.platt[:, 0] + self.platt[:, 1])
        answer = _answer_logit(hand, probs[:, 1])
        score = self._trees(np.column_stack([hand, raw[:, 0]])) + ANSWER_PRIOR * answer
        probs[:, 0] = _sigmoid(score * self.platt[0, 0] + self.platt[0, 1])
        return np.column_stack([probs, _sigmoid(answer)])

    def estimate(self, prompt: str) -> Estimate:
        """The estimate for one prompt (the request-time path)."""
        cols, hand = features.prompt_features(prompt)
        raw = self._linear(hand[None, :])
        if len(cols):
            raw = raw + self.word_weights[cols].sum(axis=0, dtype=np.float64) / math.sqrt(len(cols))
        p_strong, prompt_c, code, answer = self._finish(raw, hand[None, :])[0]
        return Estimate(float(prompt_c), float(answer), float(code), float(p_strong))

    def estimate_many(self, prompts: Sequence[str]) -> list[Estimate]:
        """Estimates for many prompts at once (evaluation and calibration)."""
        hashed, hand = features.batch_features(prompts)
        raw = self._linear(hand) + hashed @ self.word_weights.astype(np.float64)
        return [Estimate(float(pc), float(a), float(c), float(p))
                for p, pc, c, a in self._finish(raw, hand)]


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


def _fit_platt(scores: np.ndarray, label: np.ndarray, weight: np.ndarray) -> tuple[float, float]:
    """A Platt sigmoid (slope, intercept) from out-of-fold `scores` to `label`."""
    from sklearn.linear_model import LogisticRegression

    platt = LogisticRegression(C=1e4).fit(scores[:, None], label, sample_weight=weight)
    return float(platt.coef_[0, 0]), float(platt.intercept_[0])


def _boost(inputs: np.ndarray, target: np.ndarray):
    """Fitted HistGradientBoostingRegressor; on one thread, so the sums (and the trees) are the same every run."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1):
        return HistGradientBoostingRegressor(**BOOST_PARAMS).fit(inputs, target)


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


def _code_weights(rows: Sequence[Row], label: np.ndarray) -> np.ndarray:
    """code_bias sample weights (mean 1): coding 1/2, other Arena-Hard 1/4, benchmark rows 1/4."""
    arena = np.array([r["source"] == "arena_hard_v2" for r in rows])
    groups = (label == 1, arena & (label == 0), ~arena)
    weights = np.zeros(len(rows))
    for members, share in zip(groups, (0.5, 0.25, 0.25)):
        weights[members] = share * len(rows) / max(int(members.sum()), 1)
    return weights


def train(rows: Sequence[Row]) -> Router:
    """Fit a Router on the training splits of `rows` (deterministic: same rows, same weights)."""
    rows = [r for r in rows if r["split"] in TRAIN_SPLITS]
    scored = [i for i, r in enumerate(rows) if has_outcome(r)]
    code_rows = [i for i, r in enumerate(rows) if r["source"] == "arena_hard_v2"
                 or (has_outcome(r) and r["category"] not in COMPUTING_SUBJECTS)]
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
    tree_oof = np.empty(len(scored))
    for k in (0, 1):
        tree_oof[folds == k] = _boost(inputs[folds != k], gain_target[folds != k]).predict(inputs[folds == k])
    trees = _tree_arrays(_boost(inputs, gain_target))
    label = (strong > weak).astype(int)
    platt = [
        (0.0, 0.0),  # p_strong's: below
        _fit_platt(heads[1][2], (weak < 0.5).astype(int), ones),
        _fit_platt(heads[2][2], code_label, code_weights),
    ]
    # The trees' own Platt slope puts them on a logit scale, where answer_complexity's logit joins
    # them with weight ANSWER_PRIOR; a second Platt sigmoid calibrates the sum.
    tree_slope, _ = _fit_platt(tree_oof, label, ones)
    trees["tree_value"] *= tree_slope
    trees["tree_base"] *= tree_slope
    prompt_oof = _sigmoid(heads[1][2] * platt[1][0] + platt[1][1])
    answer_oof = _answer_logit(hand[scored], prompt_oof)
    platt[0] = _fit_platt(tree_slope * tree_oof + ANSWER_PRIOR * answer_oof, label, ones)

    coef = np.column_stack([h[0] for h in heads])
    return Router(
        word_weights=np.ascontiguousarray(coef[: features.N_HASH], dtype=np.float32),
        hand_weights=coef[features.N_HASH:],
        bias=np.array([h[1] for h in heads]),
        platt=np.array(platt),
        hand_mean=hand_mean,
        hand_scale=hand_scale,
        **trees,
    )


_LOADED: dict[tuple[Path, Path], Router] = {}
_LOADING = threading.Lock()


def load_or_train(home: Path | None = None, data_path: Path = DATA_FILE) -> Router:
    """The Router for `home` (default $BROKE_HOME): loaded once per process from the cached
    artifact, or trained and cached when the artifact is missing, stale or not broke's own."""
    from broke.paths import broke_home
    from broke.router import artifact

    home = (home or broke_home()).resolve()
    key = (home, data_path.resolve())
    with _LOADING:  # a gateway's threads share one load (or one training)
        if key not in _LOADED:
            version = artifact.version(data_version(data_path))
            router = artifact.load(home, version)
            if router is None:
                router = train(load_rows(data_path))
                artifact.save(home, version, router)
            _LOADED[key] = router
        return _LOADED[key]


def forget_loaded() -> None:
    """Drop the per-process cache, so the next load_or_train reads (or rebuilds) the artifact."""
    with _LOADING:
        _LOADED.clear()
