"""The complexity estimate of a prompt, the model behind it, and its training.

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
(bench/router_quality.py). The held-out split is for reporting only.
"""
from __future__ import annotations

import math
import threading
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from broke.router import embed, features
from broke.router.data import DATA_FILE, TRAIN_SPLITS, Row, data_version, has_outcome, load_rows

HEADS = ("p_strong", "prompt_complexity", "code_bias")
RIDGE_ALPHA = 3.0
#: Weight of the standardised hand features next to the L2-normalised hashed-word block.
HAND_WEIGHT = 0.3
#: Share of a row's own outcome in its ridge target; the rest is its category's mean.
ITEM_SHARE = 0.5
#: p_strong's boosted trees (HistGradientBoostingRegressor; no early stopping: deterministic).
BOOST_PARAMS = {"max_iter": 200, "learning_rate": 0.05, "max_leaf_nodes": 15, "min_samples_leaf": 200,
                "early_stopping": False, "random_state": 0}
#: Inputs of the trees: every hand feature, then p_strong's linear score.
N_TREE_INPUTS = len(features.HAND_FEATURES) + 1
#: Sources of code_bias's negatives (besides Arena-Hard's non-coding prompts): benchmark questions
#: that are clearly not code.
NOT_CODE_SOURCES = frozenset({"routellm_mmlu", "routellm_gsm8k"})
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
#: p_strong's blend, each part standardised on the training rows: the trees' score, the meaning head
#: (ridge over the prompt's static embedding and hand features) and answer_complexity's logit.
#: Chosen on leave-one-source-out APGR (bench/router_quality.py): the mean is flat for the answer
#: part's weight from 1 to 3 (0.576, 0.574 at 2, 0.574 at 3); 2 is the least of those tried (1, 1.5,
#: 2, 3) that puts "say hi" and "rename this variable" below a proof or a system design
#: (test_trivial_prompts_land_below_hard_ones).
#: The prompt's log length as a fourth part had weight 0 at the best mean (the trees see it already).
BLEND = ("trees", "meaning", "answer")
BLEND_WEIGHTS = np.array([1.0, 0.25, 2.0])
#: How many hand features `Router.drivers` names.
DRIVER_FEATURES = 3
#: Ridge penalty of the meaning head (its sample weights sum to the row count; chosen on LOSO over the
#: four earlier sources: 1 scored a mean of 0.551, 100 0.561, 1,000 0.567, 3,000 0.569, 10,000 0.560), and the weight of its hand features next to the unit embedding.
MEANING_ALPHA = 1000.0
MEANING_HAND_WEIGHT = 0.3


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
    the deepest leaf; the trees' sum plus `tree_base` is their score.
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
    token_weights: np.ndarray  # (vocab,) float32: SIF weight of each WordPiece token in the embedding
    meaning_coef: np.ndarray  # (dims + len(HAND_FEATURES),): the meaning head's ridge weights
    meaning_bias: np.ndarray  # (1,)
    meaning_mean: np.ndarray  # (len(HAND_FEATURES),): the meaning head's hand-feature centring
    hand_reference: np.ndarray  # (len(HAND_FEATURES),): a typical training prompt's hand features (`drivers`)
    meaning_scale: np.ndarray  # (len(HAND_FEATURES),): and scaling
    blend_norm: np.ndarray  # (len(BLEND), 2): mean and std of each blended part on the training rows

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

    def _parts(self, raw: np.ndarray, hand: np.ndarray, embedding: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Calibrated head probabilities (n, heads) plus answer_complexity as a last column, and the
        standardised BLEND parts (n, len(BLEND)) whose weighted sum is p_strong's logit before Platt."""
        probs = _sigmoid(raw * self.platt[:, 0] + self.platt[:, 1])
        answer = _answer_logit(hand, probs[:, 1])
        trees = self._trees(np.column_stack([hand, raw[:, 0]]))
        dims = embedding.shape[1]
        meaning = (embedding @ self.meaning_coef[:dims] + self.meaning_bias[0]
                   + ((hand - self.meaning_mean) * self.meaning_scale) @ self.meaning_coef[dims:])
        parts = (np.column_stack([trees, meaning, answer]) - self.blend_norm[:, 0]) / self.blend_norm[:, 1]
        probs[:, 0] = _sigmoid((parts @ BLEND_WEIGHTS) * self.platt[0, 0] + self.platt[0, 1])
        return np.column_stack([probs, _sigmoid(answer)]), parts

    def _inputs(self, prompt: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """One prompt's hashed words' part of the linear heads, hand features (1, n) and embedding (1, dims),
        from one tokenisation."""
        toks = features.tokens(prompt)
        cols, hand = features.hashed_indices(toks), np.asarray(features.hand_features(prompt, toks), dtype=np.float64)
        words = (self.word_weights[cols].sum(axis=0, dtype=np.float64) / math.sqrt(len(cols)) if len(cols)
                 else np.zeros(len(HEADS)))
        vectors = embed.load_vectors()
        return words, hand[None, :], vectors.embed(vectors.ids(toks), self.token_weights)[None, :]

    def _one(self, prompt: str) -> tuple[np.ndarray, np.ndarray]:
        """`_parts` for one prompt."""
        words, hand, embedding = self._inputs(prompt)
        return self._parts(self._linear(hand) + words, hand, embedding)

    def estimate(self, prompt: str) -> Estimate:
        """The estimate for one prompt (the request-time path)."""
        p_strong, prompt_c, code, answer = self._one(prompt)[0][0]
        return Estimate(float(prompt_c), float(answer), float(code), float(p_strong))

    def drivers(self, prompt: str) -> list[tuple[str, float]]:
        """What drove p_strong for `prompt`: each BLEND part's weighted, standardised contribution to
        its logit, then the DRIVER_FEATURES hand features that moved that logit most: the logit minus
        the logit with the feature set to a typical training prompt's value (`_typical`; signed),
        largest first."""
        words, hand, embedding = self._inputs(prompt)
        # Row 0: the prompt; row 1 + j: the prompt with hand feature j at a typical prompt's value.
        varied = np.repeat(hand, hand.shape[1] + 1, axis=0)
        columns = np.arange(hand.shape[1])
        varied[1 + columns, columns] = self.hand_reference
        parts = self._parts(self._linear(varied) + words, varied,
                            np.repeat(embedding, len(varied), axis=0))[1] * BLEND_WEIGHTS
        logits = parts.sum(axis=1)
        pushes = sorted(zip(features.HAND_FEATURES, logits[0] - logits[1:]), key=lambda item: -abs(item[1]))
        return ([(name, float(v)) for name, v in zip(BLEND, parts[0])]
                + [(f"feature {name}", float(v)) for name, v in pushes[:DRIVER_FEATURES]])

    def estimate_many(self, prompts: Sequence[str]) -> list[Estimate]:
        """Estimates for many prompts at once (evaluation and calibration)."""
        hashed, hand = features.batch_features(prompts)
        raw = self._linear(hand) + hashed @ self.word_weights.astype(np.float64)
        vectors = embed.load_vectors()
        embedding = vectors.embed_many(prompts, self.token_weights)
        return [Estimate(float(pc), float(a), float(c), float(p))
                for p, pc, c, a in self._parts(raw, hand, embedding)[0]]


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
    for members, share in zip(groups, (0.5, 0.25, 0.25)):
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
    blend_norm = np.column_stack([blend_oof.mean(axis=0), np.where(blend_oof.std(axis=0) > 0, blend_oof.std(axis=0), 1.0)])
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
