"""``shardsim validate`` for people: predicted vs measured per rank and term, RSS, logits, timings, verdict."""

from __future__ import annotations

import json

from shardsim.render.tables import group_runs, new_table


def render_validation(record: dict, console) -> None:
    lay = record["layout"]
    console.print(f"[bold]validate[/] {record['model']} · TP={lay['tp']} PP={lay['pp']} DP={lay['dp']} EP={lay['ep']} "
                  f"· {record['backend']} on {record['device']} · context {record['context']} "
                  f"({record['prompt_tokens']} prompt + {record['decode_steps']} decode) × batch {record['batch']}")
    table = new_table(("rank", "term", "predicted B", "measured B", "diff B", "diff %", "verdict"), left=("rank", "term", "verdict"))

    same = lambda r: json.dumps([r.get("error"), r["comparison"]], sort_keys=True, default=str)  # noqa: E731
    for run, label in group_runs(record["ranks"], same):
        r = run[0]
        if r.get("error"):
            table.add_row(label, "—", "", "", "", "", f"[red]FAILED: {r['error']}[/]")
            continue
        for term, row in r["comparison"].items():
            if row["measured"] is None:
                table.add_row(label, term, f"{row['predicted']:,}", "—", "", "", "[yellow]not measured[/]")
                continue
            verdict = "[green]ok[/]" if row["ok"] else "[red]MISMATCH[/]"
            low = row.get("predicted_low", row["predicted"])
            shown = f"{row['predicted']:,}" if low == row["predicted"] else f"{low:,} … {row['predicted']:,}"
            table.add_row(label if term == "weights" else "", term, shown,
                          f"{row['measured']:,}", f"{row['diff']:+,}", f"{row['diff_pct']:+.2f}", verdict)
    console.print(table)
    meas = [r["measured"] for r in record["ranks"] if r["measured"].get("rss_anon")]
    if meas:
        console.print(f"RSS per rank: anon {min(m['rss_anon'] for m in meas) / 2**20:,.0f}–{max(m['rss_anon'] for m in meas) / 2**20:,.0f} MiB, "
                      f"file-backed {min(m['rss_file'] for m in meas) / 2**20:,.0f}–{max(m['rss_file'] for m in meas) / 2**20:,.0f} MiB")
    lg = record.get("logits")
    if lg:
        if "max_rel_l2_error" in lg:
            console.print(f"logits vs unsharded reference over {lg['positions']} positions: ‖Δ‖₂/‖ref‖₂ median "
                          f"{100 * lg['median_rel_l2_error']:.2f} % (≤ {100 * lg['tolerance']:.0f} %), worst "
                          f"{100 * lg['max_rel_l2_error']:.2f} % (≤ {100 * lg['tolerance_any_position']:.0f} %) · "
                          f"argmax {'agrees' if lg['argmax_agrees'] else 'differs'} at {lg['argmax_positions_compared']} "
                          f"decided positions ({lg['argmax_positions_within_noise']} within bf16 noise"
                          + (f"; {lg['argmax_positions_settled_by_fp32']} flip within the reference's own distance "
                             "from fp32" if lg.get("argmax_positions_settled_by_fp32") else "") + ") · "
                          + ("[green]ok[/]" if lg["ok"] else "[red]MISMATCH[/]"))
            noise = lg.get("reference_bf16_noise") or {}
            if noise.get("error"):
                console.print(f"reference's bf16 noise not measured: {noise['error']}")
            elif noise:
                console.print(f"bounds widened to the bf16 reference's own distance from fp32 (median "
                              f"{100 * noise['median_rel_l2']:.2f} %, worst {100 * noise['max_rel_l2']:.2f} %)")
        else:
            console.print(f"[red]logits check failed: {lg.get('error')}[/]")
    for rank, cause in record.get("failed", {}).items():
        console.print(f"[red]rank {rank} failed: {cause}[/]")
    t = record["timings"]
    console.print("times: " + " · ".join(f"{k[:-2]} {v:.1f} s" for k, v in t.items()))
    console.print(f"results: {record['run_dir']}/results.jsonl")
    console.print("[bold green]PASSED[/]: weights and KV cache match to the byte on every rank, activations within "
                  "±25 % of the prediction, logits match the unsharded reference" if record["passed"] else "[bold red]FAILED[/]")
