"""What the router learned from the user's own labels, and how it moves the shipped prior's p_strong.

A label is a prompt's static embedding (`embed`; never its text), a target in 0..1 (how much the
strong model was preferred: 1 = only the strong model did it well, 0.5 = both did as well, 0 = the
weak one did better or sufficed) and a weight. The local model is the labels themselves (fitting is
stacking them, deterministic for the same labels): for a prompt, each label among the NEIGHBOURS
most similar pulls with a kernel weight exp((cosine − 1) / BANDWIDTH) times its own weight. Their
weighted mean target is the local estimate, and `evidence` = the sum of their kernel weights says
how much labelled evidence lies near the prompt. p_strong becomes the evidence-weighted blend

    p = (strength · prior + evidence · local) / (strength + evidence)

so a prompt far from every label keeps the prior's p_strong, and one among many labels follows
them. `strength` (the prior's weight in pseudo-labels) is fitted on the labels themselves: each
label's p_strong with itself left out is blended for every strength of STRENGTHS, and the one whose
blends correlate best with the labels' targets wins (infinity: the labels say nothing the prior does
not, and p_strong stays the prior's). Where outcomes cannot be told from the prompt (GSM8K's word
problems), this keeps noisy neighbours from overriding the prior. With fewer than MIN_FITTED labels,
PRIOR_STRENGTH. Settings chosen on `perf/router_quality.py --adapt` (leave-one-source-out, labels of
the left-out source).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: How many of the most similar labels a prompt looks at.
NEIGHBOURS = 128
#: Width of the similarity kernel on cosine (smaller: only close labels count).
BANDWIDTH = 0.2
#: The prior's weight in pseudo-labels at cosine 1, with fewer than MIN_FITTED labels.
PRIOR_STRENGTH = 0.5
MIN_FITTED = 20
#: The strengths the fit chooses from (inf: the prior alone).
STRENGTHS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 64.0, math.inf)
#: Labels compared with a prompt in one matrix product (see `_similarity`).
SIMILARITY_CHUNK = 2000
#: The newest labels the strength is fitted on at most (a square similarity table of them is made).
FIT_LABELS = 2000


@dataclass(frozen=True)
class Neighbour:
    """A label that moved a prompt's p_strong: its name, cosine similarity, target and share of the pull."""

    name: str
    similarity: float
    target: float
    share: float


