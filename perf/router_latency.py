"""Decision latency of the complexity router: features + model for one prompt, after loading.

    .venv/bin/python perf/router_latency.py [--runs N]

Uses a fresh temporary BROKE_HOME: the first `load_or_train` trains and caches the artifact
(timed: training), a second one after `forget_loaded` reads it back (timed: load). Then, per
prompt size (100, 2,000 and 30,000 characters; prompts cut from the shipped data's prompts,
joined, with a fixed seed), `Router.estimate` runs `--runs` times over 200 distinct prompts
after a warm-up, and p50 / p99 are reported. Also prints the artifact and shipped data sizes.

Target: p99 < 1 ms at 2,000 characters. Exit status 0 on PASS, 1 on FAIL.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from broke.router import model
from broke.router.artifact import router_dir
from broke.router.data import DATA_FILE, load_rows

SIZES = (100, 2000, 30000)
TARGET_SIZE, TARGET_P99_MS = 2000, 1.0
DISTINCT = 200


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


def make_prompts(pool: list[str], size: int, count: int, rng: random.Random) -> list[str]:
    """`count` prompts of exactly `size` characters, each a run of random pool prompts."""
    out = []
    for _ in range(count):
        parts: list[str] = []
        total = 0
        while total < size:
            parts.append(rng.choice(pool))
            total += len(parts[-1]) + 2
        out.append("\n\n".join(parts)[:size])
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000, help="timed decisions per size (default 2000)")
    args = parser.parse_args()

    home = Path(tempfile.mkdtemp(prefix="broke-router-bench-"))
    try:
        os.environ["BROKE_HOME"] = str(home)
        start = time.perf_counter()
        model.load_or_train(home)
        train_s = time.perf_counter() - start
        model.forget_loaded()
        start = time.perf_counter()
        router = model.load_or_train(home)
        load_s = time.perf_counter() - start
        folder = router_dir(home)
        print(f"training (incl. reading data, writing the artifact): {train_s:.2f} s; "
              f"loading the cached artifact: {load_s * 1000:.0f} ms")
        print(f"artifact: model.npz {(folder / 'model.npz').stat().st_size / 1e6:.2f} MB, "
              f"model.json {(folder / 'model.json').stat().st_size} B; "
              f"shipped data: {DATA_FILE.stat().st_size / 1e6:.2f} MB")

        pool = [r["prompt"] for r in load_rows()]
        rng = random.Random(0)
        failed = False
        print(f"\n{'chars':>6} {'runs':>6} {'p50 ms':>8} {'p99 ms':>8}")
        for size in SIZES:
            prompts = make_prompts(pool, size, DISTINCT, rng)
            for prompt in prompts:  # warm-up
                router.estimate(prompt)
            times = []
            for i in range(args.runs):
                prompt = prompts[i % DISTINCT]
                t0 = time.perf_counter()
                router.estimate(prompt)
                times.append((time.perf_counter() - t0) * 1000.0)
            p50, p99 = percentile(times, 50), percentile(times, 99)
            print(f"{size:6} {args.runs:6} {p50:8.3f} {p99:8.3f}")
            if size == TARGET_SIZE:
                failed = p99 >= TARGET_P99_MS
    finally:
        shutil.rmtree(home, ignore_errors=True)
    print(f"\n{'FAIL' if failed else 'PASS'}: p99 at {TARGET_SIZE} characters (target < {TARGET_P99_MS} ms)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
