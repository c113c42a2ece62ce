"""`broke harness run`: one mediated agent run from launch to verdict.

The run gets an id, its own gateway tokens (the agent's and the reviewers'), shims and a ledger; when the
client exits, a checkpoint; then the evidence is reviewed and the verdict algebra decides; a retry verdict
within the policy's budget continues the same agent session with the findings, and is reviewed again.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from broke.errors import UsageProblem
from broke.harness import agent as agents
from broke.harness.evidence import (
    Evidence,
    boundary_violations,
    command_events,
    gather,
    snapshot_tree,
    tree_diff,
)
from broke.harness.lanes import LANES, LaneResult, lane_summary, review
from broke.harness.ledger import Ledger, new_run_id
from broke.harness.requests import agent_owner, review_owner
from broke.harness.shim import mask
from broke.harness.verdict import (
    ACCEPTED,
    RETRIES,
    Checks,
    Decision,
    LaneVerdict,
    Verdict,
    check_policy,
    check_risk,
    combine,
)

if TYPE_CHECKING:
    from broke.control.runfiles import TokenStore
    from broke.sandbox.support import Support

Progress = Callable[[str], None]
#: `broke harness run`'s exit status when the client succeeded but the verdict is not an acceptance.
NOT_ACCEPTED = 3


@dataclass(frozen=True)
class RunOptions:
    args: list[str]
    policy: str | None = None  # None: the state's default
    sandbox: str | None = None  # None: the client's default profile
    task: str | None = None  # None: read from the client's arguments
    risk: str = "normal"
    force: bool = False


@dataclass
class RunResult:
    run_id: str
    exit_code: int
    complete: bool
    decision: Decision | None = None
    lanes: dict[str, LaneResult] = field(default_factory=dict)
    retries: int = 0

    @property
    def status(self) -> int:
        """What `broke harness run` exits with: the client's failure, else 0 when accepted, else 3."""
        if self.exit_code != 0 or self.decision is None:
            return self.exit_code
        return 0 if self.decision.verdict in ACCEPTED else NOT_ACCEPTED


def worker_verdict(exit_code: int) -> Verdict:
    """The worker lane: the agent's own account, which is its exit status."""
    return Verdict.ACCEPT if exit_code == 0 else Verdict.RETRY_BROAD


def decide(policy: str, risk: str, retries: int, evidence: Evidence,
           lanes: Mapping[str, LaneVerdict]) -> Decision:
    checks = Checks(tests_failed=evidence.tests_failed,
                    boundary_violation=any(e["kind"] == "boundary_violation" for e in evidence.policy_events))
    return combine(policy, worker=worker_verdict(evidence.client_exit), verifier=lanes["verifier"],
                   adversary=lanes["adversary"], checks=checks, risk=risk, retries=retries)


@dataclass
class _Run:
    home: Path
    ledger: Ledger
    options: RunOptions
    policy: str
    slots: dict[str, str]
    base_url: str
    review_token: str
    cwd: Path
    environ: Mapping[str, str]
    base_tree: str | None
    history: list[dict[str, Any]] = field(default_factory=list)

    def evidence(self, task: str, exit_code: int) -> Evidence:
        commands, _ = self.ledger.commands()
        spill = self.ledger.root / agents.SPILL_DIR
        events = boundary_violations(spill) + command_events(commands, broke_home=self.home)
        return gather(task, tree_diff(self.cwd, self.environ, self.base_tree), commands, events, exit_code,
                      list(self.history))

    def review(self, task: str, exit_code: int, retries: int) -> tuple[Decision, dict[str, LaneResult]]:
        evidence = self.evidence(task, exit_code)
        if self.policy == "off":
            lanes: dict[str, LaneResult] = {}
            values: dict[str, LaneVerdict] = dict.fromkeys(LANES, Verdict.ACCEPT)
        else:
            lanes = review(self.home, self.base_url, self.review_token, evidence, self.slots)
            values = {lane: result.value for lane, result in lanes.items()}
        decision = decide(self.policy, self.options.risk, retries, evidence, values)
        self.ledger.append("review", attempt=retries, evidence=evidence.digest(), policy=self.policy,
                           risk=self.options.risk, tests=evidence.tests, policy_events=evidence.policy_events,
                           lanes=lane_summary(lanes), verdict=decision.verdict.name, reasons=list(decision.reasons))
        return decision, lanes


