"""Cold ``shardsim speed`` against cold ``shardsim plan`` on the same model, layout, GPU and engine.

    .venv/bin/python benchmarks/bench_speed.py [--runs 10]

Each command runs as a fresh process ``--runs`` times, interleaved; min and median wall time are printed, and
the difference. Goal: speed ≤ plan + 50 ms (speed plans the same request, then adds the step costs and the
steady state). Then ``review --workload example`` (every layout of every catalog cluster for two models, each
layout that fits through the speed model), ``--runs`` times: goal < 3 s. Then the figures of the example workloads.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

CASES = [
    ("8b --gpu h100 --engine vllm", "--input-tokens 1024 --output-tokens 256 --concurrency 64"),
    ("235b --tp 8 --pp 2 --engine vllm", "--input-tokens 2048 --output-tokens 512 --concurrency 128 --tpot-ms 50"),
    ("30b-a3b --tp 2 --engine sglang", "--input-tokens 1024 --output-tokens 1024 --request-rate 4"),
]


def wall(args: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=10)
    runs = parser.parse_args().runs
    exe = str(Path(sys.executable).parent / "shardsim")
    print(f"{'case':<34} {'plan min/med':>14} {'speed min/med':>15} {'speed − plan (med)':>19}")
    for common, load in CASES:
        plan_t, speed_t = [], []
        for _ in range(runs):
            plan_t.append(wall([exe, "plan", *common.split()]))
            speed_t.append(wall([exe, "speed", *common.split(), *load.split()]))
        p, s = statistics.median(plan_t), statistics.median(speed_t)
        print(f"{common:<34} {min(plan_t) * 1e3:6.0f}/{p * 1e3:5.0f} ms {min(speed_t) * 1e3:6.0f}/{s * 1e3:5.0f} ms "
              f"{(s - p) * 1e3:+15.0f} ms")
    review = [wall([exe, "review", "--workload", "example", "--json"]) for _ in range(runs)]
    print(f"{'review --workload example (speed)':<34} min {min(review):.2f} s, median {statistics.median(review):.2f} s "
          f"over {runs} runs (goal < 3 s)")
    print()
    for common, load in CASES:
        out = subprocess.run([exe, "speed", *common.split(), *load.split()], capture_output=True, text=True, check=True)
        print(f"$ shardsim speed {common} {load}")
        print("\n".join(out.stdout.splitlines()[:13]))
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
