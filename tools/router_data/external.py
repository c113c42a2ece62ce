"""Outcome sets read from public git history: each source's prompts and two models' scores, at a pinned commit.

Every file is read with `git show COMMIT:PATH` from a bare clone (so files deleted upstream since
still count), and every source is checked against the prompts that must stay out of the training
data: Arena-Hard v0.1 (every stored version of its questions) and MT-Bench (all held out here).
`build --mirrors DIR` calls these; see `SOURCES.md` for licences and the models behind each source.
Dev only (not in the wheel): it reads git mirrors and runs model-written code (`make_data.pass_rate`).
"""
from __future__ import annotations

import io
import json
import subprocess
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from broke.router.data import Row
from tools.router_data.make_data import SAME_PREFIX, pass_rate

ARENA_HARD = "lmarena/arena-hard-auto"
FASTCHAT = "lm-sys/FastChat"
CRUXEVAL = "facebookresearch/cruxeval"
#: A fork of CRUXEval (same MIT licence) that holds DeepSeek-Chat's output-prediction generations.
CRUXEVAL_FORK = "XiangJinyu/cruxeval"
MMLU_PRO = "TIGER-AI-Lab/MMLU-Pro"

#: Arena-Bench v1: 300 Chatbot Arena prompts (the precursor of Arena-Hard), GPT-4 rating each answer 1..10
#: against a GPT-4 reference answer ("add mixtral", 2023-12-12; removed from the tree later).
ARENA_BENCH_COMMIT = "ac4ad9a93a452cb256e83fe6d89957676c64f19b"
ARENA_BENCH_QUESTIONS = "data/arena-bench-v1/question.jsonl"
ARENA_BENCH_WEAK = ("data/arena-bench-v1/model_judgment/Mixtral-8x7B-Instruct-v0.1.jsonl",
                    "mistralai/Mixtral-8x7B-Instruct-v0.1")
ARENA_BENCH_STRONG = ("data/arena-bench-v1/model_judgment/gpt-4-turbo.jsonl", "gpt-4-1106-preview")
#: Every stored version of Arena-Hard v0.1's questions: none of them may be trained on.
ARENA_HARD_V01_COMMITS = ("6c82720015d5da7b8795b809b91f63ef74abbf6a", "d989e6fd910d521dc8e9d12893c405e335fde51a",
                          "900183d0e8783b180ddb34e3fa952463f12e134f", "196f6b826783b3da7310e361a805fa36f0be83f3")
ARENA_HARD_V01 = "data/arena-hard-v0.1/question.jsonl"
MT_BENCH_COMMIT = "0e6d3e4beaab66f4d3f93db72541a4abab8af28d"
MT_BENCH = "fastchat/llm_judge/data/mt_bench/question.jsonl"
#: The 80 Vicuna questions and GPT-4's pairwise review (1..10 each) of Alpaca-13B and Vicuna-13B; the
#: parent of the commit that deleted fastchat/eval/.
VICUNA_COMMIT = "69d085eadab8e9fcf831a97e17e132658c3d2272"
VICUNA_QUESTIONS = "fastchat/eval/table/question.jsonl"
VICUNA_REVIEW = "fastchat/eval/table/review/vicuna-13b_20230322-clean-lang/review_alpaca-13b_vicuna-13b.jsonl"
VICUNA_ANSWERS = ("fastchat/eval/table/answer/answer_alpaca-13b.jsonl",
                  "fastchat/eval/table/answer/answer_vicuna-13b.jsonl")
#: CRUXEval output prediction: Code Llama 7B's 10 scored generations per problem (upstream) and
#: DeepSeek-Chat's one generation per problem (the fork), which is scored here by running it.
CRUXEVAL_COMMIT = "190faf16d175b5847b0af05d937872b1fb395942"
CRUXEVAL_FORK_COMMIT = "eab3380d7c2e377c1c49a8e14e37bad12e479d14"
CRUXEVAL_PROBLEMS = "data/cruxeval.jsonl"
CRUXEVAL_OUTPUT_WEAK = "samples/evaluation_results/sample_scored_codellama-7b_temp0.2_output.json"
CRUXEVAL_OUTPUT_STRONG = "model_generations/deepseek-chat_temp0.2_output/generations.json"
CRUXEVAL_OUTPUT_PROMPT = ("Execute the Python function f on the given input and give the output.\n\n"
                          "{code}\nassert f({input}) == ??")
