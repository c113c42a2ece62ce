"""The complexity estimate of a prompt, the linear model behind it, and its training.

Three heads are learned, each a ridge regression on the prompt features followed by a Platt
sigmoid fitted on 2-fold out-of-fold scores (so each output is a calibrated probability):

- `p_strong`: P(the strong model scores higher than the weak one), RouteLLM's label. Trained on
  the RouteLLM rows (MMLU, GSM8K; weak Mixtral-8x7B, strong GPT-4). Ridge target: the gain
  (strong − weak score) plus FAIL_SHARE × the weak model's failure (1 − weak score), each
  smoothed as ITEM_SHARE of the row's own value and the rest of its category's mean (MMLU
  subject, GSM8K), because single outcomes are very noisy. The failure term makes prompts the
  weak model gets wrong rank higher even where the benchmark's strong model also fails. It is a
  trade: on open-ended prompts (held-out MT-Bench) APGR goes from 0.51 (FAIL_SHARE 0) to 0.64;
  on held-out MMLU it is unchanged (0.704 / 0.705) and pooled it costs 0.003, but in 2-fold
  cross-validation of the training split (MMLU + GSM8K only) it costs 0.013. Platt label:
  strong > weak.
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
#: Weight of the weak-failure target added to p_strong's gain target (see the module docstring).
FAIL_SHARE = 0.5
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


@dataclass(frozen=True, eq=False)
class Router:
    """A fitted model: per-head linear weights, Platt sigmoids and the hand-feature scaling."""

    word_weights: np.ndarray  # (N_HASH, len(HEADS)) float32
    hand_weights: np.ndarray  # (len(HAND_FEATURES), len(HEADS))
    bias: np.ndarray  # (len(HEADS),)
    platt: np.ndarray  # (len(HEADS), 2): slope, intercept
    hand_mean: np.ndarray
    hand_scale: np.ndarray  # HAND_WEIGHT / std

    def _finish(self, raw: np.ndarray, hand: np.ndarray) -> np.ndarray:
        """Calibrated head probabilities (n, heads) plus answer_complexity as a last column."""
        probs = _sigmoid(raw * self.platt[:, 0] + self.platt[:, 1])
        z = ANSWER_BIAS + hand[:, _ANSWER_INDEX] @ _ANSWER_COEF + ANSWER_PROMPT_WEIGHT * probs[:, 1]
        return np.column_stack([probs, _sigmoid(z)])

    def estimate(self, prompt: str) -> Estimate:
        """The estimate for one prompt (the request-time path)."""
        cols, hand = features.prompt_features(prompt)
        raw = self.bias + ((hand - self.hand_mean) * self.hand_scale) @ self.hand_weights
        if len(cols):
            raw = raw + self.word_weights[cols].sum(axis=0, dtype=np.float64) / math.sqrt(len(cols))
        p_strong, prompt_c, code, answer = self._finish(raw[None, :], hand[None, :])[0]
        return Estimate(float(prompt_c), float(answer), float(code), float(p_strong))

    def estimate_many(self, prompts: Sequence[str]) -> list[Estimate]:
        """Estimates for many prompts at once (evaluation and calibration)."""
        hashed, hand = features.batch_features(prompts)
        raw = self.bias + hashed @ self.word_weights.astype(np.float64) \
            + ((hand - self.hand_mean) * self.hand_scale) @ self.hand_weights
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


def _fit_head(hashed, hand_scaled: np.ndarray, target: np.ndarray, label: np.ndarray,
              weight: np.ndarray) -> tuple[np.ndarray, float, tuple[float, float]]:
    """Ridge on `target`, then a Platt sigmoid on 2-fold out-of-fold scores against `label`.

    Returns (coefficients over [hashed | hand], intercept, (platt slope, platt intercept)).
    """
    import scipy.sparse as sp
    from sklearn.linear_model import LogisticRegression, Ridge

    x = sp.hstack([hashed, sp.csr_matrix(hand_scaled)], format="csr")
    folds = np.arange(len(target)) % 2
    oof = np.empty(len(target))
    for k in (0, 1):
        part = Ridge(alpha=RIDGE_ALPHA, solver="sparse_cg").fit(
            x[folds != k], target[folds != k], sample_weight=weight[folds != k])
        oof[folds == k] = part.predict(x[folds == k])
    full = Ridge(alpha=RIDGE_ALPHA, solver="sparse_cg").fit(x, target, sample_weight=weight)
    platt = LogisticRegression(C=1e4).fit(oof[:, None], label, sample_weight=weight)
    return full.coef_, float(full.intercept_), (float(platt.coef_[0, 0]), float(platt.intercept_[0]))


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
    hand_mean = hand.mean(axis=0)
    hand_scale = HAND_WEIGHT / np.where(hand.std(axis=0) > 0, hand.std(axis=0), 1.0)
    hand_scaled = (hand - hand_mean) * hand_scale

    outcome = [rows[i] for i in scored]
    weak = np.array([r["weak"] for r in outcome], dtype=np.float64)
    strong = np.array([r["strong"] for r in outcome], dtype=np.float64)
    fail_target = _category_blend(outcome, 1.0 - weak)
    gain_target = _category_blend(outcome, strong - weak) + FAIL_SHARE * fail_target
    ones = np.ones(len(outcome))
    coding = [rows[i] for i in code_rows]
    code_label = np.array([r["category"] == "coding" for r in coding], dtype=int)
    heads = [
        _fit_head(hashed[scored], hand_scaled[scored], gain_target, (strong > weak).astype(int), ones),
        _fit_head(hashed[scored], hand_scaled[scored], fail_target, (weak < 0.5).astype(int), ones),
        _fit_head(hashed[code_rows], hand_scaled[code_rows], code_label.astype(np.float64), code_label,
                  _code_weights(coding, code_label)),
    ]

    coef = np.column_stack([h[0] for h in heads])
    return Router(
        word_weights=np.ascontiguousarray(coef[: features.N_HASH], dtype=np.float32),
        hand_weights=coef[features.N_HASH:],
        bias=np.array([h[1] for h in heads]),
        platt=np.array([h[2] for h in heads]),
        hand_mean=hand_mean,
        hand_scale=hand_scale,
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
