"""Build the shipped router training set, `broke/router/data/routing.jsonl.gz` (dev only, not in the wheel).

Rebuild with (from the checkout root):

    .venv/bin/python -m tools.router_data.build --src ../shared/data/routing --cruxeval CRUXEVAL --mirrors MIRRORS

MIRRORS holds bare clones named owner+name (`external.git_dir`).

The rows come from `make_data` (the routing data in --src: `prompts.csv` and `scores.csv`; with
--cruxeval, CRUXEval's input prediction from a checkout of facebookresearch/cruxeval at
`make_data.CRUXEVAL_COMMIT`) and, with --mirrors, from `external` (the outcome sets read from public
git history). `SOURCES.md` names every source, its commit and licence. The output is byte-identical
for the same input.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from broke.paths import PROJECT_ROOT
from broke.router.data import DATA_FILE, Row
from tools.router_data import external
from tools.router_data.make_data import (
    CRUXEVAL_COMMIT,
    SAME_PREFIX,
    cruxeval_rows,
    routing_rows,
    split_for,
    without_mt_bench_repeats,
    write,
)


def derive(src: Path, cruxeval: Path | None = None, mirrors: Path | None = None) -> list[Row]:
    """The shipped rows, sorted by source and item_id (CRUXEval's input prediction only when
    `cruxeval` is given, the `external` sources only with `mirrors`)."""
    rows = routing_rows(src)
    if cruxeval is not None:
        rows += cruxeval_rows(cruxeval)
    if mirrors is not None:
        shipped = {row["prompt"].strip()[:SAME_PREFIX] for row in rows}
        for row in external.rows(mirrors, shipped):
            row["split"] = split_for(row["source"], row["item_id"], "")
            rows.append(row)
    rows.sort(key=lambda r: (r["source"], r["item_id"]))
    return without_mt_bench_repeats(rows)


def main(argv: list[str] | None = None) -> int:
    """Parse the command line, derive the rows, write them and print the count per source and split."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=PROJECT_ROOT.parent / "shared" / "data" / "routing",
                        help="directory with prompts.csv and scores.csv")
    parser.add_argument("--cruxeval", type=Path, default=None,
                        help=f"checkout of facebookresearch/cruxeval at {CRUXEVAL_COMMIT[:8]}")
    parser.add_argument("--mirrors", type=Path, default=None,
                        help="directory of bare clones named owner+name, for the sources read from git history")
    parser.add_argument("--out", type=Path, default=DATA_FILE, help=f"output file (default {DATA_FILE})")
    args = parser.parse_args(argv)
    rows = derive(args.src, args.cruxeval, args.mirrors)
    write(rows, args.out)
    counts: dict[tuple[str, str], int] = {}
    for row in rows:
        counts[row["source"], row["split"]] = counts.get((row["source"], row["split"]), 0) + 1
    for (source, split), n in sorted(counts.items()):
        print(f"{source:18} {split:13} {n:6}")
    print(f"wrote {args.out} ({args.out.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