#: MMLU-Pro's released model outputs (5-shot chain of thought): weak Mixtral-8x7B-Instruct (RouteLLM's weak
#: model), strong Gemini-1.5-Pro-002. Questions taken from MMLU (`src` ori_mmlu-*) are left out: they are
#: the shipped routellm_mmlu's questions with more options.
MMLU_PRO_COMMIT = "f418b116db00b065c2aea046518d8fcf74d39872"
MMLU_PRO_WEAK = "eval_results/model_outputs_Mixtral-8x7B-Instruct-v0.1_5shots.zip"
MMLU_PRO_STRONG = "eval_results/model_outputs_gemini-1.5-pro-002_5shots.zip"
OPTION_LETTERS = "ABCDEFGHIJ"
#: The fork's API cut the stop string "[/ANSWER]" short: 792 of the 800 generations end with this.
TRUNCATED_STOP = "[/ANSWER"


def git_dir(mirrors: Path, repo: str) -> Path:
    """The bare clone of `repo` (owner/name) under `mirrors`: `owner+name` or `owner+name/repo`."""
    base = mirrors / repo.replace("/", "+")
    for candidate in (base, base / "repo"):
        if (candidate / "HEAD").is_file():
            return candidate
    raise SystemExit(f"no clone of {repo} under {mirrors} (expected {base}): "
                     f"git clone --bare https://github.com/{repo} {base}")


