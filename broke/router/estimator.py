"""The fitted router and what it says about a prompt: `Estimate`, `Router` and the fixed parts of its formula.

A Router is plain arrays (written and read by `artifact`, fitted by `model.train`); turning a prompt
into an estimate needs no scikit-learn. How each head and p_strong's blend are learned, and why these
settings: `model`'s docstring.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from broke.router import embed, features

HEADS = ("p_strong", "prompt_complexity", "code_bias")
#: Inputs of the trees: every hand feature, then p_strong's linear score.
N_TREE_INPUTS = len(features.HAND_FEATURES) + 1

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
#: Chosen on leave-one-source-out APGR (perf/router_quality.py): the mean is flat for the answer
#: part's weight from 1 to 3 (0.576, 0.574 at 2, 0.574 at 3); 2 is the least of those tried (1, 1.5,
#: 2, 3) that puts "say hi" and "rename this variable" below a proof or a system design
#: (test_trivial_prompts_land_below_hard_ones).
#: The prompt's log length as a fourth part had weight 0 at the best mean (the trees see it already).
BLEND = ("trees", "meaning", "answer")
BLEND_WEIGHTS = np.array([1.0, 0.25, 2.0])
#: How many hand features `Router.drivers` names.
DRIVER_FEATURES = 3


@dataclass(frozen=True)
class Estimate:
    """What the router thinks of a prompt; every field is in 0..1. `vector` is the prompt's static
    embedding (what learning from the user's labels compares prompts by; never its text)."""

    prompt_complexity: float
    answer_complexity: float
    code_bias: float
    p_strong: float
    vector: np.ndarray | None = field(default=None, compare=False, repr=False)

    def to_dict(self) -> dict[str, float]:
        return {"prompt_complexity": self.prompt_complexity, "answer_complexity": self.answer_complexity,
                "code_bias": self.code_bias, "p_strong": self.p_strong}


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
        """The calibrated heads of one prompt (`_parts`' first row) and its embedding."""
        words, hand, embedding = self._inputs(prompt)
        return self._parts(self._linear(hand) + words, hand, embedding)[0][0], embedding[0]

    def vector_dims(self) -> int:
        """Dimensions of the prompt embeddings (`Estimate.vector`)."""
        return len(self.meaning_coef) - len(features.HAND_FEATURES)

    def estimate(self, prompt: str) -> Estimate:
        """The estimate for one prompt (the request-time path)."""
        (p_strong, prompt_c, code, answer), vector = self._one(prompt)
        return Estimate(float(prompt_c), float(answer), float(code), float(p_strong), vector)

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
        pushes = sorted(zip(features.HAND_FEATURES, logits[0] - logits[1:], strict=False),
                        key=lambda item: -abs(item[1]))
        return ([(name, float(v)) for name, v in zip(BLEND, parts[0], strict=False)]
                + [(f"feature {name}", float(v)) for name, v in pushes[:DRIVER_FEATURES]])

    def estimate_many(self, prompts: Sequence[str]) -> list[Estimate]:
        """Estimates for many prompts at once (evaluation and calibration)."""
        hashed, hand = features.batch_features(prompts)
        raw = self._linear(hand) + hashed @ self.word_weights.astype(np.float64)
        vectors = embed.load_vectors()
        embedding = vectors.embed_many(prompts, self.token_weights)
        return [Estimate(float(pc), float(a), float(c), float(p), vector)
                for (p, pc, c, a), vector in zip(self._parts(raw, hand, embedding)[0], embedding, strict=True)]

