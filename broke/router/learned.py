"""`auto`'s router as used: the shipped prior (`estimator.Router`) moved by what it learned from the
user's labels (`local.LocalModel`, fitted from `labels`). Learning from an outcome set (`learn`) stores
its labels and fits before returning; `load` fits from the stored labels (deterministic for the same
labels), so a restart, another process or the gateway's background refit get the same model.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from broke.router import labels
from broke.router.estimator import Estimate, Router
from broke.router.local import LocalModel, Neighbour


@dataclass(frozen=True)
class LearnedEstimate(Estimate):
    """An estimate whose p_strong the labels moved; `prior` is the shipped prior's p_strong."""

    prior: float | None = None


#: A label's weight by where it came from: an imported outcome set, feedback on a request, a judge.
ORIGIN_WEIGHTS = {"learn": 1.0, "feedback": 1.0, "judge": 1.0}


@dataclass(frozen=True, eq=False)
class Learned:
    """The prior and the local model: estimates as `Router` gives them, with p_strong blended."""

    prior: Router
    local: LocalModel
    version: tuple[int, int] = (0, 0)  # labels.version() the local model was fitted at

    def estimate(self, prompt: str) -> Estimate:
        """The estimate for one prompt (the request-time path)."""
        estimate = self.prior.estimate(prompt)
        if not len(self.local) or estimate.vector is None:
            return _moved(estimate, estimate.p_strong)
        p, _ = self.local.blend(np.array([estimate.p_strong]), estimate.vector)
        return _moved(estimate, float(p[0]))

    def estimate_many(self, prompts: Sequence[str]) -> list[Estimate]:
        """Estimates for many prompts at once."""
        return self.adjust(self.prior.estimate_many(prompts))

    def adjust(self, estimates: Sequence[Estimate]) -> list[Estimate]:
        """The prior's estimates (with their vectors) with p_strong moved by the labels."""
        if not len(self.local) or not estimates:
            return [_moved(e, e.p_strong) for e in estimates]
        p, _ = self.local.blend(np.array([e.p_strong for e in estimates]),
                                np.stack([np.asarray(e.vector) for e in estimates]))
        return [_moved(e, float(v)) for e, v in zip(estimates, p, strict=True)]

    def drivers(self, prompt: str) -> list[tuple[str, float]]:
        """What drove the prior's p_strong (Router.drivers)."""
        return self.prior.drivers(prompt)

    def explain(self, prompt: str) -> Explanation:
        """The prior's and the blended p_strong, the labels' weight, and the labels that moved it most."""
        estimate = self.prior.estimate(prompt)
        if not len(self.local) or estimate.vector is None:
            return Explanation(estimate.p_strong, estimate.p_strong, 0.0, [])
        p, weight = self.local.blend(np.array([estimate.p_strong]), estimate.vector)
        return Explanation(estimate.p_strong, float(p[0]), float(weight[0]), self.local.neighbours(estimate.vector))


def _moved(estimate: Estimate, p_strong: float) -> LearnedEstimate:
    """`estimate` with p_strong moved to `p_strong`, keeping the prior's."""
    return LearnedEstimate(estimate.prompt_complexity, estimate.answer_complexity, estimate.code_bias, p_strong,
                           estimate.vector, estimate.p_strong)


@dataclass(frozen=True)
class Explanation:
    """How the labels moved one prompt: p_strong before and after, their weight (0..1), the top neighbours."""

    prior: float
    p_strong: float
    weight: float
    neighbours: list[Neighbour]


def fit(home: Path, prior: Router) -> Learned:
    """The learned router from the labels stored in `home`."""
    version = labels.version(home)
    return Learned(prior, local_model(home, prior.vector_dims()), version)


def local_model(home: Path, dims: int) -> LocalModel:
    """The local model fitted on the labels stored in `home` (embeddings of `dims` dimensions)."""
    stored = labels.read(home, dims)
    weights = stored.weights * np.array([ORIGIN_WEIGHTS.get(o, 1.0) for o in stored.origins])
    return LocalModel.fit(stored.vectors, stored.targets, weights, stored.names, stored.priors)


def load(home: Path) -> Learned:
    """The prior for `home` (`model.load_or_train`) with what it learned from the stored labels."""
    from broke.router.model import load_or_train

    return fit(home, load_or_train(home))


def learn(home: Path, outcomes: Sequence[tuple[str, str, float]], origin: str = "learn",
          prior: Router | None = None) -> Learned:
    """Store (name, prompt, target) labels (their embeddings, never the text) and fit on every stored
    label. `prior` defaults to the home's (`model.load_or_train`)."""
    from broke.router.model import load_or_train

    prior = prior or load_or_train(home)
    estimates = prior.estimate_many([prompt for _, prompt, _ in outcomes]) if outcomes else []
    labels.add(home, [labels.Label(labels.prompt_key(prompt), name, origin, target, e.p_strong, 1.0,
                                   np.asarray(e.vector))
                      for (name, prompt, target), e in zip(outcomes, estimates, strict=True)])
    return fit(home, prior)