def show_bytes(mirrors: Path, repo: str, commit: str, path: str) -> bytes:
    """The bytes of `path` at `commit` of `repo`."""
    done = subprocess.run(["git", "--git-dir", str(git_dir(mirrors, repo)), "show", f"{commit}:{path}"],
                          capture_output=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{repo}@{commit[:8]}:{path}: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout


def show(mirrors: Path, repo: str, commit: str, path: str) -> str:
    """The text of `path` at `commit` of `repo`."""
    return show_bytes(mirrors, repo, commit, path).decode("utf-8")


def jsonl(text: str) -> list[dict]:
    """The JSON objects of a JSON-lines text."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def excluded_prefixes(mirrors: Path) -> set[str]:
    """First SAME_PREFIX characters of every Arena-Hard v0.1 question and MT-Bench first turn."""
    out = {q["turns"][0].strip()[:SAME_PREFIX] for q in jsonl(show(mirrors, FASTCHAT, MT_BENCH_COMMIT, MT_BENCH))}
    for commit in ARENA_HARD_V01_COMMITS:
        for q in jsonl(show(mirrors, ARENA_HARD, commit, ARENA_HARD_V01)):
            text = q["turns"][0]["content"] if "turns" in q else q["prompt"]
            out.add(text.strip()[:SAME_PREFIX])
    return out


def _judge_scores(mirrors: Path, path: str, model: str) -> dict[str, float]:
    """question_id -> rating / 10 of one Arena-Bench judgment file (ratings the judge failed to give are left out)."""
    out = {}
    for r in jsonl(show(mirrors, ARENA_HARD, ARENA_BENCH_COMMIT, path)):
        if r["model"] != model:
            raise SystemExit(f"{path}: judgment of {r['model']}, expected {model}")
        if r["score"] is not None and 1 <= r["score"] <= 10:
            out[r["question_id"]] = r["score"] / 10
    return out


def arena_bench_rows(mirrors: Path, excluded: set[str]) -> list[Row]:
    """Arena-Bench v1: weak = Mixtral-8x7B-Instruct, strong = GPT-4-1106-preview (the RouteLLM pair)."""
    weak = _judge_scores(mirrors, *ARENA_BENCH_WEAK)
    strong = _judge_scores(mirrors, *ARENA_BENCH_STRONG)
    return [{"source": "arena_bench_v1", "item_id": q["question_id"], "prompt": q["turns"][0], "category": "",
             "split": "", "weak": weak[q["question_id"]], "strong": strong[q["question_id"]]}
            for q in jsonl(show(mirrors, ARENA_HARD, ARENA_BENCH_COMMIT, ARENA_BENCH_QUESTIONS))
            if q["turns"][0].strip()[:SAME_PREFIX] not in excluded
            and q["question_id"] in weak and q["question_id"] in strong]


def vicuna_rows(mirrors: Path, excluded: set[str]) -> list[Row]:
    """The Vicuna questions: weak = Alpaca-13B, strong = Vicuna-13B, as GPT-4 reviewed both answers."""
    def read(path: str) -> list[dict]:
        return jsonl(show(mirrors, FASTCHAT, VICUNA_COMMIT, path))

    questions = {q["question_id"]: q for q in read(VICUNA_QUESTIONS)}
    weak_answers, strong_answers = ({a["answer_id"]: a["question_id"] for a in read(p)} for p in VICUNA_ANSWERS)
    rows: list[Row] = []
    for review in read(VICUNA_REVIEW):
        qid = review["question_id"]
        if weak_answers[review["answer1_id"]] != qid or strong_answers[review["answer2_id"]] != qid:
            raise SystemExit(f"{VICUNA_REVIEW}: review {review['review_id']} is not of Alpaca's and Vicuna's answers")
        question = questions[qid]
        if question["text"].strip()[:SAME_PREFIX] in excluded:
            continue
        weak, strong = review["score"]
        rows.append({"source": "vicuna80", "item_id": f"{qid:02d}", "prompt": question["text"],
                     "category": question["category"], "split": "", "weak": weak / 10, "strong": strong / 10})
    return rows


def cruxeval_output_rows(mirrors: Path) -> list[Row]:
    """CRUXEval output prediction: weak = Code Llama 7B's share of its 10 generations CRUXEval scored
    correct, strong = whether DeepSeek-Chat's one generation gives the output (run here)."""
    problems = jsonl(show(mirrors, CRUXEVAL, CRUXEVAL_COMMIT, CRUXEVAL_PROBLEMS))
    weak = json.loads(show(mirrors, CRUXEVAL, CRUXEVAL_COMMIT, CRUXEVAL_OUTPUT_WEAK))["raw_scored_generations"]
    strong = json.loads(show(mirrors, CRUXEVAL_FORK, CRUXEVAL_FORK_COMMIT, CRUXEVAL_OUTPUT_STRONG))

    def rate(problem: dict) -> float:
        """A generation that calls f on the input is not a prediction (CRUXEval's output scoring)."""
        generations = [g.rstrip().removesuffix(TRUNCATED_STOP).rstrip() for g in strong[problem["id"]]]
        return pass_rate(problem["code"], problem["output"], generations,
                         may_count=lambda g: f"f({problem['input']})" not in g)

    with ThreadPoolExecutor(max_workers=4) as pool:
        rates = list(pool.map(rate, problems))
    return [{"source": "cruxeval_output", "item_id": p["id"],
             "prompt": CRUXEVAL_OUTPUT_PROMPT.format(code=p["code"], input=p["input"]),
             "category": "output_prediction", "split": "",
             "weak": round(sum(weak[p["id"]]) / len(weak[p["id"]]), 6), "strong": round(r, 6)}
            for p, r in zip(problems, rates, strict=False)]


def _mmlu_pro_outputs(mirrors: Path, path: str) -> dict[str, dict]:
    """question_id -> MMLU-Pro's record of one model's answer (the zip's one JSON list)."""
    with zipfile.ZipFile(io.BytesIO(show_bytes(mirrors, MMLU_PRO, MMLU_PRO_COMMIT, path))) as archive:
        (name,) = archive.namelist()
        return {str(r["question_id"]): r for r in json.loads(archive.read(name))}


def mmlu_pro_rows(mirrors: Path, excluded: set[str]) -> list[Row]:
    """MMLU-Pro's questions not taken from MMLU: 1 where the model's extracted answer is right, else 0.
    The 18 questions MMLU-Pro corrected between the two runs (text, options or answer differ) are left out."""
    weak = _mmlu_pro_outputs(mirrors, MMLU_PRO_WEAK)
    strong = _mmlu_pro_outputs(mirrors, MMLU_PRO_STRONG)
    rows: list[Row] = []
    for qid, w in weak.items():
        s = strong.get(qid)
        if (s is None or w["src"].startswith("ori_mmlu") or w["question"].strip()[:SAME_PREFIX] in excluded
                or (w["question"], w["options"], w["answer"]) != (s["question"], s["options"], s["answer"])):
            continue
        options = "\n".join(f"{OPTION_LETTERS[i]}. {o}" for i, o in enumerate(w["options"]))
        rows.append({"source": "mmlu_pro", "item_id": qid, "prompt": f"Question: {w['question']}\nOptions:\n{options}",
                     "category": w["category"], "split": "",
                     "weak": float(w["pred"] == w["answer"]), "strong": float(s["pred"] == s["answer"])})
    return rows


def rows(mirrors: Path, shipped: set[str]) -> list[Row]:
    """Every source read from git history (splits left for `build` to assign); `shipped` holds the
    first SAME_PREFIX characters of the other shipped prompts, which no source here may repeat."""
    excluded = excluded_prefixes(mirrors) | shipped
    return (arena_bench_rows(mirrors, excluded) + vicuna_rows(mirrors, excluded) + cruxeval_output_rows(mirrors)
            + mmlu_pro_rows(mirrors, excluded))
