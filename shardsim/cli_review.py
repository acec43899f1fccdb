"""``shardsim review``, ``sweep`` and ``report``: capacity review over a priced cluster catalog, grids of one model,
and the Qwen3 family table. Registered on ``shardsim.cli.app``; module-level imports stay light (typer and
shardsim.cli only) so that ``shardsim plan`` starts as fast as before — the work is imported inside each command.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from .cli import (
    BlockOpt,
    ChunkOpt,
    ClusterOpt,
    ConfigOpt,
    DpOpt,
    DtypeOpt,
    EpOpt,
    GpuMemOpt,
    GpuOpt,
    GroupOpt,
    JsonOpt,
    KvDtypeOpt,
    ModelArg,
    PpOpt,
    PpSplitOpt,
    QuantOpt,
    TpOpt,
    ZeroOpt,
    _console,
    cluster_spec,
    _parse_split,
    _workload,
    app,
)
from .errors import ShardsimError


class _Progress:
    """A progress bar on stderr that appears only once the work has taken more than ``after`` seconds (and only on
    a terminal, so piped output and JSON stay clean)."""

    def __init__(self, label: str, after: float = 1.0):
        self.label, self.after, self.t0 = label, after, time.perf_counter()
        self.enabled = sys.stderr.isatty()
        self.bar, self.task = None, None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            if time.perf_counter() - self.t0 < self.after:
                return
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(TextColumn(self.label), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                                TimeElapsedColumn(), console=Console(stderr=True), transient=True)
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=total)
        self.bar.update(self.task, completed=done, total=total)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None

    def __enter__(self) -> "_Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# ---------------------------------------------------------------- review
ModelsOpt = Annotated[Optional[list[str]], typer.Option(
    "--model", help="preset (0.6b … 235b, or 'all' for the eight) or a config.json path; repeatable")]
WorkloadOpt = Annotated[Optional[str], typer.Option(
    "--workload", help="a workload YAML file: engine and models, each with its context and concurrency")]
ReviewContextOpt = Annotated[Optional[int], typer.Option("--context", help="tokens per request (prompt + generated) \\[default: 8192]")]
ConcurrencyOpt = Annotated[Optional[int], typer.Option("--concurrency", help="simultaneous requests \\[default: 1]")]
ReviewEngineOpt = Annotated[Optional[str], typer.Option("--engine", help="none (shardsim's planner) or vllm \\[default: the file's, else none]")]
QuantsOpt = Annotated[Optional[list[str]], typer.Option(
    "--quant", help="weight format to consider: none fp8 int8 int4; repeatable \\[default: the checkpoint's own]")]
KvDtypesOpt = Annotated[Optional[list[str]], typer.Option("--kv-dtype", help="KV dtype to consider: bf16 fp8; repeatable \\[default: bf16]")]
ByOpt = Annotated[str, typer.Option("--by", help="rank by the purchase price or the hourly price of the GPUs used")]
ClustersOpt = Annotated[Optional[list[str]], typer.Option(
    "--cluster", help="review only these clusters (name in cluster_specs/ or a YAML path); repeatable")]
CatalogOpt = Annotated[Optional[str], typer.Option("--catalog", help="a directory of cluster YAML files \\[default: cluster_specs/]")]
MaxGpusOpt = Annotated[Optional[int], typer.Option("--max-gpus", help="only layouts on at most this many GPUs")]
UtilOpt = Annotated[Optional[float], typer.Option("--gpu-memory-utilization", help="vLLM's memory fraction \\[default: the file's, else 0.9]")]
TopOpt = Annotated[int, typer.Option("--top", help="fitting options shown per model (0: all)")]
MissesOpt = Annotated[int, typer.Option("--misses", help="nearest misses shown per model")]


def _flag_load(model: str, context: Optional[int], concurrency: Optional[int], quant: Optional[list[str]],
               kv_dtype: Optional[list[str]]):
    from pydantic import ValidationError

    from .review import ModelLoad

    fields = {"model": model}
    if context is not None:
        fields["context"] = context
    if concurrency is not None:
        fields["concurrency"] = concurrency
    if quant:
        fields["quant"] = quant
    if kv_dtype:
        fields["kv_dtype"] = kv_dtype
    try:
        return ModelLoad(**fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]).replace("_", "-") if err["loc"] else "model"
        given = fields.get(name.replace("-", "_"))
        if isinstance(given, list):
            given = ",".join(map(str, given))
        raise ShardsimError(f"--{name} {given}: {str(err['msg']).removeprefix('Value error, ')}") from None


@app.command("review")
def review_cmd(
    model: ModelsOpt = None, workload: WorkloadOpt = None,
    context: ReviewContextOpt = None, concurrency: ConcurrencyOpt = None, engine: ReviewEngineOpt = None,
    quant: QuantsOpt = None, kv_dtype: KvDtypesOpt = None, by: ByOpt = "purchase",
    cluster: ClustersOpt = None, catalog: CatalogOpt = None, max_gpus: MaxGpusOpt = None,
    gpu_memory_utilization: UtilOpt = None, top: TopOpt = 10, misses: MissesOpt = 3, as_json: JsonOpt = False,
) -> None:
    """Which cluster and layout serve a workload most cheaply: every layout of every priced cluster, ranked by cost."""
    from .review import BASE_PRESETS, ENGINES, load_catalog, load_workload, resolve_served_model, review
    from .review_render import render_review

    if workload and (model or context is not None or concurrency is not None or quant or kv_dtype):
        raise ShardsimError("give either --workload FILE or --model/--context/--concurrency/--quant/--kv-dtype, not both")
    if workload:
        spec_file, specs = load_workload(workload)
        loads = list(zip(specs, spec_file.models))
        engine = engine or spec_file.engine
        util = gpu_memory_utilization if gpu_memory_utilization is not None else spec_file.gpu_memory_utilization
    else:
        if not model:
            raise ShardsimError("no workload given; use --model 32b --context 32768 --concurrency 64, or --workload FILE")
        names = [n for m in model for n in (BASE_PRESETS if m.strip().lower() == "all" else (m,))]
        loads = []
        for name in dict.fromkeys(names):
            load = _flag_load(name, context, concurrency, quant, kv_dtype)
            loads.append((resolve_served_model(name), load))
        util = gpu_memory_utilization if gpu_memory_utilization is not None else 0.9
    engine = engine or "none"
    if engine not in ENGINES:
        raise ShardsimError(f"--engine {engine!r} is not known; accepted: {', '.join(ENGINES)}")
    if not 0 < util <= 1:
        raise ShardsimError(f"--gpu-memory-utilization {util} is out of range; accepted: (0, 1]")
    if max_gpus is not None and max_gpus < 1:
        raise ShardsimError(f"--max-gpus {max_gpus} must be ≥ 1")
    if top < 0 or misses < 0:
        raise ShardsimError("--top and --misses must be ≥ 0")
    clusters = load_catalog(cluster or (), catalog)
    with _Progress("reviewing") as bar:
        rv = review(loads, clusters, engine=engine, by=by, gpu_memory_utilization=util, max_gpus=max_gpus, progress=bar)
        if as_json:
            doc = rv.to_dict(top, misses)
    if as_json:
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    render_review(rv, _console(), top=top, misses=misses)


# ---------------------------------------------------------------- sweep
ContextsOpt = Annotated[str, typer.Option("--contexts", help="contexts to sweep, e.g. 4096,8192,32768 (8k = 8192)")]
BatchesOpt = Annotated[str, typer.Option("--batches", help="batches to sweep, e.g. 1,8,32")]
GpuCountsOpt = Annotated[Optional[str], typer.Option("--gpus", help="sweep every layout on each of these GPU counts, e.g. 1,2,4,8")]
CsvOpt = Annotated[Optional[str], typer.Option("--csv", help="write the rows as CSV to this file ('-': stdout)")]
ChartOpt = Annotated[Optional[str], typer.Option("--chart", help="write PNG charts into this directory (needs matplotlib)")]


@app.command("sweep")
def sweep_cmd(
    model: ModelArg = None, config: ConfigOpt = None,
    contexts: ContextsOpt = "8192", batches: BatchesOpt = "1", gpus: GpuCountsOpt = None,
    tp: TpOpt = 1, pp: PpOpt = 1, dp: DpOpt = 1, ep: EpOpt = 1, zero: ZeroOpt = 0, pp_split: PpSplitOpt = None,
    prefill_chunk: ChunkOpt = None, dtype: DtypeOpt = "bf16", quant: QuantOpt = None, group_size: GroupOpt = 128,
    kv_dtype: KvDtypeOpt = "bf16", block_size: BlockOpt = 16,
    cluster: ClusterOpt = None, gpu: GpuOpt = None, gpu_memory: GpuMemOpt = None,
    csv_file: CsvOpt = None, as_json: JsonOpt = False, chart: ChartOpt = None,
) -> None:
    """A grid for one model: context × batch on one layout, or every layout over GPU counts (--gpus)."""
    from .constants import MAX_BATCH, MAX_CONTEXT_TOKENS
    from .layout import Layout, validate_layout
    from .models import resolve_model
    from .plan import plan as make_plan
    from .sweep import chart_fitmap, chart_layouts, chart_ranks, parse_int_list, sweep_gpus, sweep_grid, to_csv

    spec = resolve_model(model, config)
    ctxs = parse_int_list(contexts, "--contexts", 1, MAX_CONTEXT_TOKENS)
    bats = parse_int_list(batches, "--batches", 1, MAX_BATCH)
    base = _workload(ctxs[0], bats[0], prefill_chunk, dtype, quant, group_size, kv_dtype, block_size)
    if gpus is not None:
        if (tp, pp, dp, ep, zero, pp_split) != (1, 1, 1, 1, 0, None):
            raise ShardsimError("--gpus sweeps every layout; leave out --tp/--pp/--dp/--ep/--zero/--pp-split")
        counts = parse_int_list(gpus, "--gpus", 1, 4096)
        hw = cluster_spec(cluster, gpu, gpu_memory, max(counts))
        cluster_name, gpu_name, capacity, node_size = hw.name, hw.gpu.name, hw.gpu.capacity_bytes, hw.gpus_per_node
        with _Progress("sweeping") as bar:
            points = sweep_gpus(spec, counts, base, capacity, ctxs, bats, gpu=gpu_name, tp_max=node_size, progress=bar)
        if not points:
            raise ShardsimError(f"no valid layout of {spec.name} on {gpus} GPUs (TP ≤ {node_size} inside a node)")
        layout = None
    else:
        layout = validate_layout(spec, Layout(tp=tp, pp=pp, dp=dp, ep=ep, zero=zero, pp_split=_parse_split(pp_split)))
        hw = cluster_spec(cluster, gpu, gpu_memory, layout.world_size)
        cluster_name, gpu_name, capacity, node_size = hw.name, hw.gpu.name, hw.gpu.capacity_bytes, hw.gpus_per_node
        points = sweep_grid(spec, layout, base, capacity, ctxs, bats, gpu=gpu_name)
    written = []
    if chart:
        folder = Path(chart).expanduser()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ShardsimError(f"--chart {chart!r}: cannot create the directory: {exc.strerror or exc}") from None
        stem = spec.name.lower()
        if layout is not None:
            fitting = [p for p in points if p.fits]
            pick = max(fitting, key=lambda p: (p.peak_bytes, p.context, p.batch)) if fitting else points[0]
            wl = base.model_copy(update={"context": pick.context, "batch": pick.batch}).checked()
            report = make_plan(spec, layout, wl, capacity, node_size=node_size, cluster_name=cluster_name, gpu_name=gpu_name)
            tag = f"tp{layout.tp}-pp{layout.pp}-dp{layout.dp}" + (f"-ep{layout.ep}" if layout.ep > 1 else "")
            written.append(chart_ranks(report, folder / f"{stem}-{tag}-ranks-{pick.context}x{pick.batch}.png"))
            written.append(chart_fitmap(points, folder / f"{stem}-{tag}-fitmap.png"))
        else:
            written.append(chart_layouts(points, folder / f"{stem}-gpus-{'-'.join(map(str, counts))}-layouts.png"))
    if csv_file:
        text = to_csv(points)
        if csv_file == "-":
            sys.stdout.write(text)
        else:
            try:
                Path(csv_file).expanduser().write_text(text)
            except OSError as exc:
                raise ShardsimError(f"--csv {csv_file!r}: cannot write: {exc.strerror or exc}") from None
    if as_json:
        doc = {"model": spec.name, "mode": "gpus" if layout is None else "grid", "cluster": cluster_name,
               "gpu": gpu_name, "capacity_bytes": capacity, "contexts": ctxs, "batches": bats,
               "layout": None if layout is None else {"tp": layout.tp, "pp": layout.pp, "dp": layout.dp,
                                                      "ep": layout.ep, "zero": layout.zero,
                                                      "world_size": layout.world_size},
               "gpu_counts": counts if layout is None else None,
               "points": [p.to_dict() for p in points], "charts": [str(p) for p in written]}
        sys.stdout.write(json.dumps(doc, indent=2) + "\n")
        return
    if csv_file == "-":
        return
    _render_sweep(spec, layout, gpu_name, capacity, points, ctxs, bats, written)


def _render_sweep(spec, layout, gpu_name, capacity, points, ctxs, bats, written) -> None:
    from rich.table import Table

    from .units import GiB

    console = _console()
    g = lambda n: f"{n / GiB:,.2f}"  # noqa: E731
    where = layout.describe() if layout is not None else "every layout per GPU count"
    console.print(f"[bold]{spec.name}[/] · {where} · {gpu_name} {g(capacity)} GiB per GPU · peak rank per point, GiB")
    table = Table(show_edge=False, header_style="bold")
    cols = (["GPUs", "layout"] if layout is None else []) + ["context", "batch", "peak rank", "weights", "kv cache",
                                                             "activations", "runtime", "total", "headroom", "fits"]
    for col in cols:
        table.add_column(col, justify="left" if col in ("layout", "fits") else "right", no_wrap=True)
    for p in points:
        row = ([str(p.gpus), p.layout_text] if layout is None else [])
        row += [f"{p.context:,}", f"{p.batch:,}", str(p.peak_rank), g(p.weights_bytes), g(p.kv_cache_bytes),
                g(p.activations_bytes), g(p.runtime_bytes), g(p.peak_bytes),
                f"[green]{g(p.headroom_bytes)}[/]" if p.fits else f"[red]{g(p.headroom_bytes)}[/]",
                "[green]yes[/]" if p.fits else "[red]no[/]"]
        table.add_row(*row)
    console.print(table)
    if layout is not None and len(ctxs) * len(bats) > 1:
        fit = Table(show_edge=False, header_style="bold", title="fit map · peak rank GiB (✓ fits, ✗ does not)")
        fit.add_column("context \\ batch", justify="right")
        for b in bats:
            fit.add_column(f"{b:,}", justify="right")
        at = {(p.context, p.batch): p for p in points}
        for c in ctxs:
            fit.add_row(f"{c:,}", *((f"[green]✓ {g(at[c, b].peak_bytes)}[/]" if at[c, b].fits
                                     else f"[red]✗ {g(at[c, b].peak_bytes)}[/]") for b in bats))
        console.print(fit)
    for path in written:
        console.print(f"chart: {path}")


# ---------------------------------------------------------------- report
@app.command("report")
def report_cmd(as_json: JsonOpt = False) -> None:
    """The Qwen3 family: parameters, bytes in bf16 / fp8 / int4, KV per token and at 8K / 32K, and the smallest
    layout that fits on each catalog GPU."""
    from .family import family_json, family_rows, render_family

    with _Progress("sizing") as bar:
        rows = family_rows(progress=bar)
    if as_json:
        sys.stdout.write(json.dumps(family_json(rows), indent=2) + "\n")
        return
    render_family(rows, _console())
