"""Judged samples of `auto` (`broke router judge`): the judge's verdicts, the spend against the judging
budget, and the labels they give.

A judgement asks the judge slot to compare the chosen tier's answer with the other tier's, in both orders
(MT-Bench's pairwise prompt: `[[A]]`, `[[B]]` or `[[C]]` for a tie). The same winner in both orders wins;
a tie or a verdict that flips with the order is a tie. Weak won or tie: the cheaper tier sufficed (target 0);
strong won: the strong one was needed (target 1). Labels go through `labels.add` (origin "judge").

Table `router_judgements`: one row per judged request: what was reserved before asking and, once
settled, what it cost. Reserving is one IMMEDIATE transaction, so the budget is held across processes.
"""
from __future__ import annotations

import re
import time
from contextlib import closing
from pathlib import Path
from typing import Literal

import numpy as np

from broke.records import open_records

SCHEMA = """
CREATE TABLE IF NOT EXISTS router_judgements (
    request_id TEXT PRIMARY KEY,
    time REAL NOT NULL,
    slot TEXT NOT NULL,
    reserved REAL NOT NULL,
    cost_usd REAL,
    winner TEXT
);
"""
Winner = Literal["weak", "strong", "tie"]
#: A winner's label target (p_strong's goal): the cheaper tier sufficed, or the strong one was needed.
TARGETS: dict[str, float] = {"weak": 0.0, "tie": 0.0, "strong": 1.0}
_VERDICT = re.compile(r"\[\[([ABC])\]\]")

SYSTEM = ("Please act as an impartial judge and evaluate the quality of the responses provided by two AI "
          "assistants to the user question displayed below. Choose the assistant that follows the user's "
          "instructions and answers the user's question better. Avoid any position bias: the order in which "
          "the responses are presented must not influence your decision, nor their length. After a short "
          "explanation, output your final verdict strictly in this format: \"[[A]]\" if assistant A is better, "
          "\"[[B]]\" if assistant B is better, and \"[[C]]\" for a tie.")


def judge_messages(question: str, answer_a: str, answer_b: str) -> list[dict[str, str]]:
    """The chat messages asking the judge to compare answer A with answer B to `question`."""
    user = (f"[User Question]\n{question}\n\n[The Start of Assistant A's Answer]\n{answer_a}\n"
            f"[The End of Assistant A's Answer]\n\n[The Start of Assistant B's Answer]\n{answer_b}\n"
            "[The End of Assistant B's Answer]")
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def verdict(text: str) -> str | None:
    """A, B or C (tie) from the judge's answer (its last verdict), None if it gave none."""
    found = _VERDICT.findall(text)
    return found[-1] if found else None


def winner(weak_first: str | None, strong_first: str | None) -> Winner:
    """The winner from the verdicts with the weak answer as A, then the strong answer as A."""
    if weak_first == "A" and strong_first == "B":
        return "weak"
    if weak_first == "B" and strong_first == "A":
        return "strong"
    return "tie"


def reserve(home: Path, request_id: str, slot: str, amount: float, budget_usd: float) -> bool:
    """Hold `amount` USD of the budget for a judgement; False (nothing held) if the budget would be exceeded."""
    with closing(open_records(home, SCHEMA)) as connection:
        connection.execute("BEGIN IMMEDIATE")
        spent = connection.execute(
            "SELECT coalesce(sum(coalesce(cost_usd, reserved)), 0) FROM router_judgements").fetchone()[0]
        if spent + amount > budget_usd:
            connection.execute("ROLLBACK")
            return False
        connection.execute("INSERT OR REPLACE INTO router_judgements (request_id, time, slot, reserved) "
                           "VALUES (?, ?, ?, ?)", (request_id, time.time(), slot, amount))
        connection.execute("COMMIT")
        return True


def settle(home: Path, request_id: str, cost_usd: float, found: Winner | None) -> None:
    """What a judgement cost (its reservation is released) and its winner (None: it did not finish)."""
    with closing(open_records(home, SCHEMA)) as connection:
        connection.execute("UPDATE router_judgements SET cost_usd = ?, winner = ? WHERE request_id = ?",
                           (cost_usd, found, request_id))


def spending(home: Path) -> tuple[int, float, float]:
    """(judgements with a winner, USD spent or held so far, what the newest judgement held)."""
    with closing(open_records(home, SCHEMA)) as connection:
        judged, spent = connection.execute(
            "SELECT count(winner), coalesce(sum(coalesce(cost_usd, reserved)), 0) FROM router_judgements").fetchone()
        newest = connection.execute("SELECT reserved FROM router_judgements ORDER BY rowid DESC LIMIT 1").fetchone()
    return int(judged), float(spent), float(newest[0]) if newest else 0.0


def record_label(home: Path, request_id: str, found: Winner, prior: float, vector: np.ndarray) -> None:
    """The judged request as a label (key `request:<id>`, as feedback on it would be)."""
    from broke.router.labels import Label, add

    add(home, [Label(f"request:{request_id}", request_id, "judge", TARGETS[found], prior, 1.0,
                     np.asarray(vector, dtype=np.float32))])
