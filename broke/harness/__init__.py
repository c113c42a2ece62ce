"""Harness mode: an agent run mediated by broke (run id, shims, append-only ledger, checkpoint) and reviewed
by independent lanes whose verdicts a policy combines into one."""
