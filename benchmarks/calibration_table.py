"""The held-out table of the README: `shardsim calibrate` on tests/data/measurements.jsonl, per set and rule set.

Run: .venv/bin/python benchmarks/calibration_table.py
"""

from __future__ import annotations

import json
from pathlib import Path

from shardsim.engines.calibration import calibrate, summary

DB = Path(__file__).resolve().parent.parent / "tests" / "data" / "measurements.jsonl"


def cell(group: dict, name: str) -> str:
    f = group["figures"].get(name)
    return f"{f['within_bound']}/{f['n']} (max {f['max_abs_error_pct']:.1f} %)" if f else "—"


def main() -> None:
    rows = [json.loads(line) for line in DB.read_text().splitlines() if line.strip()]
    results = calibrate(DB)
    s = summary(results)
    held = [r for r in rows if r["set"] == "held_out"]
    print(f"database: {len(rows)} rows, {sum(r['set'] == 'fitted' for r in rows)} fitted, {len(held)} held-out "
          f"({sum(r.get('evaluate', True) for r in held)} evaluated, {sum(not r.get('evaluate', True) for r in held)} "
          f"left out with their reason), {len({r['source'] for r in rows})} sources\n")
    print("| rows | set / rule set | start verdict right | vLLM KV tokens within 3 % | model loading within 0.5 % "
          "| SGLang #tokens within 3 % |")
    print("|---:|---|---:|---:|---:|---:|")
    groups = [("fitted (in-sample)", s["fitted"]), ("held-out, all", s["held_out"])]
    groups += [(f"held-out · {k}", v) for k, v in s["held_out_by_rules"].items()]
    for label, g in groups:
        print(f"| {g['rows']} | {label} | {g['start_verdicts_right']}/{g['rows']} | {cell(g, 'KV cache tokens')} | "
              f"{cell(g, 'weights (model loading)')} | {cell(g, 'KV pool #tokens')} |")


if __name__ == "__main__":
    main()
