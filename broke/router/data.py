"""The shipped router training set: rows, splits and the data version."""
from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from typing import TypedDict

DATA_FILE = Path(__file__).resolve().parent / "data" / "routing.jsonl.gz"
#: Splits the model is fitted on; `contaminated` rows (leaked into RouteLLM's own training) are never evaluated.
TRAIN_SPLITS = ("train", "contaminated")
EVAL_SPLIT = "test"
#: Model selection never looks at EVAL_SPLIT: it uses folds of the `train` rows (see validation_fold).
VALIDATION_FOLDS = 5
#: Sources that ask about another source's items (CRUXEval's output prediction uses the 800 functions of
#: its input prediction): they share that source's split, and leave-one-source-out leaves them out together.
SAME_ITEMS_AS = {"cruxeval_output": "cruxeval_input"}


class Row(TypedDict):
    """One prompt; `weak`/`strong` are the two models' scores (0..1), None where the source has none."""

    source: str
    item_id: str
    prompt: str
    category: str
    split: str
    weak: float | None
    strong: float | None


def load_rows(path: Path = DATA_FILE) -> list[Row]:
    """All rows of a data file written by `tools/router_data/build.py`."""
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def data_version(path: Path = DATA_FILE) -> str:
    """sha256 of the data file: a model trained on other data is stale."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def has_outcome(row: Row) -> bool:
    """Whether the row carries both models' scores."""
    return row["weak"] is not None and row["strong"] is not None


def family(source: str) -> str:
    """The source whose items `source` asks about (itself for most)."""
    return SAME_ITEMS_AS.get(source, source)


def validation_fold(row: Row, salt: str = "validation") -> int:
    """The fold (0..VALIDATION_FOLDS-1) of a training row for model selection, by a stable hash of
    salt/source/item_id; fold 0 of the default salt is "the validation split" benchmarks report.
    Other salts give other fold assignments (repeated cross-validation)."""
    digest = hashlib.sha256(f"{salt}/{row['source']}/{row['item_id']}".encode()).digest()
    return int.from_bytes(digest[:8], "big") * VALIDATION_FOLDS >> 64


def reference_prompts(path: Path = DATA_FILE) -> list[str]:
    """A default calibration set: the held-out prompts of every source (chat, math, multiple choice)."""
    return [r["prompt"] for r in load_rows(path) if r["split"] == EVAL_SPLIT]