def harness_run(home: Path, options: RunOptions, *, cwd: Path, environ: Mapping[str, str],
                progress: Progress) -> RunResult:
    """Launch, checkpoint, review and retry one run; the ledger records each step as it happens."""
    from broke import launch, launch_sandbox
    from broke.control import supervisor
    from broke.control.runfiles import TokenStore
    from broke.state.store import StateStore

    if not options.args:
        raise UsageProblem("no command given; usage: broke harness run [OPTIONS] -- COMMAND [ARGS]...")
    client, client_args = agents.split_client(options.args)
    state = StateStore(home).load()
    policy = check_policy(options.policy or state.harness.policy)
    check_risk(options.risk)
    launch.require_client(client, environ, client_args)
    profile, support, _ = launch_sandbox.ready(home, client, options.sandbox, environ, force=options.force)
    record, started = supervisor.start(home, progress=progress)
    if started:
        progress(f"gateway started on {record.base_url}")
    tokens = TokenStore(home)
    sweep_tokens(home, tokens)
    ledger = Ledger(home, new_run_id()).create()
    try:
        agent = agents.agent_plan(home, ledger, client, client_args, record.base_url,
                                  tokens.token_for(agent_owner(ledger.run_id)), environ)
        task = options.task or agents.task_of(client, client_args) or ""
        run = _Run(home, ledger, options, policy, {"verifier": state.harness.verifier,
                                                   "adversary": state.harness.adversary},
                   record.base_url, tokens.token_for(review_owner(ledger.run_id)), cwd, environ,
                   snapshot_tree(cwd, environ))
        ledger.append("started", run=ledger.run_id, pid=os.getpid(), client=client, argv=mask(agent.plan.argv),
                      cwd=str(cwd), task=task, policy=policy, risk=options.risk, sandbox=profile, lanes=run.slots,
                      plan={"set": sorted(agent.plan.set), "removed": agent.plan.removed,
                            "shimmed": agent.shimmed, "path_first": str(ledger.bin_dir)},
                      git_base=run.base_tree)
        progress(f"run {ledger.run_id}: {client}, policy {policy}, sandbox {profile}")
        return _loop(run, agent, client, task, profile, support)
    finally:
        tokens.revoke(agent_owner(ledger.run_id))
        tokens.revoke(review_owner(ledger.run_id))


def sweep_tokens(home: Path, tokens: TokenStore) -> list[str]:
    """Revoke the tokens of runs that are no longer running (a run whose broke was killed keeps its
    tokens until here); the owners revoked."""
    from broke.harness.inspect import run_state
    from broke.harness.requests import run_of

    gone = []
    for owner in tokens.load():
        run = run_of(owner)
        if run is not None and run_state(Ledger(home, run[0]).events()[0])[0] != "running":
            tokens.revoke(owner)
            gone.append(owner)
    return gone


def _loop(run: _Run, agent: agents.AgentPlan, client: str, task: str, profile: str,
          support: Support | None) -> RunResult:
    ledger, retries, first = run.ledger, 0, agent.client_args
    while True:
        code, signalled = agents.launch(run.home, ledger, agent, profile=profile, support=support, cwd=run.cwd,
                                        environ=run.environ)
        complete = not signalled
        ledger.append("checkpoint", attempt=retries, exit=code, complete=complete,
                      why="" if complete else f"the client was stopped by a signal (status {code})")
        if not complete:
            ledger.append("finished", verdict=None, complete=False)
            return RunResult(ledger.run_id, code, False, retries=retries)
        decision, lanes = run.review(task, code, retries)
        findings = [f for result in lanes.values() for f in result.findings]
        more = continuation_args(client, first, task, decision, findings)
        if more is None:
            ledger.append("finished", verdict=decision.verdict.name, complete=True)
            return RunResult(ledger.run_id, code, True, decision, lanes, retries)
        retries += 1
        run.history.append({"attempt": retries - 1, "verdict": decision.verdict.name, "findings": findings})
        ledger.append("retry", attempt=retries, verdict=decision.verdict.name, findings=findings)
        agent = agents.with_args(agent, more)


def continuation_args(client: str, args: Sequence[str], task: str, decision: Decision,
                      findings: Sequence[str]) -> list[str] | None:
    """The client's arguments for another round, when the verdict asks for one and the client can go on."""
    if decision.verdict not in RETRIES or not task:
        return None
    message = agents.findings_message(task, decision.verdict.name, findings)
    return agents.continuation(client, args, task, message)


def review_evidence(home: Path, evidence: Evidence, progress: Progress) -> dict[str, LaneResult]:
    """The lanes' results on evidence given by hand (`broke harness evaluate --task …`), through the gateway
    (started if needed) with the client token."""
    from broke.control import supervisor
    from broke.control.runfiles import TokenStore
    from broke.state.store import StateStore

    state = StateStore(home).load()
    record, started = supervisor.start(home, progress=progress)
    if started:
        progress(f"gateway started on {record.base_url}")
    slots = {"verifier": state.harness.verifier, "adversary": state.harness.adversary}
    return review(home, record.base_url, TokenStore(home).token_for("client"), evidence, slots)
