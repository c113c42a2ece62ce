"""The verdict algebra: lane verdicts and deterministic checks, combined under a policy. One pure function.

Verdicts are ordered from best to worst; the final verdict is the worst of what every input asks for,
after the policy has said how much each input counts. See the README's table per policy.
"""
from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from broke.errors import UsageProblem, one_of


class Verdict(IntEnum):
    """Best first: a larger value is a worse verdict."""

    ACCEPT = 0
    ACCEPT_WITH_WARNINGS = 1
    RETRY_NARROW = 2
    RETRY_BROAD = 3
    ESCALATE = 4
    BLOCK = 5


#: A lane that failed or answered something unparseable.
DEGRADED = "DEGRADED"
POLICIES = ("off", "throughput", "balanced", "high_assurance")
RISKS = ("low", "normal", "high")
#: Retries a run may make under each policy before a retry verdict becomes ESCALATE.
RETRY_BUDGET = {"off": 0, "throughput": 1, "balanced": 2, "high_assurance": 2}
ACCEPTED = (Verdict.ACCEPT, Verdict.ACCEPT_WITH_WARNINGS)
RETRIES = (Verdict.RETRY_NARROW, Verdict.RETRY_BROAD)

LaneVerdict = Verdict | str  # a Verdict, or DEGRADED


def parse_verdict(text: str) -> Verdict:
    """`ACCEPT`, `retry-narrow`, `Retry_Broad` … as a Verdict; UsageProblem for anything else."""
    name = text.strip().upper().replace("-", "_")
    try:
        return Verdict[name]
    except KeyError:
        raise UsageProblem(f"unknown verdict '{text}'; expected one of: "
                           f"{', '.join(v.name for v in Verdict)}") from None


def parse_lane(text: str) -> LaneVerdict:
    """A lane's verdict as given on the command line: a verdict, or `degraded`."""
    return DEGRADED if text.strip().upper() == DEGRADED else parse_verdict(text)


def check_policy(name: str) -> str:
    return one_of("policy", name, POLICIES)


def check_risk(name: str) -> str:
    return one_of("risk", name, RISKS)


@dataclass(frozen=True)
class Checks:
    """The deterministic checks, made before any lane counts."""

    tests_failed: bool = False  # the last test command the agent ran failed
    boundary_violation: bool = False  # the sandbox caught a write outside the working directory


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    reasons: tuple[str, ...]


def _adversary_weight(policy: str, risk: str, verdict: Verdict) -> Verdict:
    """How much the adversary's verdict counts: under throughput (and balanced at low risk) its retry
    requests are warnings; it can still escalate and block."""
    lenient = policy == "throughput" or (policy == "balanced" and risk == "low")
    return Verdict.ACCEPT_WITH_WARNINGS if lenient and verdict in RETRIES else verdict


def _degraded_floor(policy: str, risk: str, degraded: int) -> Verdict:
    """The best verdict a run can get with `degraded` reviewer lanes (of two) failed."""
    if degraded == 0:
        return Verdict.ACCEPT
    if policy == "high_assurance" or (policy == "balanced" and (risk == "high" or degraded == 2)):
        return Verdict.ESCALATE
    return Verdict.ACCEPT_WITH_WARNINGS


def combine(policy: str, *, worker: LaneVerdict, verifier: LaneVerdict, adversary: LaneVerdict,
            checks: Checks = Checks(), risk: str = "normal", retries: int = 0) -> Decision:
    """The final verdict of a run. Pure: the same inputs always give the same decision."""
    check_policy(policy)
    check_risk(risk)
    asks: list[tuple[Verdict, str]] = []
    if checks.boundary_violation:
        asks.append((Verdict.BLOCK, "the sandbox caught a write outside the working directory"))
    lanes = {"worker": worker, "verifier": verifier, "adversary": adversary}
    blocked = [name for name, v in lanes.items() if v == Verdict.BLOCK]
    asks += [(Verdict.BLOCK, f"the {name} lane blocked") for name in blocked]
    if policy != "off":
        if checks.tests_failed:
            asks.append((Verdict.RETRY_NARROW, "the last tests the agent ran failed"))
        for name, value in lanes.items():
            if isinstance(value, Verdict) and value != Verdict.ACCEPT:
                weighed = _adversary_weight(policy, risk, value) if name == "adversary" else value
                asks.append((weighed, f"the {name} lane said {value.name}"))
        degraded = sum(1 for name in ("verifier", "adversary") if lanes[name] == DEGRADED)
        if worker == DEGRADED:
            asks.append((Verdict.ESCALATE, "the worker lane is degraded"))
        floor = _degraded_floor(policy, risk, degraded)
        if floor != Verdict.ACCEPT:
            asks.append((floor, f"{degraded} review lane(s) degraded under {policy}"))
        if risk == "high" and policy != "throughput":  # at high risk, warnings are fixed before acceptance
            asks = [(Verdict.RETRY_NARROW if v == Verdict.ACCEPT_WITH_WARNINGS else v, why) for v, why in asks]
    verdict = max((v for v, _ in asks), default=Verdict.ACCEPT)
    reasons = [why for v, why in asks if v == verdict] if verdict != Verdict.ACCEPT else []
    if verdict in RETRIES and retries >= RETRY_BUDGET[policy]:
        reasons.append(f"retry budget of {RETRY_BUDGET[policy]} spent ({retries} made)")
        verdict = Verdict.ESCALATE
    return Decision(verdict, tuple(reasons))
