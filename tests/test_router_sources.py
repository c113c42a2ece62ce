"""The shipped router data and its dev-only builders (tools/router_data): the data file itself, scoring
model-written code by running it, and the outcome sets read from git history (external), on small
repositories made here: which prompts are kept, which are left out, and what each score becomes."""
from __future__ import annotations

import io
import json
import subprocess
import zipfile
from pathlib import Path

import pytest

from broke.router.data import DATA_FILE, EVAL_SPLIT, load_rows
from tools.router_data import external, make_data

ARENA_HARD_PROMPT = "Use ABC notation to write a melody in the style of a folk tune, with a bridge."
MT_BENCH_PROMPT = "Compose an engaging travel blog post about a recent trip to Hawaii, highlighting culture."


def commit(mirrors: Path, repo: str, files: dict[str, bytes]) -> str:
    """A bare clone of `repo` under `mirrors` whose one commit holds `files`; returns the commit."""
    git_dir, work = mirrors / repo.replace("/", "+"), mirrors / "work" / repo.replace("/", "+")
    for path, data in files.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_bytes(data)
    subprocess.run(["git", "init", "-q", "--bare", str(git_dir)], check=True)
    git = ["git", "--git-dir", str(git_dir), "--work-tree", str(work), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "data"], check=True)
    return subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()


def lines(*objects: dict) -> bytes:
    return "".join(json.dumps(o) + "\n" for o in objects).encode()


