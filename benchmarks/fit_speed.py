"""Fit the speed model's efficiencies and overheads to the fitted rows of the serving benchmarks, and print the
table to write into ``shardsim/speed/fitted.py`` and the held-out bands for ``shardsim/speed/bands.py``.

    .venv/bin/python benchmarks/fit_speed.py [PATH]     # default: shardsim/speed/data/serving_benchmarks.jsonl

Only rows with ``"split": "fitted"`` enter the fit (``speed.fit``: deterministic profile and coordinate search); per engine
with at least ``fitted.MIN_ROWS`` of them, and all engines together ("*"). The held-out errors are then computed
with the values as printed (rounded as the table holds them), as ``shardsim calibrate --speed`` will.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _value(efficiency: float | None) -> str:
    return "None" if efficiency is None else f"{efficiency:.2f}"


def main(path: str) -> int:
    from shardsim.speed import fit
    from shardsim.speed.calibration import calibrate, held_out_bands, read_rows, summary
    from shardsim.speed.fitted import FITTED, MIN_ROWS

    t0 = time.perf_counter()
    rows = [r for r in read_rows(path) if r.split == "fitted"]
    ready, skipped = fit.prepare_rows(rows)
    for row_id, why in skipped:
        print(f"skipped {row_id}: {why}")
    groups = {"*": ready}
    for engine in sorted({p.row.engine.lower() for p in ready}):
        mine = [p for p in ready if p.row.engine.lower() == engine]
        if len(mine) >= MIN_ROWS:
            groups[engine] = mine
    print("FITTED: tuple[SpeedFit, ...] = (")
    for engine, group in groups.items():
        eff, value = fit.fit(group, also_from=tuple(f.efficiency() for f in FITTED if f.engine == engine))
        ids = tuple(p.row.id for p in group)
        print(f"    SpeedFit({engine!r}, {eff.compute:.2f}, {eff.memory:.2f}, {eff.step_overhead_s * 1e3:.1f}, "
              f"{eff.ttft_overhead_s * 1e3:.0f}, {eff.seq_overhead_s * 1e6:.0f}, {eff.layer_overhead_s * 1e6:.0f}, "
              f"{eff.moe_layer_overhead_s * 1e6:.0f}, {ids!r},")
        print(f"             'profile over memory efficiency and coordinate search, and a search from the previous values (speed.fit): least sum of squared log errors {value:.4f} over "
              f"{len(group)} rows', {_value(eff.fp8_speedup)}),")
    print(")")
    print(f"# fit took {time.perf_counter() - t0:.1f} s")
    print("# with the table as written (re-run after editing shardsim/speed/fitted.py):")
    results = calibrate(path)
    print("HELD_OUT =", json.dumps(held_out_bands(results), indent=1))
    for s in summary(results):
        print(json.dumps(s))
    for r in results:
        if r.error:
            print(f"# not modelled {r.id}: {r.error}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else str(ROOT / "shardsim" / "speed" / "data" /
                                                            "serving_benchmarks.jsonl")))
