"""``shardsim review``, ``sweep`` and ``report``: capacity review over a priced cluster catalog, grids of one model,
and the Qwen3 family table. The work is imported inside each command, so ``shardsim plan`` starts without it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from shardsim.cli import build, common
from shardsim.cli.options import (
    BatchedTokensOpt,
    BatchesOpt,
    BlockOpt,
    ByOpt,
    CatalogOpt,
    ChartOpt,
    ClusterOpt,
    ConcurrencyOpt,
    ConfigOpt,
    ContextOpt,
    ContextsOpt,
    CsvOpt,
    DpOpt,
    DtypeOpt,
    EngineOpt,
    EngineVersionOpt,
    EpOpt,
    GpuCountsOpt,
    GpuMemOpt,
    GpuOpt,
    GpuUtilOpt,
    GroupOpt,
    HtmlOpt,
    InterconnectOpt,
    JsonOpt,
    KvDtypeOpt,
    MaxGpusOpt,
    MissesOpt,
    ModelArg,
    InputTokensOpt,
    MinHeadroomOpt,
    ModelsOpt,
    OutputTokensOpt,
    PpOpt,
    PpSplitOpt,
    QuantOpt,
    RequestRateOpt,
    TopOpt,
    TpotTargetOpt,
    TpOpt,
    TtftTargetOpt,
    WorkloadOpt,
    ZeroOpt,
)
from shardsim.errors import ShardsimError


def _flag_load(model: str, context, concurrency, quant, kv_dtype, speed: dict | None = None):
    """One served model from the review's flags, with pydantic's reason on a bad value as a one-line error."""
    from pydantic import ValidationError

    from shardsim.capacity.workload import ModelLoad

    fields = {"model": model}
    for name, value in (("context", context), ("concurrency", concurrency), ("quant", quant), ("kv_dtype", kv_dtype),
                        *(speed or {}).items()):
        if value is not None and value != []:
            fields[name] = value
    try:
        return ModelLoad(**fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]).replace("_", "-") if err["loc"] else "model"
        given = fields.get(name.replace("-", "_"))
        if isinstance(given, list):
            given = ",".join(map(str, given))
        raise ShardsimError(f"--{name} {given}: {str(err['msg']).removeprefix('Value error, ')}") from None


@dataclass(frozen=True)
class ReviewOptions:
    """The review's options, as given (None: not given)."""

    model: Optional[list[str]] = None
    workload: Optional[str] = None
    context: Optional[int] = None
    concurrency: Optional[int] = None
    engine: Optional[str] = None
    quant: Optional[list[str]] = None
    kv_dtype: Optional[list[str]] = None
    by: str = "purchase"
    cluster: Optional[list[str]] = None
    gpu: Optional[str] = None
    catalog: Optional[str] = None
    max_gpus: Optional[int] = None
    gpu_memory_utilization: Optional[float] = None
    engine_version: Optional[str] = None
    input_tokens: Optional[int] = None
    output_tokens: Optional[int] = None
    request_rate: Optional[float] = None
    ttft_ms: Optional[float] = None
    tpot_ms: Optional[float] = None
    min_headroom: Optional[float] = None

    def speed(self) -> dict:
        """The speed fields given as flags (a workload file carries its own)."""
        return {k: v for k in ("input_tokens", "output_tokens", "request_rate", "ttft_ms", "tpot_ms")
                if (v := getattr(self, k)) is not None}