def zipped(records: list[dict]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("outputs.json", json.dumps(records))
    return buf.getvalue()


@pytest.fixture
def mirrors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Arena-Hard (Arena-Bench v1 and Arena-Hard v0.1), FastChat (MT-Bench, Vicuna) and MMLU-Pro at one commit each."""
    def judgment(qid: str, model: str, score: float | None) -> dict:
        return {"question_id": qid, "model": model, "score": score, "turn": 1}

    weak, strong = external.ARENA_BENCH_WEAK, external.ARENA_BENCH_STRONG
    arena = commit(tmp_path, external.ARENA_HARD, {
        external.ARENA_BENCH_QUESTIONS: lines(*({"question_id": qid, "turns": [text]} for qid, text in (
            ("a1", "Explain how a B-tree keeps itself balanced on insert."), ("a2", ARENA_HARD_PROMPT + " Now."),
            ("a3", MT_BENCH_PROMPT + " Please."), ("a4", "Write a limerick about a cat.")))),
        weak[0]: lines(judgment("a1", weak[1], 4), judgment("a2", weak[1], 5), judgment("a3", weak[1], 6),
                       judgment("a4", weak[1], None)),
        strong[0]: lines(judgment("a1", strong[1], 9), judgment("a2", strong[1], 9), judgment("a3", strong[1], 9),
                         judgment("a4", strong[1], 8)),
        external.ARENA_HARD_V01: lines({"uid": "v1", "prompt": ARENA_HARD_PROMPT}),
    })
    review = {"question_id": 1, "review_id": "r1", "answer1_id": "w1", "answer2_id": "s1", "score": [3, 8]}
    fastchat = commit(tmp_path, external.FASTCHAT, {
        external.MT_BENCH: lines({"question_id": 81, "turns": [MT_BENCH_PROMPT, "Rewrite it."]}),
        external.VICUNA_QUESTIONS: lines({"question_id": 1, "text": "How can I improve my time management?",
                                          "category": "generic"},
                                         {"question_id": 2, "text": MT_BENCH_PROMPT, "category": "writing"}),
        external.VICUNA_REVIEW: lines(review, {**review, "question_id": 2, "review_id": "r2", "answer1_id": "w2",
                                               "answer2_id": "s2", "score": [7, 9]}),
        external.VICUNA_ANSWERS[0]: lines({"answer_id": "w1", "question_id": 1}, {"answer_id": "w2", "question_id": 2}),
        external.VICUNA_ANSWERS[1]: lines({"answer_id": "s1", "question_id": 1}, {"answer_id": "s2", "question_id": 2}),
    })

    def record(qid: int, src: str, pred: str, answer: str = "B", question: str = "") -> dict:
        return {"question_id": qid, "question": question or f"Question {qid}: what is the boiling point?",
                "options": ["90", "100", "110"], "answer": answer, "pred": pred, "category": "physics", "src": src}

    mmlu_pro = commit(tmp_path, external.MMLU_PRO, {
        external.MMLU_PRO_WEAK: zipped([record(1, "stemez-Physics", "A"), record(2, "ori_mmlu-physics", "B"),
                                        record(3, "scibench", "B", answer="C"), record(4, "theoremQA-Physics", "B")]),
        external.MMLU_PRO_STRONG: zipped([record(1, "stemez-Physics", "B"), record(2, "ori_mmlu-physics", "B"),
                                          record(3, "scibench", "B"), record(4, "theoremQA-Physics", "C")]),
    })
    monkeypatch.setattr(external, "ARENA_BENCH_COMMIT", arena)
    monkeypatch.setattr(external, "ARENA_HARD_V01_COMMITS", (arena,))
    monkeypatch.setattr(external, "MT_BENCH_COMMIT", fastchat)
    monkeypatch.setattr(external, "VICUNA_COMMIT", fastchat)
    monkeypatch.setattr(external, "MMLU_PRO_COMMIT", mmlu_pro)
    return tmp_path


def test_arena_bench_leaves_out_held_out_prompts_and_missing_ratings(mirrors: Path) -> None:
    rows = external.arena_bench_rows(mirrors, external.excluded_prefixes(mirrors))
    assert [(r["item_id"], r["weak"], r["strong"]) for r in rows] == [("a1", 0.4, 0.9)]
    assert rows[0]["source"] == "arena_bench_v1"


def test_vicuna_scores_are_the_review_over_ten_and_mt_bench_stays_out(mirrors: Path) -> None:
    rows = external.vicuna_rows(mirrors, external.excluded_prefixes(mirrors))
    assert [(r["item_id"], r["category"], r["weak"], r["strong"]) for r in rows] == [("01", "generic", 0.3, 0.8)]


def test_mmlu_pro_keeps_its_own_questions_with_the_same_text_for_both_models(mirrors: Path) -> None:
    rows = external.mmlu_pro_rows(mirrors, excluded=set())
    # 2 is MMLU's own question, 3 has another answer key in the strong model's run.
    assert [(r["item_id"], r["weak"], r["strong"]) for r in rows] == [("1", 0.0, 1.0), ("4", 1.0, 0.0)]
    assert rows[0]["prompt"].endswith("Options:\nA. 90\nB. 100\nC. 110")
    assert external.mmlu_pro_rows(mirrors, excluded={"Question 1: what is the boiling point?"}) == rows[1:]


def test_a_missing_clone_or_file_says_what_to_do(mirrors: Path, tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match=r"no clone of facebookresearch/cruxeval .*git clone --bare"):
        external.cruxeval_output_rows(tmp_path / "nowhere")
    with pytest.raises(SystemExit, match="lm-sys/FastChat@"):
        external.show(mirrors, external.FASTCHAT, external.VICUNA_COMMIT, "no/such/file.jsonl")


# --- the shipped data and scoring by running code ---------------------------------------------


def test_shipped_data_is_small_redistributable_and_split() -> None:
    rows = load_rows()
    assert DATA_FILE.stat().st_size < 5_000_000
    assert {r["source"] for r in rows} == {"routellm_mmlu", "routellm_gsm8k", "routellm_mtbench", "arena_hard_v2",
                                           "cruxeval_input", "cruxeval_output", "arena_bench_v1", "vicuna80",
                                           "mmlu_pro"}
    held = {r["source"] for r in rows if r["split"] == EVAL_SPLIT}
    assert {"routellm_mtbench", "routellm_gsm8k", "routellm_mmlu"} <= held
    assert all(r["split"] == EVAL_SPLIT for r in rows if r["source"] == "routellm_mtbench")
    assert {r["split"] for r in rows} == {"train", "test", "contaminated"}
    # CRUXEval's two tasks ask about the same functions: each function is in one split for both.
    crux = {(r["source"], r["item_id"]): r["split"] for r in rows if r["source"].startswith("cruxeval")}
    assert all(crux["cruxeval_input", item] == split for (source, item), split in crux.items())
    # No prompt is shipped twice under two sources (MMLU-Pro's MMLU questions are left out).
    firsts: dict[str, str] = {}
    for r in rows:
        if r["source"] != "cruxeval_output":
            assert firsts.setdefault(r["prompt"].strip()[:60], r["source"]) == r["source"], r["prompt"][:60]
    assert (DATA_FILE.parent / "SOURCES.md").read_text().count("Apache-2.0") >= 4


def test_cruxeval_generations_are_scored_by_running_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(make_data, "CHECK_TIMEOUT", 1.0)
    code = "def f(n):\n    while n == 0:\n        pass\n    return n * 2"
    right, wrong, loops, raises = "f(3)", "f(4)", "f(0)", "f('a' - 1)"
    assert make_data.pass_rate(code, "6", [right, right, wrong, loops, raises, "3"]) == pytest.approx(2 / 6)
    assert make_data.pass_rate(code, "6", ["exit(0) or f(3)", "print(f(3)) or f(3)"]) == 0.5