@dataclass(frozen=True, eq=False)
class LocalModel:
    """The user's labels, stacked: unit vectors (n, dims) float32, targets and weights (n,), names, and
    the prior's weight `strength` fitted on them."""

    vectors: np.ndarray
    targets: np.ndarray
    weights: np.ndarray
    names: tuple[str, ...]
    strength: float = PRIOR_STRENGTH

    @classmethod
    def fit(cls, vectors: np.ndarray, targets: np.ndarray, weights: np.ndarray, names: tuple[str, ...],
            priors: np.ndarray) -> LocalModel:
        """The model of these labels, whose prompts had these prior p_strong (rows of zero vectors, which
        say nothing, are left out)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        keep = np.linalg.norm(vectors, axis=1) > 0 if len(vectors) else np.zeros(0, dtype=bool)
        kept = tuple(n for n, k in zip(names, keep, strict=True) if k)
        model = cls(vectors[keep], np.asarray(targets, dtype=np.float64)[keep],
                    np.asarray(weights, dtype=np.float64)[keep], kept)
        if len(model) < MIN_FITTED:
            return model
        return cls(model.vectors, model.targets, model.weights, model.names,
                   model._fit_strength(np.asarray(priors, dtype=np.float64)[keep]))

    def _fit_strength(self, priors: np.ndarray) -> float:
        """The strength of STRENGTHS whose leave-one-out blends of the newest FIT_LABELS labels correlate
        best with their targets (ties: the stronger prior)."""
        vectors, targets, priors = self.vectors[-FIT_LABELS:], self.targets[-FIT_LABELS:], priors[-FIT_LABELS:]
        similarity = vectors @ vectors.T
        np.fill_diagonal(similarity, -np.inf)  # leave each label out of its own neighbourhood
        k = min(NEIGHBOURS, len(targets) - 1)
        nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k]
        kernel = np.exp((np.take_along_axis(similarity, nearest, axis=1).astype(np.float64) - 1.0) / BANDWIDTH) \
            * self.weights[-FIT_LABELS:][nearest]
        evidence, pulled = kernel.sum(axis=1), (kernel * targets[nearest]).sum(axis=1)
        best, best_score = math.inf, -math.inf
        for strength in sorted(STRENGTHS, reverse=True):
            blended = priors if math.isinf(strength) else (strength * priors + pulled) / (strength + evidence)
            score = float(np.corrcoef(blended, targets)[0, 1]) if blended.std() > 0 and targets.std() > 0 else 0.0
            if score > best_score + 1e-9:
                best, best_score = strength, score
        return best

    @classmethod
    def empty(cls, dims: int) -> LocalModel:
        """No labels: the prior alone."""
        return cls(np.zeros((0, dims), dtype=np.float32), np.zeros(0), np.zeros(0), ())

    def __len__(self) -> int:
        return len(self.targets)

    def _similarity(self, vectors: np.ndarray) -> np.ndarray:
        """Cosine similarity (m, n) of rows of `vectors` to every label, SIMILARITY_CHUNK labels at a time:
        below the size at which BLAS wakes its threads, whose wake-ups cost a busy 2-core machine tens of
        milliseconds at p99."""
        vectors = np.asarray(vectors, dtype=np.float32).T
        out = np.empty((vectors.shape[1], len(self)), dtype=np.float32)
        for start in range(0, len(self), SIMILARITY_CHUNK):
            out[:, start:start + SIMILARITY_CHUNK] = (self.vectors[start:start + SIMILARITY_CHUNK] @ vectors).T
        return out

    def _kernel(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For rows of `vectors` (m, dims): the NEIGHBOURS nearest labels' indices (m, k) and kernel weights."""
        similarity = self._similarity(vectors)
        k = min(NEIGHBOURS, len(self))
        nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k] if k < len(self) else \
            np.broadcast_to(np.arange(len(self)), (len(vectors), len(self)))
        near = np.take_along_axis(similarity, nearest, axis=1).astype(np.float64)
        return nearest, np.exp((near - 1.0) / BANDWIDTH) * self.weights[nearest]

    def blend(self, prior: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """p_strong for prompts with these prior p_strong (m,) and embeddings (m, dims), and the
        weight (0..1) the labels got in each."""
        prior = np.asarray(prior, dtype=np.float64)
        if not len(self) or math.isinf(self.strength):
            return prior, np.zeros_like(prior)
        nearest, kernel = self._kernel(np.atleast_2d(vectors))
        evidence = kernel.sum(axis=1)
        pulled = (kernel * self.targets[nearest]).sum(axis=1)
        weight = evidence / (self.strength + evidence)
        return (self.strength * prior + pulled) / (self.strength + evidence), weight

    def neighbours(self, vector: np.ndarray, count: int = 3) -> list[Neighbour]:
        """The labels that pulled hardest on the prompt with this embedding, hardest first."""
        if not len(self) or math.isinf(self.strength):
            return []
        nearest, kernel = self._kernel(np.atleast_2d(vector))
        total = self.strength + float(kernel.sum())
        order = np.argsort(-kernel[0], kind="stable")[:count]
        similarity = self.vectors[nearest[0, order]] @ np.asarray(vector, dtype=np.float32)
        return [Neighbour(self.names[int(nearest[0, i])], float(s), float(self.targets[nearest[0, i]]),
                          float(kernel[0, i]) / total) for i, s in zip(order, similarity, strict=True)]
