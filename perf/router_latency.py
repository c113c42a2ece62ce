"""Decision latency of the complexity router: features + model for one prompt, after loading.

    .venv/bin/python perf/router_latency.py [--runs N]

Uses a fresh temporary BROKE_HOME: a fresh home's first decision (the shipped prior) is timed,
then training on the shipped data and caching the artifact (timed: training), then
`load_or_train` reading it back (timed: load). Then, per
prompt size (100, 2,000 and 30,000 characters; prompts cut from the shipped data's prompts,
joined, with a fixed seed), `Router.estimate` runs `--runs` times over 200 distinct prompts
after a warm-up, and p50 / p99 are reported. Also prints the artifact and shipped data sizes.

Then the same for the router as `auto` uses it, with the most labels it keeps (`labels.KEEP`, random
unit vectors: the neighbour search costs the same whatever they hold), and the time a fresh home
takes to its first decision (`learned.load` on an empty home: the shipped prior, no training).

Targets: p99 < 1 ms at 2,000 characters for the prior alone; p99 <= 10 ms for the learned router
with KEEP labels; a fresh home's first decision under 1 s. Exit status 0 on PASS, 1 on FAIL.
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

import numpy as np

from broke.router import artifact, labels, learned, model
from broke.router.artifact import router_dir
from broke.router.data import DATA_FILE, data_version, load_rows
from broke.router.local import LocalModel

SIZES = (100, 2000, 30000)
TARGET_SIZE, TARGET_P99_MS = 2000, 1.0
LEARNED_P99_MS, FIRST_DECISION_S = 10.0, 1.0
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
        learned.load(home / "fresh").estimate("say hi")
        first_s = time.perf_counter() - start
        print(f"a fresh home's first decision (shipped prior, no labels): {first_s * 1000:.0f} ms")
        model.forget_loaded()
        start = time.perf_counter()
        fitted = model.train(load_rows())
        artifact.save(home, artifact.version(data_version(DATA_FILE)), fitted)
        train_s = time.perf_counter() - start
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
        vectors = np.random.default_rng(0).standard_normal((labels.KEEP, router.vector_dims())).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        # Built directly, at the default strength: a fit on random targets would choose the prior alone.
        local = LocalModel(vectors, np.random.default_rng(1).random(labels.KEEP), np.ones(labels.KEEP),
                           tuple(map(str, range(labels.KEEP))))
        p99s = {}
        for name, estimator in (("prior alone", router), (f"learned, {labels.KEEP} labels",
                                                          learned.Learned(router, local))):
            rng = random.Random(0)
            print(f"\n{name}\n{'chars':>6} {'runs':>6} {'p50 ms':>8} {'p99 ms':>8}")
            for size in SIZES:
                prompts = make_prompts(pool, size, DISTINCT, rng)
                for prompt in prompts:  # warm-up
                    estimator.estimate(prompt)
                times = []
                for i in range(args.runs):
                    prompt = prompts[i % DISTINCT]
                    t0 = time.perf_counter()
                    estimator.estimate(prompt)
                    times.append((time.perf_counter() - t0) * 1000.0)
                p50, p99 = percentile(times, 50), percentile(times, 99)
                print(f"{size:6} {args.runs:6} {p50:8.3f} {p99:8.3f}")
                if size == TARGET_SIZE:
                    p99s[name] = p99
    finally:
        shutil.rmtree(home, ignore_errors=True)
    prior_p99, learned_p99 = p99s["prior alone"], p99s[f"learned, {labels.KEEP} labels"]
    failed = prior_p99 >= TARGET_P99_MS or learned_p99 > LEARNED_P99_MS or first_s >= FIRST_DECISION_S
    print(f"\n{'FAIL' if failed else 'PASS'}: p99 at {TARGET_SIZE} characters {prior_p99:.3f} ms for the prior "
          f"(target < {TARGET_P99_MS} ms), {learned_p99:.3f} ms learned (target <= {LEARNED_P99_MS} ms); "
          f"first decision {first_s:.2f} s (target < {FIRST_DECISION_S} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