def review_request(o: ReviewOptions):
    """The ``ReviewRequest`` (or, for a ``task: train`` workload, the ``TrainReviewRequest``), every option refused
    here: the models from the flags or the workload file, the engine and its knobs, the limits, the clusters."""
    from shardsim.capacity.records import ReviewRequest, TrainReviewRequest
    from shardsim.capacity.workload import BASE_PRESETS, load_catalog, load_workload, resolve_served_model

    if o.workload and (o.model or o.context is not None or o.concurrency is not None or o.quant or o.kv_dtype
                       or o.speed()):
        raise ShardsimError("give either --workload FILE or --model/--context/--concurrency/--quant/--kv-dtype and the "
                            "speed flags (--input-tokens …), not both")
    if o.min_headroom is not None and not 0 <= o.min_headroom < 1:
        raise ShardsimError(f"--min-headroom {o.min_headroom} is out of range; accepted: 0 … 0.99 (0.05 = 5 %)")
    engine = o.engine
    if o.workload:
        loaded = load_workload(o.workload)
        if getattr(loaded.file, "task", None) == "train":
            if engine or o.gpu_memory_utilization or o.engine_version:
                raise ShardsimError("--engine, --engine-version and --gpu-memory-utilization are serving options; "
                                    "this workload is task: train")
            return TrainReviewRequest(tuple(loaded.loads), tuple(load_catalog(o.cluster or (), o.catalog, o.gpu)),
                                      o.by)
        loads = loaded.loads
        engine = engine or loaded.file.engine
        util = o.gpu_memory_utilization if o.gpu_memory_utilization is not None else loaded.file.gpu_memory_utilization
    else:
        if not o.model:
            raise ShardsimError("no workload given; use --model 32b --context 32768 --concurrency 64, or --workload FILE")
        names = [n for m in o.model for n in (BASE_PRESETS if m.strip().lower() == "all" else (m,))]
        loads = [(resolve_served_model(name), _flag_load(name, o.context, o.concurrency, o.quant, o.kv_dtype, o.speed()))
                 for name in dict.fromkeys(names)]
        util = 0.9 if o.gpu_memory_utilization is None else o.gpu_memory_utilization
    engine = common.check_engine(engine, ("vllm",), "review") or "none"
    if o.engine_version is not None and engine != "vllm":
        raise ShardsimError("--engine-version does nothing without --engine vllm in review")
    if o.engine_version is not None:
        from shardsim.engines.releases import resolve

        resolve("vllm", o.engine_version)
    if o.gpu_memory_utilization is not None and engine != "vllm":
        raise ShardsimError("--gpu-memory-utilization does nothing without --engine vllm; it is vLLM's memory fraction")
    if not 0 < util <= 1:
        raise ShardsimError(f"--gpu-memory-utilization {util} is out of range; accepted: (0, 1]")
    if o.max_gpus is not None and o.max_gpus < 1:
        raise ShardsimError(f"--max-gpus {o.max_gpus} must be ≥ 1")
    clusters = load_catalog(o.cluster or (), o.catalog, o.gpu)
    return ReviewRequest(tuple(loads), tuple(clusters), engine, o.by, util, o.max_gpus, o.engine_version,
                         0.05 if o.min_headroom is None else o.min_headroom)


def review(
    model: ModelsOpt = None, workload: WorkloadOpt = None,
    context: ContextOpt = None, concurrency: ConcurrencyOpt = None, engine: EngineOpt = None,
    quant: QuantOpt = None, kv_dtype: KvDtypeOpt = None, by: ByOpt = "purchase",
    cluster: ClusterOpt = None, gpu: GpuOpt = None, catalog: CatalogOpt = None, max_gpus: MaxGpusOpt = None,
    gpu_memory_utilization: GpuUtilOpt = None, top: TopOpt = 10, misses: MissesOpt = 3, as_json: JsonOpt = False,
    engine_version: EngineVersionOpt = None, input_tokens: InputTokensOpt = None, output_tokens: OutputTokensOpt = None,
    request_rate: RequestRateOpt = None, ttft_ms: TtftTargetOpt = None, tpot_ms: TpotTargetOpt = None,
    min_headroom: MinHeadroomOpt = None, html: HtmlOpt = None,
) -> None:
    """Which cluster and layout serve a workload most cheaply: every layout of every priced cluster, ranked by cost;
    with the tokens in and out of a request (--input-tokens/--output-tokens, or a workload file's), by $ per
    million output tokens among the layouts that meet the latency targets (--ttft-ms, --tpot-ms).

    \b
    Examples:
      shardsim review --workload example --html review.html
      shardsim review --model 32b --input-tokens 2k --output-tokens 512
      shardsim review --model 235b --context 8k --concurrency 64 --by hourly
    """
    request = review_request(ReviewOptions(model, workload, context, concurrency, engine, quant, kv_dtype, by,
                                           cluster, gpu, catalog, max_gpus, gpu_memory_utilization, engine_version,
                                           input_tokens, output_tokens, request_rate, ttft_ms, tpot_ms, min_headroom))
    if top < 0 or misses < 0:
        raise ShardsimError("--top and --misses must be ≥ 0")
    from shardsim.capacity.records import TrainReviewRequest

    if isinstance(request, TrainReviewRequest):
        if html is not None:
            raise ShardsimError("--html reports a serving review; this workload is task: train")
        return _review_training(request, top, as_json)
    if html is not None:   # a path that cannot be written is refused before the work
        from shardsim.render.html.write import check_destination

        check_destination(html)
    from shardsim.capacity.review import review as run_review

    with common.Progress("reviewing") as bar:
        rv = run_review(request, progress=bar, keep=(top, misses))
        doc = rv.to_dict(top, misses) if as_json else None
    if as_json:
        common.print_json(doc)
    else:
        from shardsim.render.review_text import render_review

        render_review(rv, common.console(), top=top, misses=misses)
    if html is not None:
        _write_review_html(rv, html, top, misses, to_stderr=as_json)


