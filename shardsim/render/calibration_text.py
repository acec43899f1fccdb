"""``shardsim calibrate`` for people: predicted vs measured per figure, and a summary per figure."""

from __future__ import annotations


def calibration_rows_json(results: list, summ: dict) -> dict:
    """The JSON document of a calibration run."""
    rows = [{"line": r.line, "label": r.label, "ok": r.ok, "error": r.error, "starts_predicted": r.starts_predicted,
             "figures": [{"name": f.name, "predicted": f.predicted, "measured": f.measured, "unit": f.unit,
                          "error_pct": 100 * f.error, "bound_pct": None if f.bound is None else 100 * f.bound,
                          "ok": f.ok} for f in r.figures]} for r in results]
    return {"rows": rows, "summary": summ}


def render_calibration(results: list, summ: dict, console) -> None:
    from rich.table import Table

    table = Table(show_edge=False, header_style="bold")
    for col in ("line", "measurement", "figure", "predicted", "measured", "error", "bound", ""):
        table.add_column(col, justify="right" if col in ("line", "predicted", "measured", "error", "bound") else "left")
    for r in results:
        if r.error:
            table.add_row(str(r.line), r.label, "[red]" + r.error + "[/]", "", "", "", "", "[red]✗[/]")
        for i, f in enumerate(r.figures):
            table.add_row(str(r.line) if i == 0 else "", r.label if i == 0 else "", f.name,
                          f"{f.predicted:,.4g} {f.unit}", f"{f.measured:,.6g} {f.unit}", f"{100 * f.error:+.2f} %",
                          "–" if f.bound is None else f"±{100 * f.bound:g} %", "[green]✓[/]" if f.ok else "[red]✗[/]")
        if r.starts_predicted is not None:
            table.add_row("", "", "starts", "yes" if r.starts_predicted else "no", "yes", "", "",
                          "[green]✓[/]" if r.starts_predicted else "[red]✗[/]")
    console.print(table)
    summary_table = Table(show_edge=False, header_style="bold", title="summary")
    for col in ("figure", "rows", "max |error|", "mean |error|"):
        summary_table.add_column(col, justify="left" if col == "figure" else "right")
    for name, f in summ["figures"].items():
        summary_table.add_row(name, str(f["n"]), f"{f['max_abs_error_pct']:.2f} %", f"{f['mean_abs_error_pct']:.2f} %")
    console.print(summary_table)
    console.print(f"{summ['rows_ok']} of {summ['rows']} rows within their bounds · start verdicts right: "
                  f"{summ['start_verdicts_right']} of {summ['rows']}"
                  + (f" · out of bounds: lines {summ['rows_failed']}" if summ["rows_failed"] else ""))
