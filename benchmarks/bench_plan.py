"""Planner speed: cold CLI wall time and in-process layouts per second.

    .venv/bin/python benchmarks/bench_plan.py [--runs 10] [--max-world 64]

1. Cold CLI: ``shardsim plan 235b --tp 8 --pp 2`` as a fresh process, ``--runs`` times; min and median wall.
   Goal: < 0.3 s on the 2-core dev machine.
2. In-process: every valid layout (tp, pp, dp, ep; ZeRO off) of all 8 bf16 presets on up to ``--max-world`` GPUs,
   each scored at several (context, batch) workloads: the peak rank's total bytes via ``Planner.peak_total``.
   Reported twice: *cold* (fresh caches, each layout sized for the first time) and *warm* (sizes memoised,
   only the workload varies). Goal: ≥ 100,000 layouts/s.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PRESETS = ["0.6b", "1.7b", "4b", "8b", "14b", "32b", "30b-a3b", "235b"]
WORKLOADS = [(8192, 1), (32768, 1), (8192, 16), (2048, 64)]


def cold_cli(runs: int) -> list[float]:
    exe = Path(sys.executable).parent / "shardsim"
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run([str(exe), "plan", "235b", "--tp", "8", "--pp", "2"], check=True, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - t0)
    return times


def layouts_per_second(max_world: int) -> dict:
    from shardsim.core.layout import Layout, enumerate_layouts
    from shardsim.core.memory import weights
    from shardsim.core.plan import Planner, Workload
    from shardsim.presets import get_preset

    weights.weight_model.cache_clear()
    specs = [get_preset(p) for p in PRESETS]
    t0 = time.perf_counter()
    jobs = [(spec, enumerate_layouts(spec, max_world)) for spec in specs]
    t_enum = time.perf_counter() - t0
    n_layouts = sum(len(lays) for _, lays in jobs)

    def score_all() -> tuple[int, float]:
        n, start = 0, time.perf_counter()
        for spec, lays in jobs:
            base = Planner(spec, Layout(), Workload())
            for lay in lays:
                planner = base.with_layout(lay)
                for context, batch in WORKLOADS:
                    planner.peak_total(context, batch)
                    n += 1
        return n, time.perf_counter() - start

    n_cold, t_cold = score_all()
    n_warm, t_warm = score_all()
    return {"layouts": n_layouts, "enumerate_s": t_enum, "evaluations": n_cold,
            "cold_s": t_cold, "cold_per_s": n_cold / t_cold, "warm_s": t_warm, "warm_per_s": n_warm / t_warm}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--max-world", type=int, default=64)
    args = ap.parse_args()
    times = cold_cli(args.runs)
    print(f"cold CLI 'shardsim plan 235b --tp 8 --pp 2': min {min(times):.3f} s, median {statistics.median(times):.3f} s "
          f"over {args.runs} runs (goal < 0.3 s)")
    r = layouts_per_second(args.max_world)
    print(f"layouts: {r['layouts']:,} valid layouts of {len(PRESETS)} presets on ≤ {args.max_world} GPUs "
          f"(enumerated and validated in {r['enumerate_s']:.2f} s)")
    print(f"cold: {r['evaluations']:,} layout × workload evaluations in {r['cold_s']:.2f} s = {r['cold_per_s']:,.0f}/s")
    print(f"warm: {r['evaluations']:,} evaluations in {r['warm_s']:.2f} s = {r['warm_per_s']:,.0f}/s (goal ≥ 100,000/s)")


if __name__ == "__main__":
    main()
