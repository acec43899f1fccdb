"""``shardsim calibrate --speed`` for people: each row's predicted vs measured TTFT, TPOT and output tokens/s, then
the errors per split, engine and GPU (median, p90, worst row). JSON: ``speed_calibration_json``."""

from __future__ import annotations

NAMES = {"ttft": "TTFT", "tpot": "TPOT", "throughput": "out tok/s"}


def _cell(figure) -> str:
    if figure is None:
        return "—"
    return f"{figure.predicted:,.4g}/{figure.measured:,.4g} {figure.error * 100:+.0f}%"


def speed_calibration_lines(results, summary, targets: dict) -> list[str]:
    out = ["row · split: predicted/measured error — TTFT ms | TPOT ms | output tok/s"]
    for r in results:
        if r.error:
            out.append(f"{r.id} · {r.split}: not modelled: {r.error}")
            continue
        cells = " | ".join(_cell(r.figure(m)) for m in ("ttft", "tpot", "throughput"))
        out.append(f"{r.id} · {r.split}: {cells}")
    out += ["", "errors |predicted − measured| / measured: median, p90, worst (row)"]
    for s in summary:
        publishers = f" ({', '.join(s['publishers'])})" if s.get("publishers") else ""
        out.append(f"{s['split']} · {s['engine']} · {'all GPUs' if s['gpu'] == '*' else s['gpu']} · {s['rows']} rows"
                   f"{publishers}")
        for metric, name in NAMES.items():
            e = s[metric]
            if e is None:
                continue
            goal = f" (goal {targets[metric] * 100:.0f} %)" if s["split"] == "held_out" and s["gpu"] == "*" else ""
            out.append(f"  {name:<9} {e['median'] * 100:5.1f} % median{goal}, {e['p90'] * 100:5.1f} % p90, "
                       f"{e['worst'] * 100:5.1f} % worst ({e['worst_row']}), {e['rows']} rows")
    skipped = sum(1 for r in results if r.error)
    if skipped:
        out.append(f"{skipped} rows not modelled (reason on each)")
    return out


def speed_calibration_json(results, summary) -> dict:
    from shardsim.speed.calibration import held_out_bands

    return {
        "rows": [{"id": r.id, "split": r.split, "engine": r.engine, "gpu": r.gpu, "label": r.label, "error": r.error,
                  "figures": {f.metric: {"predicted": f.predicted, "measured": f.measured, "basis": f.basis,
                                         "error": f.error} for f in r.figures}} for r in results],
        "summary": summary,
        "held_out_bands": held_out_bands(results),
    }
