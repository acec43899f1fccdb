"""Training plans for people: the per-rank table (ranks with equal bytes grouped) and the verdict line."""

from __future__ import annotations

from shardsim.core.train.frameworks import FRAMEWORKS
from shardsim.core.train.plan import TrainReport
from shardsim.render.tables import group_runs, new_table
from shardsim.units import gib_text


def strategy_text(report: TrainReport) -> str:
    """The strategy as the framework names it (its record in the registry), with LoRA / QLoRA after it."""
    s = report.setup
    name = FRAMEWORKS[s.framework].strategy_text(s, report.layout)
    if s.lora:
        name += f" · {'QLoRA' if s.qlora else 'LoRA'} r={s.lora_rank}"
    return name


def verdict(report: TrainReport) -> str:
    peak = report.ranks[report.peak_rank]
    if report.fits:
        return f"FITS · headroom {gib_text(min(r.free_bytes for r in report.ranks))} GiB on rank {report.peak_rank}"
    line = f"DOES NOT FIT: {strategy_text(report)} OOMs by {gib_text(-peak.free_bytes)} GiB on rank {peak.rank}"
    if report.alternative:
        return line + f"; {report.alternative}"
    return line + "; no other strategy of this framework fits on these GPUs (more GPUs, a shorter --seq-len, or LoRA)"


def render_train(report: TrainReport, console, gpu_name: str = "") -> None:
    s, lay = report.setup, report.layout
    console.print(f"[bold]{report.model.name}[/] · train · {strategy_text(report)} · {s.optimizer} · "
                  f"recompute {s.recompute}")
    console.print(f"layout TP={lay.tp} × PP={lay.pp} × DP={lay.dp}" + (f" × CP={lay.cp}" if lay.cp > 1 else "")
                  + (f" · EP={lay.ep}" if lay.ep > 1 else "")
                  + f" · micro-batch {s.micro_batch} × seq {s.seq_len:,} · {gpu_name} "
                  f"{gib_text(report.capacity_bytes)} GiB per GPU")
    cols = ("ranks", "layers", "weights", "master", "grads", "optimizer", "buffers", "activations", "runtime",
            "total", "free")
    table = new_table(cols, left=("ranks", "layers"))
    for run, label in group_runs(report.ranks, lambda r: (r.pp_rank, r.bytes.to_dict())):
        r, b = run[0], run[0].bytes
        free = r.free_bytes
        table.add_row(f"{label} · stage {r.pp_rank}", f"{r.layers[0]}–{r.layers[1]}", gib_text(b.weights),
                      gib_text(b.master_weights), gib_text(b.grads), gib_text(b.optimizer), gib_text(b.buffers),
                      gib_text(b.activations), gib_text(b.runtime), gib_text(b.total),
                      f"[green]{gib_text(free)}[/]" if free >= 0 else f"[red]{gib_text(free)}[/]")
    console.print(table)
    peak = report.ranks[report.peak_rank].bytes
    console.print(f"GiB per GPU · states exact by the frameworks' partition rules; activations ±25 %, runtime ±50 % · "
                  f"rank {report.peak_rank}: peak allocated {gib_text(peak.peak_allocated)} GiB "
                  f"(torch.cuda.max_memory_allocated), total {gib_text(peak.total)} GiB (nvidia-smi)")
    if report.host_bytes_per_node:
        console.print(f"host memory per node for offloaded states: {gib_text(report.host_bytes_per_node)} GiB")
    console.print(("[bold green]" if report.fits else "[bold red]") + verdict(report) + "[/]")
    console.print(f"largest micro-batch at seq {s.seq_len:,}: {report.max_micro_batch:,} · largest seq len at "
                  f"micro-batch {s.micro_batch}: {report.max_seq_len:,}")
    for w in report.warnings:
        console.print(f"[yellow]warning:[/] {w}")


def render_train_review(rows: list[dict], console, by: str, top: int) -> None:
    """Per model, the cheapest (strategy, cluster, GPUs) that fit."""
    if not rows:
        console.print("[bold red]no strategy fits on any cluster reviewed[/]")
        return
    for model in dict.fromkeys(r["model"] for r in rows):
        table = new_table(("#", "strategy", "cluster", "GPUs", "layout", "peak GiB", "cost $"), left=("strategy", "cluster", "layout"), title=f"{model} · train · by {by}")
        mine = [r for r in rows if r["model"] == model][: top or None]
        for i, r in enumerate(mine, 1):
            cost = "—" if r["cost_usd"] is None else f"{r['cost_usd']:,.0f}" if by == "purchase" else f"{r['cost_usd']:,.2f}/h"
            table.add_row(str(i), r["strategy"], r["cluster"], str(r["gpus"]),
                          f"TP{r['layout']['tp']}×DP{r['layout']['dp']}", gib_text(r["peak_bytes"]), cost)
        console.print(table)


def render_train_validation(record: dict, console) -> None:
    """Per rank, predicted vs measured training states (bytes), and the verdict."""
    setup = record["setup"]
    lay = record["layout"]
    torch_name = " + ".join(part for part, on in (("TP (DTensor)", lay["tp"] > 1),
                                                   ("pipelining 1F1B", lay["pp"] > 1)) if on)
    name = {"deepspeed": f"DeepSpeed ZeRO-{setup['zero']}", "fsdp": f"FSDP2 ({setup['fsdp']}) through accelerate",
            "torch": f"torch-native {torch_name}"}.get(setup["framework"], setup["framework"])
    steps = f"{record['steps']} steps of micro-batch {setup['micro_batch']} × seq {setup['seq_len']}"
    if lay["pp"] > 1:
        steps += f", {setup['grad_accum']} micro-batches each"
    console.print(f"[bold]{record['model']}[/] · validate --train · {name} · TP={lay['tp']} × PP={lay['pp']} × "
                  f"DP={lay['dp']} · {steps}")
    table = new_table(("rank", "term", "predicted B", "measured B", "diff", ""), left=("term", ""))
    for r in record["ranks"]:
        for term, row in r["comparison"].items():
            measured = "—" if row["measured"] is None else f"{row['measured']:,}"
            mark = {True: f"[green]{row.get('note') or 'exact'}[/]", False: f"[red]differs[/] {row.get('note', '')}",
                    None: row.get("note", "")}[row["ok"]]
            diff = "" if row["diff"] is None else f"{row['diff']:+,}"
            table.add_row(str(r["rank"]), term, f"{row['predicted']:,}", measured, diff, mark)
        if r["error"]:
            table.add_row(str(r["rank"]), "error", "", "", "", f"[red]{r['error']}[/]")
    console.print(table)
    console.print("[bold green]PASSED[/]: every state byte-exact on every rank" if record["passed"]
                  else "[bold red]FAILED[/]" + (f": {record['failed']}" if record["failed"] else ": a state differs"))
    console.print(f"run folder: {record['run_dir']}")
