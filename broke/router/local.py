"""What the router learned from the user's own labels, and how it moves the shipped prior's p_strong.

A label is a prompt's static embedding (`embed`; never its text), a target in 0..1 (how much the
strong model was preferred: 1 = only the strong model did it well, 0.5 = both did as well, 0 = the
weak one did better or sufficed) and a weight. The local model is the labels themselves (fitting is
stacking them, deterministic for the same labels): for a prompt, each label among the NEIGHBOURS
most similar pulls with a kernel weight exp((cosine − 1) / BANDWIDTH) times its own weight. Their
weighted mean target is the local estimate, and `evidence` = the sum of their kernel weights says
how much labelled evidence lies near the prompt. p_strong becomes the evidence-weighted blend

    p = (PRIOR_STRENGTH · prior + evidence · local) / (PRIOR_STRENGTH + evidence)

so a prompt far from every label keeps the prior's p_strong, and one among many labels follows
them. Settings chosen on `perf/router_quality.py --adapt` (leave-one-source-out, labels of the
left-out source).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: How many of the most similar labels a prompt looks at.
NEIGHBOURS = 128
#: Width of the similarity kernel on cosine (smaller: only close labels count).
BANDWIDTH = 0.2
#: The prior's weight in pseudo-labels at cosine 1.
PRIOR_STRENGTH = 0.5


@dataclass(frozen=True)
class Neighbour:
    """A label that moved a prompt's p_strong: its name, cosine similarity, target and share of the pull."""

    name: str
    similarity: float
    target: float
    share: float


@dataclass(frozen=True, eq=False)
class LocalModel:
    """The user's labels, stacked: unit vectors (n, dims) float32, targets and weights (n,), names."""

    vectors: np.ndarray
    targets: np.ndarray
    weights: np.ndarray
    names: tuple[str, ...]

    @classmethod
    def fit(cls, vectors: np.ndarray, targets: np.ndarray, weights: np.ndarray,
            names: tuple[str, ...]) -> LocalModel:
        """The model of these labels (rows of zero vectors, which say nothing, are left out)."""
        vectors = np.asarray(vectors, dtype=np.float32)
        keep = np.linalg.norm(vectors, axis=1) > 0
        return cls(vectors[keep], np.asarray(targets, dtype=np.float64)[keep],
                   np.asarray(weights, dtype=np.float64)[keep], tuple(n for n, k in zip(names, keep, strict=True) if k))

    @classmethod
    def empty(cls, dims: int) -> LocalModel:
        """No labels: the prior alone."""
        return cls(np.zeros((0, dims), dtype=np.float32), np.zeros(0), np.zeros(0), ())

    def __len__(self) -> int:
        return len(self.targets)

    def _kernel(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For rows of `vectors` (m, dims): the NEIGHBOURS nearest labels' indices (m, k) and kernel weights."""
        similarity = vectors.astype(np.float32) @ self.vectors.T
        k = min(NEIGHBOURS, len(self))
        nearest = np.argpartition(-similarity, k - 1, axis=1)[:, :k] if k < len(self) else \
            np.broadcast_to(np.arange(len(self)), (len(vectors), len(self)))
        near = np.take_along_axis(similarity, nearest, axis=1).astype(np.float64)
        return nearest, np.exp((near - 1.0) / BANDWIDTH) * self.weights[nearest]

    def blend(self, prior: np.ndarray, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """p_strong for prompts with these prior p_strong (m,) and embeddings (m, dims), and the
        weight (0..1) the labels got in each."""
        prior = np.asarray(prior, dtype=np.float64)
        if not len(self):
            return prior, np.zeros_like(prior)
        nearest, kernel = self._kernel(np.atleast_2d(vectors))
        evidence = kernel.sum(axis=1)
        pulled = (kernel * self.targets[nearest]).sum(axis=1)
        weight = evidence / (PRIOR_STRENGTH + evidence)
        return (PRIOR_STRENGTH * prior + pulled) / (PRIOR_STRENGTH + evidence), weight

    def neighbours(self, vector: np.ndarray, count: int = 3) -> list[Neighbour]:
        """The labels that pulled hardest on the prompt with this embedding, hardest first."""
        if not len(self):
            return []
        nearest, kernel = self._kernel(np.atleast_2d(vector))
        total = PRIOR_STRENGTH + float(kernel.sum())
        order = np.argsort(-kernel[0], kind="stable")[:count]
        similarity = self.vectors[nearest[0, order]] @ np.asarray(vector, dtype=np.float32)
        return [Neighbour(self.names[int(nearest[0, i])], float(s), float(self.targets[nearest[0, i]]),
                          float(kernel[0, i]) / total) for i, s in zip(order, similarity, strict=True)]
