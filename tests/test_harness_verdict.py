"""The verdict algebra's properties (hypothesis) and the README's table, cell by cell where it matters."""
from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from broke.harness.verdict import DEGRADED, POLICIES, RISKS, Checks, Verdict, combine

verdicts = st.sampled_from(list(Verdict))
lanes = st.one_of(verdicts, st.just(DEGRADED))
policies = st.sampled_from(POLICIES)
risks = st.sampled_from(RISKS)
checks = st.builds(Checks, st.booleans(), st.booleans())
retries = st.integers(min_value=0, max_value=5)


def final(policy, worker, verifier, adversary, check=None, risk="normal", tries=0) -> Verdict:
    return combine(policy, worker=worker, verifier=verifier, adversary=adversary, checks=check or Checks(), risk=risk,
                   retries=tries).verdict


@given(policies, lanes, lanes, lanes, checks, risks, retries, st.integers(0, 3))
def test_block_from_any_lane_or_check_dominates(policy, worker, verifier, adversary, check, risk, tries, where):
    inputs = [worker, verifier, adversary]
    if where < 3:
        inputs[where] = Verdict.BLOCK
    else:
        check = Checks(check.tests_failed, boundary_violation=True)
    assert final(policy, *inputs, check, risk, tries) == Verdict.BLOCK


@given(policies, lanes, lanes, lanes, checks, risks, retries, st.integers(0, 2), verdicts, verdicts)
def test_a_worse_lane_verdict_never_gives_a_better_final_one(policy, worker, verifier, adversary, check, risk,
                                                               tries, where, one, other):
    better, worse = sorted((one, other))
    inputs = [worker, verifier, adversary]
    inputs[where] = better
    with_better = final(policy, *inputs, check, risk, tries)
    inputs[where] = worse
    assert final(policy, *inputs, check, risk, tries) >= with_better


@given(policies, lanes, lanes, lanes, risks, retries)
def test_failed_checks_and_more_retries_never_improve_the_verdict(policy, worker, verifier, adversary, risk, tries):
    plain = final(policy, worker, verifier, adversary, Checks(), risk, tries)
    assert final(policy, worker, verifier, adversary, Checks(tests_failed=True), risk, tries) >= plain
    assert final(policy, worker, verifier, adversary, Checks(), risk, tries + 1) >= plain


@given(policies, risks, retries)
def test_all_accept_with_passing_checks_is_accepted(policy, risk, tries):
    assert final(policy, Verdict.ACCEPT, Verdict.ACCEPT, Verdict.ACCEPT, Checks(), risk, tries) == Verdict.ACCEPT


@given(lanes, lanes, lanes, checks, risks, retries)
def test_high_assurance_never_accepts_with_a_degraded_lane(worker, verifier, adversary, check, risk, tries):
    inputs = [worker, verifier, adversary]
    if DEGRADED not in inputs:
        inputs[1] = DEGRADED
    assert final("high_assurance", *inputs, check, risk, tries) >= Verdict.ESCALATE


@pytest.mark.parametrize(("policy", "verifier", "adversary", "check", "risk", "tries", "expected"), [
    ("balanced", Verdict.ACCEPT, Verdict.RETRY_NARROW, Checks(), "normal", 0, Verdict.RETRY_NARROW),
    ("balanced", Verdict.ACCEPT, Verdict.RETRY_NARROW, Checks(), "low", 0, Verdict.ACCEPT_WITH_WARNINGS),
    ("throughput", Verdict.ACCEPT, Verdict.RETRY_BROAD, Checks(), "normal", 0, Verdict.ACCEPT_WITH_WARNINGS),
    ("balanced", Verdict.ACCEPT, DEGRADED, Checks(), "normal", 0, Verdict.ACCEPT_WITH_WARNINGS),
    ("balanced", DEGRADED, DEGRADED, Checks(), "normal", 0, Verdict.ESCALATE),
    ("balanced", Verdict.ACCEPT_WITH_WARNINGS, Verdict.ACCEPT, Checks(), "high", 0, Verdict.RETRY_NARROW),
    ("balanced", Verdict.ACCEPT, Verdict.ACCEPT, Checks(tests_failed=True), "normal", 0, Verdict.RETRY_NARROW),
    ("balanced", Verdict.RETRY_NARROW, Verdict.ACCEPT, Checks(), "normal", 2, Verdict.ESCALATE),
    ("throughput", Verdict.RETRY_NARROW, Verdict.ACCEPT, Checks(), "normal", 1, Verdict.ESCALATE),
    ("off", Verdict.RETRY_BROAD, DEGRADED, Checks(tests_failed=True), "high", 0, Verdict.ACCEPT),
    ("off", Verdict.ACCEPT, Verdict.ACCEPT, Checks(boundary_violation=True), "normal", 0, Verdict.BLOCK),
])
def test_table_cells(policy, verifier, adversary, check, risk, tries, expected):
    assert final(policy, Verdict.ACCEPT, verifier, adversary, check, risk, tries) == expected
