"""The review lanes: a verifier and an adversary, each a slot asked through the gateway (chat completions)
for a structured verdict. A lane that fails or answers unparseably is degraded. Answers for evidence
already reviewed come from a cache keyed by the evidence's hash, the lane and its slot."""
from __future__ import annotations

import hashlib
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from broke.harness.evidence import Evidence
from broke.harness.verdict import DEGRADED, LaneVerdict, Verdict
from broke.records import open_records

LANES = ("verifier", "adversary")
LANE_TIMEOUT_S = 180.0
SCHEMA = """
CREATE TABLE IF NOT EXISTS harness_reviews (key TEXT PRIMARY KEY, lane TEXT NOT NULL, slot TEXT NOT NULL,
    ts REAL NOT NULL, result TEXT NOT NULL);
"""
VERDICT_NAMES = ", ".join(v.name for v in Verdict)
INSTRUCTIONS = {
    "verifier": "You are the verifier of a coding agent's work. Check that the change does what the task asks, "
                "that the tests it ran cover it, and that nothing is left unfinished.",
    "adversary": "You are the adversary reviewing a coding agent's work. Look for what is wrong or risky: "
                 "bugs, security problems, tests that prove nothing, writes outside the task, leaked secrets.",
}
ANSWER_SHAPE = (f"Answer with one JSON object and nothing else: {{\"verdict\": one of {VERDICT_NAMES}, "
                "\"summary\": one sentence, \"findings\": [short strings, each a concrete problem]}. "
                "RETRY_NARROW: small fixes; RETRY_BROAD: the approach is wrong; ESCALATE: a person must decide; "
                "BLOCK: the change must not be used. Observations are facts; inferences are earlier reviews.")


@dataclass
class LaneResult:
    lane: str
    slot: str
    verdict: str  # a Verdict's name, or DEGRADED
    summary: str = ""
    findings: list[str] = field(default_factory=list)
    error: str = ""
    request_id: str = ""
    cached: bool = False

    @property
    def value(self) -> LaneVerdict:
        return DEGRADED if self.verdict == DEGRADED else Verdict[self.verdict]


def parse_answer(lane: str, slot: str, text: str) -> LaneResult:
    """A lane's answer as a result: its JSON object (code fences and chatter around it allowed), else degraded."""
    match = re.search(r"\{.*\}", text, re.DOTALL)
    try:
        data = json.loads(match.group(0)) if match else None
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("verdict"), str):
        return LaneResult(lane, slot, DEGRADED, error="the answer holds no JSON object with a verdict")
    name = data["verdict"].strip().upper().replace("-", "_")
    if name not in Verdict.__members__:
        return LaneResult(lane, slot, DEGRADED, error=f"unknown verdict {data['verdict'][:40]!r}")
    raw, said = data.get("findings"), data.get("summary")
    findings = [f if isinstance(f, str) else json.dumps(f) for f in raw][:50] if isinstance(raw, list) else []
    summary = said if isinstance(said, str) else ""
    return LaneResult(lane, slot, name, summary[:500], [f[:1000] for f in findings])


def ask_lane(base_url: str, token: str, lane: str, slot: str, evidence: Evidence,
             timeout_s: float = LANE_TIMEOUT_S) -> LaneResult:
    """One lane's review, through the gateway; degraded if the request fails."""
    import httpx

    body = {"model": slot, "temperature": 0, "stream": False, "messages": [
        {"role": "system", "content": f"{INSTRUCTIONS[lane]}\n{ANSWER_SHAPE}"},
        {"role": "user", "content": json.dumps(evidence.packet(), indent=1, default=str)}]}
    try:
        answer = httpx.post(f"{base_url}/v1/chat/completions", json=body, timeout=timeout_s,
                            headers={"authorization": f"Bearer {token}"})
    except httpx.HTTPError as exc:
        return LaneResult(lane, slot, DEGRADED, error=f"the gateway did not answer ({type(exc).__name__})")
    request_id = answer.headers.get("x-broke-request-id", "")
    if answer.status_code != 200:
        return LaneResult(lane, slot, DEGRADED, error=f"the gateway answered {answer.status_code}",
                          request_id=request_id)
    try:
        text = answer.json()["choices"][0]["message"]["content"] or ""
    except (ValueError, KeyError, IndexError, TypeError):
        return LaneResult(lane, slot, DEGRADED, error="not a chat completion", request_id=request_id)
    result = parse_answer(lane, slot, text)
    result.request_id = request_id
    return result


class ReviewCache:
    """Lane results by (evidence hash, lane, slot), in the records database; degraded results are not kept."""

    def __init__(self, home: Path) -> None:
        self.home = home

    @staticmethod
    def key(digest: str, lane: str, slot: str) -> str:
        return hashlib.sha256(f"{digest}\0{lane}\0{slot}".encode()).hexdigest()

    def get(self, key: str) -> LaneResult | None:
        with closing(open_records(self.home, SCHEMA)) as connection:
            row = connection.execute("SELECT result FROM harness_reviews WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        result = LaneResult(**json.loads(row[0]))
        result.cached = True
        return result

    def put(self, key: str, result: LaneResult) -> None:
        if result.verdict == DEGRADED:
            return
        with closing(open_records(self.home, SCHEMA)) as connection:
            connection.execute("INSERT OR REPLACE INTO harness_reviews VALUES (?, ?, ?, ?, ?)",
                               (key, result.lane, result.slot, time.time(), json.dumps(asdict(result))))


def review(home: Path, base_url: str, token: str, evidence: Evidence, slots: dict[str, str]) -> dict[str, LaneResult]:
    """Every lane's result for `evidence`, the lanes asked at once; cached answers reused."""
    cache, digest = ReviewCache(home), evidence.digest()
    results: dict[str, LaneResult] = {}
    missing = []
    for lane in LANES:
        cached = cache.get(ReviewCache.key(digest, lane, slots[lane]))
        if cached is not None:
            results[lane] = cached
        else:
            missing.append(lane)
    if missing:
        with ThreadPoolExecutor(len(missing)) as pool:
            asked = {lane: pool.submit(ask_lane, base_url, token, lane, slots[lane], evidence) for lane in missing}
            for lane, future in asked.items():
                results[lane] = future.result()
                cache.put(ReviewCache.key(digest, lane, slots[lane]), results[lane])
    return {lane: results[lane] for lane in LANES}


def lane_summary(results: dict[str, LaneResult]) -> dict[str, Any]:
    return {lane: asdict(result) for lane, result in results.items()}
