"""``shardsim calibrate`` for people: predicted vs measured per figure, and a summary per figure."""

from __future__ import annotations

from shardsim.render.tables import new_table


def calibration_rows_json(results: list, summ: dict) -> dict:
    """The JSON document of a calibration run."""
    rows = [{"line": r.line, "label": r.label, "ok": r.ok, "error": r.error, "starts_predicted": r.starts_predicted,
             "starts_measured": r.starts_measured, "release": r.release, "rules": r.rules, "versioned": r.versioned,
             "release_note": r.release_note, "excluded": r.excluded, "start_risk": r.start_risk,
             "figures": [{"name": f.name, "predicted": f.predicted, "measured": f.measured, "unit": f.unit,
                          "error_pct": 100 * f.error, "bound_pct": None if f.bound is None else 100 * f.bound,
                          "ok": f.ok} for f in r.figures]} for r in results]
    return {"rows": rows, "summary": summ}


def render_calibration(results: list, summ: dict, console) -> None:
    table = new_table(("line", "measurement", "figure", "predicted", "measured", "error", "bound", ""),
                      left=("measurement", "figure", ""))
    for r in results:
        if r.error:
            table.add_row(str(r.line), r.label, "[red]" + r.error + "[/]", "", "", "", "", "[red]✗[/]")
        for i, f in enumerate(r.figures):
            table.add_row(str(r.line) if i == 0 else "", r.label if i == 0 else "", f.name,
                          f"{f.predicted:,.4g} {f.unit}", f"{f.measured:,.6g} {f.unit}", f"{100 * f.error:+.2f} %",
                          "–" if f.bound is None else f"±{100 * f.bound:g} %", "[green]✓[/]" if f.ok else "[red]✗[/]")
        if r.release_note:
            table.add_row("", "[dim]" + r.release_note + "[/]", "", "", "", "", "", "")
        if r.excluded:
            table.add_row("", "[yellow]not scored: " + r.excluded + "[/]", "", "", "", "", "", "")
        if r.starts_predicted is not None:
            mark = ("[green]✓[/]" if r.verdict_right else "[yellow]~[/]" if r.verdict_right_or_borderline
                    else "[red]✗[/]")
            table.add_row("", "", "starts", ("yes" if r.starts_predicted else "no")
                          + (", BORDERLINE" if r.start_risk else ""), "yes" if r.starts_measured else "no", "", "", mark)
            if r.start_risk:
                table.add_row("", "[yellow]BORDERLINE: " + r.start_risk + "[/]", "", "", "", "", "", "")
    console.print(table)
    for title, group in (("fitted (in-sample)", summ["fitted"]), ("held-out", summ["held_out"]),
                         *((f"held-out · {k}", v) for k, v in summ.get("held_out_by_rules", {}).items())):
        _summary_table(console, title, group)
    for key, label in (("fitted", "fitted"), ("held_out", "held-out")):
        g = summ[key]
        console.print(f"{label}: {g['rows_ok']} of {g['rows']} rows within their bounds · start verdicts right: "
                      f"{g['start_verdicts_right']} of {g['rows']}"
                      + (f", BORDERLINE: lines {g['start_verdicts_borderline']} (of which started: "
                         f"{g['start_verdicts_borderline_started'] or 'none'})" if g["start_verdicts_borderline"] else "")
                      + (f" · start verdicts wrong: lines {g['start_verdicts_wrong']}" if g["start_verdicts_wrong"] else "")
                      + (f" · out of bounds: lines {g['rows_failed']}" if g["rows_failed"] else ""))
    for row in summ.get("excluded", []):
        console.print(f"not scored ({row['set']}): line {row['line']}: {row['why']}")
    sources = summ.get("held_out_by_source", {})
    if sources:
        worst = max(sources.items(), key=lambda kv: max((f["mean_abs_error_pct"] for f in kv[1]["figures"].values()),
                                                        default=0))
        console.print(f"leave-one-source-out (held-out rows grouped by source, {len(sources)} sources): worst source "
                      f"{worst[0][:70]!r}, {worst[1]['rows']} row(s)")


def _summary_table(console, title: str, group: dict) -> None:
    table = new_table(("figure", "rows", "within goal", "max |error|", "mean |error|"), left=("figure",), title=title)
    for name, f in group["figures"].items():
        table.add_row(name, str(f["n"]), str(f.get("within_bound", "")), f"{f['max_abs_error_pct']:.2f} %",
                      f"{f['mean_abs_error_pct']:.2f} %")
    console.print(table)
