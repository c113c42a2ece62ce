"""Does broke's decode speed agree with mlx-lm's own measurement of the same model on this machine?

    .venv/bin/python perf/bench_agreement.py [--runs N] [--layers 2,24]

For each tiny model (made by `make_tiny`, one per --layers value): broke's figure is the decode
tokens/s `benchmark-sequential` records for the code-generation prompt (median over runs, measured
through the model's own mlx_lm.server worker, after a warm-up; median over
runs). mlx-lm's figure is the `generation_tps` that `python -m mlx_lm.benchmark` reports (after
its warm-up) for a prompt as long as broke's and the same number of generated tokens. The two
alternate round by round, so both see the same load on the machine. Target: within 10%. The exit status
is 0 only when every model agrees.
"""
from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

TARGET = 0.10
AVERAGES = re.compile(r"Averages:.*generation_tps=([\d.]+)")


def mlx_lm_decode(model_dir: Path, prompt_tokens: int, generation_tokens: int, trials: int) -> float:
    """mlx_lm.benchmark's own decode tokens/s (its average over `trials` after its warm-up)."""
    out = subprocess.run([sys.executable, "-m", "mlx_lm.benchmark", "--model", str(model_dir),
                          "-p", str(prompt_tokens), "-g", str(generation_tokens), "-n", str(trials)],
                         capture_output=True, text=True, check=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}).stdout
    found = AVERAGES.search(out)
    if not found:
        raise SystemExit(f"mlx_lm.benchmark printed no averages:\n{out[-500:]}")
    return float(found.group(1))


def broke_decode(home: Path, name: str, runs: int) -> tuple[float, int, int]:
    """broke's decode tokens/s (median), prompt tokens and generated tokens for the quick suite's code prompt."""
    from broke.bench.sequential import Target, benchmark
    from broke.state.store import StateStore

    state = StateStore(home).load()
    outcome = benchmark(home, state, [Target(f"mlx/{name}", "worker")], suite_name="quick", runs=runs)
    model = outcome.record["models"][0]
    if model["errors"]:
        raise SystemExit(f"benchmark errors for {name}: {model['errors']}")
    code = next(p for p in model["prompts"] if p["kind"] == "code")
    return (code["decode_tps"]["median"], round(code["prompt_tokens"]["median"]),
            round(code["completion_tokens"]["median"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--layers", default="2,24", help="Comma-separated layer counts of the tiny models.")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "home"
        os.environ["BROKE_HOME"] = str(home)
        from broke import changes
        from broke.local.tiny import make_tiny
        from broke.state.store import StateStore

        rows, agree = [], True
        for layers in (int(n) for n in args.layers.split(",")):
            name = f"tiny-{layers}l"
            directory = make_tiny(Path(tmp) / name, seed=layers, layers=layers)
            changes.add_local_model(StateStore(home), name, str(directory))
            ours_runs, theirs_runs = [], []
            for _ in range(args.runs):  # interleaved, so both see the same machine load
                ours, prompt_tokens, generated = broke_decode(home, name, 1)
                ours_runs.append(ours)
                theirs_runs.append(mlx_lm_decode(directory, prompt_tokens, generated, 1))
            ours, theirs = statistics.median(ours_runs), statistics.median(theirs_runs)
            gap = statistics.median(a / b - 1 for a, b in zip(ours_runs, theirs_runs, strict=False))
            agree &= abs(gap) <= TARGET
            rows.append((name, ours, theirs, gap))
    print(f"decode tokens/s, code prompt, {args.runs} interleaved rounds (medians; gap: median of the rounds' "
          f"gaps); target: within {TARGET:.0%}")
    print(f"{'model':12} {'broke':>10} {'mlx-lm':>10} {'gap':>8}  verdict")
    for name, ours, theirs, gap in rows:
        verdict = "PASS" if abs(gap) <= TARGET else "FAIL"
        print(f"{name:12} {ours:10.1f} {theirs:10.1f} {gap:+8.1%}  {verdict}")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
