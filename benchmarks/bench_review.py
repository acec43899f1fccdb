"""Capacity-review speed: all 8 presets × every catalog cluster × every valid layout.

    .venv/bin/python benchmarks/bench_review.py [--runs 5] [--engine none|vllm|both]

1. CLI wall: ``shardsim review --model all --engine E --json`` as a fresh process (imports, catalog parsing,
   layout enumeration, scoring, the shown options' largest context/concurrency, JSON), ``--runs`` times; min and
   median. Goal: < 2 s on the 2-core dev machine.
2. In-process, fresh caches: the review alone (``shardsim.review.review``), split into scoring and finishing the
   shown options.
Both print the number of (cluster, layout) pairs evaluated.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def cli_wall(engine: str, runs: int) -> tuple[list[float], dict]:
    exe = Path(sys.executable).parent / "shardsim"
    times, doc = [], {}
    for _ in range(runs):
        t0 = time.perf_counter()
        p = subprocess.run([str(exe), "review", "--model", "all", "--engine", engine, "--json"], check=True,
                           capture_output=True, text=True)
        times.append(time.perf_counter() - t0)
        doc = json.loads(p.stdout)
    return times, doc


def in_process(engine: str) -> dict:
    from shardsim.capacity.records import ReviewRequest
    from shardsim.capacity.review import review
    from shardsim.capacity.workload import BASE_PRESETS, ModelLoad, load_catalog
    from shardsim.core.memory import activations, weights
    from shardsim.engines import vllm  # noqa: F401  (import cost is not the review's)
    from shardsim.presets import get_preset

    weights.weight_model.cache_clear()
    activations._PEAK_MEMO.clear()
    t0 = time.perf_counter()
    clusters = load_catalog()
    loads = [(get_preset(p), ModelLoad(model=p)) for p in BASE_PRESETS]
    t1 = time.perf_counter()
    rv = review(ReviewRequest(tuple(loads), tuple(clusters), engine=engine))
    t2 = time.perf_counter()
    rv.finish(10, 3)
    t3 = time.perf_counter()
    return {"clusters": len(clusters), "evaluated": rv.evaluated, "setup_s": t1 - t0, "score_s": t2 - t1,
            "finish_s": t3 - t2, "fitting": sum(len(m.fitting) for m in rv.models)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--engine", choices=("none", "vllm", "both"), default="both")
    args = ap.parse_args()
    engines = ("none", "vllm") if args.engine == "both" else (args.engine,)
    for engine in engines:
        times, doc = cli_wall(engine, args.runs)
        print(f"engine {engine}: 'shardsim review --model all' (8 presets × {len(doc['clusters'])} clusters × every "
              f"layout): {doc['evaluated']:,} layouts evaluated · CLI wall min {min(times):.3f} s, median "
              f"{statistics.median(times):.3f} s over {args.runs} runs (goal < 2 s)")
        r = in_process(engine)
        print(f"engine {engine}: in-process, fresh caches: {r['evaluated']:,} layouts scored in {r['score_s']:.3f} s "
              f"({r['evaluated'] / r['score_s']:,.0f}/s), shown options finished in {r['finish_s']:.3f} s, catalog and "
              f"presets loaded in {r['setup_s']:.3f} s")


if __name__ == "__main__":
    main()