def _write_review_html(rv, path: str, top: int, misses: int, to_stderr: bool) -> None:
    """The review as one self-contained HTML file (``render.html.review``), and one line saying where."""
    import shlex
    import sys

    from shardsim.cli.help import ARGV
    from shardsim.files import show
    from shardsim.render.html.review import write_review_html

    written = write_review_html(rv, path, shlex.join(["shardsim", *(ARGV or sys.argv[1:])]), top, misses)
    (sys.stderr if to_stderr else sys.stdout).write(f"report: {show(written)}\n")


def _charts(spec, layout, base, hw, points, counts, chart: str) -> list:
    """The PNG charts of a sweep into ``chart`` (a directory): per-rank bars and the fit map of a grid, or the
    layouts of a GPU-count sweep."""
    from shardsim.core.plan import plan as make_plan
    from shardsim.render.charts import chart_fitmap, chart_layouts, chart_ranks

    folder = Path(chart).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ShardsimError(f"--chart {chart!r}: cannot create the directory: {exc.strerror or exc}") from None
    stem = spec.name.lower()
    if layout is None:
        return [chart_layouts(points, folder / f"{stem}-gpus-{'-'.join(map(str, counts))}-layouts.png")]
    fitting = [p for p in points if p.fits]
    pick = max(fitting, key=lambda p: (p.peak_bytes, p.context, p.batch)) if fitting else points[0]
    wl = base.model_copy(update={"context": pick.context, "batch": pick.batch}).checked()
    report = make_plan(spec, layout, wl, hw.capacity_bytes, fabric=hw.fabric,
                       cluster_name=hw.cluster.name, gpu_name=hw.cluster.gpu.name)
    tag = f"tp{layout.tp}-pp{layout.pp}-dp{layout.dp}" + (f"-ep{layout.ep}" if layout.ep > 1 else "")
    return [chart_ranks(report, folder / f"{stem}-{tag}-ranks-{pick.context}x{pick.batch}.png"),
            chart_fitmap(points, folder / f"{stem}-{tag}-fitmap.png")]


def _review_training(request, top: int, as_json: bool) -> None:
    """``review`` of a ``task: train`` workload: the fewest GPUs per cluster and strategy, cheapest first."""
    from shardsim.capacity.train_review import review_training

    with common.Progress("reviewing training"):
        options = review_training(list(request.loads), list(request.clusters), request.by)
    rows = [{"model": o.model, "strategy": o.strategy, "cluster": o.cluster.name, "gpus": o.gpus,
             "layout": {"tp": o.layout.tp, "dp": o.layout.dp}, "peak_bytes": o.peak_bytes, "cost_usd": o.cost}
            for o in options]
    if as_json:
        return common.print_json({"task": "train", "by": request.by, "options": rows})
    from shardsim.render.train_text import render_train_review

    render_train_review(rows, common.console(), request.by, top)


def sweep_request(model: "build.ModelOptions", layout: "build.LayoutOptions", workload: "build.WorkloadOptions",
                  hardware: "build.HardwareOptions", contexts: str, batches: str, gpus: Optional[str]):
    """The ``SweepRequest``: the model, the contexts and batches, one layout or the GPU counts to sweep every layout
    over, the base workload, the hardware; each option refused here, in that order."""
    from shardsim.capacity.sweep import SweepRequest, parse_int_list
    from shardsim.constants import MAX_BATCH, MAX_CONTEXT_TOKENS

    spec = model.spec()
    ctxs = parse_int_list(contexts, "--contexts", 1, MAX_CONTEXT_TOKENS)
    bats = parse_int_list(batches, "--batches", 1, MAX_BATCH)
    base = common.workload(ctxs[0], bats[0], workload.max_num_batched_tokens, workload.dtype,
                           common.single(workload.quant, "--quant"), workload.group_size,
                           common.single(workload.kv_dtype, "--kv-dtype"), workload.block_size)
    if gpus is not None:
        if layout != build.LayoutOptions():
            raise ShardsimError("--gpus sweeps every layout; leave out --tp/--pp/--dp/--ep/--zero/--pp-split")
        counts = parse_int_list(gpus, "--gpus", 1, 4096)
        return SweepRequest(spec, None, tuple(counts), base, hardware.hardware(max(counts)), tuple(ctxs), tuple(bats))
    lay = layout.layout(spec)
    return SweepRequest(spec, lay, None, base, hardware.hardware(lay.world_size, lay), tuple(ctxs), tuple(bats))


