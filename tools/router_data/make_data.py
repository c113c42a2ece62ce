"""The rows of the shipped router training set that come from local files, and the rules every source shares.

Local files: the routing data (RouteLLM outcomes, Arena-Hard categories: `prompts.csv` and
`scores.csv`) and CRUXEval's input prediction (Python code reasoning, per-problem pass rates).
Shared rules: which sources may ship and their held-out share (`split_for`), when two prompts are
the same (SAME_PREFIX), scoring model-written code by running it (`pass_rate`), and the file format
(`write`). `build` puts these rows together with the outcome sets `external` reads from public git
history (chat judged by GPT-4, CRUXEval's output prediction) and writes
`broke/router/data/routing.jsonl.gz`; its docstring has the command.

From a checkout of facebookresearch/cruxeval at CRUXEVAL_COMMIT (see `SOURCES.md`) come the
problems, Code Llama 7B's scored generations and GPT-3.5-Turbo's generations, which are scored here
by running each one (a child Python per distinct generation, CHECK_TIMEOUT seconds, as CRUXEval's
own scorer does). A row is one JSON object a line, `source, item_id, prompt, category, split, weak,
strong` (scores 0..1, null where the source has no outcomes). Only redistributable sources are kept
(see `SOURCES.md`); LeetCode is left out because its problem text is LeetCode's. The output is
byte-identical for the same input (sorted rows, gzip without a timestamp).

Dev only (not in the wheel): it runs model-written code.
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import io
import json
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from broke.router.data import Row, family

WEAK_MODEL = "mistralai/Mixtral-8x7B-Instruct-v0.1"
STRONG_MODEL = "gpt-4-1106-preview"
#: Sources that may be shipped, and the share of each held out for evaluation (by hash of source/item_id).
HELD_OUT_SHARE = {
    "routellm_mmlu": 0.2,
    "routellm_gsm8k": 0.5,
    "routellm_mtbench": 1.0,  # 80 prompts: all held out, never trained on
    "arena_hard_v2": 0.2,  # no outcomes: trains code_bias / answer_complexity only
    "cruxeval_input": 0.2,
    "cruxeval_output": 0.2,  # split by the same key as cruxeval_input: the two share their 800 functions
    "arena_bench_v1": 0.2,
    "vicuna80": 0.2,
    "mmlu_pro": 0.2,
}

#: CRUXEval's commit whose tree holds GPT-3.5-Turbo's input-prediction generations (later removed).
CRUXEVAL_COMMIT = "c7c787365a9a448f4a07058fb57b19fee7d4c471"
CRUXEVAL_PROBLEMS = "data/cruxeval.jsonl"
CRUXEVAL_WEAK = "samples/evaluation_results/sample_scored_codellama-7b_temp0.2_input.json"
CRUXEVAL_STRONG = "model_generations/gpt-3.5-turbo-0613_temp0.2_input/generations.json"
CHECK_TIMEOUT = 3.0
END_MARK = "\0broke: the program reached its end"
#: The question each CRUXEval problem is put as (CRUXEval's own prompt adds two worked examples).
CRUXEVAL_PROMPT = ("Find an input such that executing the Python function f on it leads to the given output.\n\n"
                   "{code}\nassert f(??) == {output}")
#: Prompts sharing this many leading characters count as the same prompt.
SAME_PREFIX = 60
#: MT-Bench prompts carry both turns; the scores (and RouteLLM's routing) are for the first turn.
TURN_MARK = "\n\n[turn 2]"


def split_for(source: str, item_id: str, given: str) -> str:
    """`contaminated` where the data says so, else `test` or `train` by a stable hash of source/item_id."""
    if given == "contaminated":
        return "contaminated"
    digest = hashlib.sha256(f"{family(source)}/{item_id}".encode()).digest()
    fraction = int.from_bytes(digest[:8], "big") / 2**64
    return "test" if fraction < HELD_OUT_SHARE[source] else "train"


def routing_rows(src: Path) -> list[Row]:
    """The rows of the routing data in `src` (`prompts.csv`, `scores.csv`) whose source may ship, in file order."""
    scores: dict[tuple[str, str], dict[str, float]] = {}
    with open(src / "scores.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            scores.setdefault((row["source"], row["item_id"]), {})[row["model"]] = float(row["score"])
    rows: list[Row] = []
    with open(src / "prompts.csv", newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            source = row["source"]
            if source not in HELD_OUT_SHARE:
                continue
            outcome = scores.get((source, row["item_id"]), {})
            has_outcome = source.startswith("routellm_")
            if has_outcome and not {WEAK_MODEL, STRONG_MODEL} <= outcome.keys():
                raise SystemExit(f"{source}/{row['item_id']}: missing a model score")
            rows.append({
                "source": source,
                "item_id": row["item_id"],
                "prompt": row["prompt"].split(TURN_MARK, 1)[0],
                # Arena-Hard keeps its sub-category (coding / math / creative_writing) in `difficulty`.
                "category": row["difficulty"] if source == "arena_hard_v2" else row["category"],
                "split": split_for(source, row["item_id"], row["split"]),
                "weak": outcome.get(WEAK_MODEL) if has_outcome else None,
                "strong": outcome.get(STRONG_MODEL) if has_outcome else None,
            })
    return rows


def without_mt_bench_repeats(rows: list[Row]) -> list[Row]:
    """`rows` less those of other sources that repeat an MT-Bench prompt (MT-Bench is all held out; one
    GSM8K problem is also an MT-Bench question)."""
    mt_bench = {r["prompt"].strip()[:SAME_PREFIX] for r in rows if r["source"] == "routellm_mtbench"}
    return [r for r in rows if r["source"] == "routellm_mtbench" or r["prompt"].strip()[:SAME_PREFIX] not in mt_bench]


def passes(program: str) -> bool:
    """Whether `program` runs to its end (its last line is an assert) in a child Python, isolated
    (-I, empty environment, a fresh temporary directory), within CHECK_TIMEOUT seconds; a program
    that exits early (exit(0) in a generation) does not reach the end mark."""
    with tempfile.TemporaryDirectory() as tmp:
        try:
            done = subprocess.run([sys.executable, "-I", "-c", f"{program}\nprint({END_MARK!r}, end='')"], cwd=tmp,
                                  env={}, capture_output=True, timeout=CHECK_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            return False
    return done.returncode == 0 and done.stdout.endswith(END_MARK.encode())


def pass_rate(code: str, output: str, generations: list[str],
              may_count: Callable[[str], bool] = lambda g: "f(" in g) -> float:
    """The share of `generations` that equal `output` when run after `code` (`assert OUTPUT == GEN`),
    counting only those `may_count` accepts (CRUXEval's scoring at CRUXEVAL_COMMIT). By default they
    are input predictions `f(...)`: one with no call of f fails."""
    checked: dict[str, bool] = {}
    for g in generations:
        if g not in checked:
            checked[g] = may_count(g) and passes(f"{code}\nassert {output} == {g}")
    return sum(checked[g] for g in generations) / len(generations)


def cruxeval_rows(checkout: Path) -> list[Row]:
    """CRUXEval's 800 input-prediction problems: weak = Code Llama 7B's share of its 10 generations that
    CRUXEval scored correct, strong = GPT-3.5-Turbo's share of its 10 (scored here)."""
    weak = json.loads((checkout / CRUXEVAL_WEAK).read_text(encoding="utf-8"))["raw_scored_generations"]
    strong = json.loads((checkout / CRUXEVAL_STRONG).read_text(encoding="utf-8"))
    problems = [json.loads(line) for line in (checkout / CRUXEVAL_PROBLEMS).read_text(encoding="utf-8").splitlines()]
    with ThreadPoolExecutor(max_workers=4) as pool:
        strong_rates = list(pool.map(lambda p: pass_rate(p["code"], p["output"], strong[p["id"]]), problems))
    return [{
        "source": "cruxeval_input", "item_id": p["id"],
        "prompt": CRUXEVAL_PROMPT.format(code=p["code"], output=p["output"]), "category": "input_prediction",
        "split": split_for("cruxeval_input", p["id"], ""),
        "weak": round(sum(weak[p["id"]]) / len(weak[p["id"]]), 6), "strong": round(rate, 6),
    } for p, rate in zip(problems, strong_rates, strict=False)]


def write(rows: list[Row], out: Path) -> None:
    """Write `rows` as deterministic gzip-compressed JSON lines."""
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as gz:
        for row in rows:
            gz.write((json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n").encode())
    out.write_bytes(buf.getvalue())