def sweep(
    model: ModelArg = None, config: ConfigOpt = None,
    contexts: ContextsOpt = "8192", batches: BatchesOpt = "1", gpus: GpuCountsOpt = None,
    tp: TpOpt = 1, pp: PpOpt = 1, dp: DpOpt = 1, ep: EpOpt = 1, zero: ZeroOpt = 0, pp_split: PpSplitOpt = None,
    max_num_batched_tokens: BatchedTokensOpt = None, dtype: DtypeOpt = "bf16", quant: QuantOpt = None, group_size: GroupOpt = None,
    kv_dtype: KvDtypeOpt = None, block_size: BlockOpt = None,
    cluster: ClusterOpt = None, gpu: GpuOpt = None, gpu_memory: GpuMemOpt = None, interconnect: InterconnectOpt = None,
    csv_file: CsvOpt = None, as_json: JsonOpt = False, chart: ChartOpt = None,
) -> None:
    """A grid for one model: context × batch on one layout, or every layout over GPU counts (--gpus).

    \b
    Examples:
      shardsim sweep 235b --tp 4 --pp 4 --contexts 8k,32k --batches 1,16,64
      shardsim sweep 32b --gpus 1,2,4,8 --context 32k --batch 8 --csv out.csv
    """
    request = sweep_request(
        build.ModelOptions(model, config), build.LayoutOptions(tp, pp, dp, ep, zero, pp_split),
        build.WorkloadOptions(max_num_batched_tokens=max_num_batched_tokens, dtype=dtype, quant=quant,
                              group_size=group_size, kv_dtype=kv_dtype, block_size=block_size),
        build.HardwareOptions(cluster, gpu, gpu_memory, interconnect), contexts, batches, gpus)
    from shardsim.capacity.sweep import sweep_gpus, sweep_grid, to_csv

    spec, layout, hw, base = request.model, request.layout, request.hardware, request.workload
    ctxs, bats, counts = list(request.contexts), list(request.batches), request.gpu_counts
    if counts is not None:
        with common.Progress("sweeping") as bar:
            points = sweep_gpus(spec, counts, base, hw.capacity_bytes, ctxs, bats, gpu=hw.gpu_name,
                                tp_max=hw.cluster.gpus_per_node, progress=bar, fabric=hw.fabric)
        if not points:
            raise ShardsimError(f"no valid layout of {spec.name} on {gpus} GPUs (TP ≤ {hw.cluster.gpus_per_node} inside a node)")
    else:
        points = sweep_grid(spec, layout, base, hw.capacity_bytes, ctxs, bats, gpu=hw.gpu_name, fabric=hw.fabric)
    written = _charts(spec, layout, base, hw, points, counts, chart) if chart else []
    _write_csv(points, csv_file, to_csv)
    if as_json:
        return common.print_json({
            "model": spec.name, "mode": "gpus" if layout is None else "grid", "cluster": hw.cluster.name,
            "gpu": hw.gpu_name, "capacity_bytes": hw.capacity_bytes, "contexts": ctxs, "batches": bats,
            "layout": None if layout is None else {"tp": layout.tp, "pp": layout.pp, "dp": layout.dp, "ep": layout.ep,
                                                   "zero": layout.zero, "world_size": layout.world_size},
            "gpu_counts": None if counts is None else list(counts), "points": [p.to_dict() for p in points],
            "charts": [str(p) for p in written]})
    if csv_file == "-":
        return
    from shardsim.render.sweep_text import render_sweep

    render_sweep(spec, layout, hw.gpu_name, hw.capacity_bytes, points, ctxs, bats, written, common.console())


def _write_csv(points, csv_file: Optional[str], to_csv) -> None:
    if not csv_file:
        return
    text = to_csv(points)
    if csv_file == "-":
        print(text, end="")
        return
    try:
        Path(csv_file).expanduser().write_text(text)
    except OSError as exc:
        raise ShardsimError(f"--csv {csv_file!r}: cannot write: {exc.strerror or exc}") from None


def report(as_json: JsonOpt = False) -> None:
    """The Qwen3 family: parameters, bytes in bf16 / fp8 / int4, KV per token and at 8K / 32K, and the smallest
    layout that fits on each catalog GPU.

    \b
    Examples:
      shardsim report
      shardsim report --json
    """
    from shardsim.capacity.family import family_json, family_rows

    with common.Progress("sizing") as bar:
        rows = family_rows(progress=bar)
    if as_json:
        return common.print_json(family_json(rows))
    from shardsim.render.family_text import render_family

    render_family(rows, common.console())


def register(app) -> None:
    app.command("review")(review)
    app.command("sweep")(sweep)
    app.command("report")(report)
