"""Plan and engine reports for people (rich tables). JSON comes from ``PlanReport.to_dict`` / ``EngineReport.to_dict``."""

from __future__ import annotations

from shardsim.core.records import PlanReport, RankReport
from shardsim.render.tables import group_runs, new_table
from shardsim.units import format_bytes, gib_text


def rank_groups(report: PlanReport) -> list[tuple[list[RankReport], str]]:
    """Consecutive ranks of one stage and node with identical bytes, labelled like ``0–7 · stage 0``."""
    return [(run, f"{label} · stage {run[0].coords.pp_rank}")
            for run, label in group_runs(report.ranks, lambda r: (r.coords.pp_rank, r.node, r.bytes.to_dict()))]


def step_text(wl) -> str:
    """The largest forward step: ``8,192 tokens`` for a step budget, ``batch × prompt`` without one."""
    from shardsim.core.workload import step_shape

    tokens, _ = step_shape(wl.context, wl.batch, wl.prefill_chunk, wl.step_tokens)
    return f"{tokens:,} tokens" + (f" (budget {wl.step_tokens:,})" if wl.step_tokens is not None else " (batch × prompt)")


def render_plan(report: PlanReport, console, checkpoint=None) -> None:
    """The plan's tables; ``checkpoint`` (a ``presets.checkpoints.CheckpointCheck``, only for a checkpoint folder)
    adds one line after the header, and a warning line when its headers' bytes differ from the planned weights."""
    spec, lay, wl = report.model, report.layout, report.workload
    quant = report.quant.method if report.quant.method != "none" else wl.dtype
    if report.quant.method in ("gptq", "awq"):
        quant = f"int{report.quant.bits} ({report.quant.method}, group {report.quant.group_size})"
    console.print(f"[bold]{spec.name}[/]  {report.params:,} params"
                  + (f" ({report.active_params:,} active)" if spec.is_moe else "")
                  + f" · weights {quant} {format_bytes(report.weight_bytes)} ({report.weight_bytes:,} B) · KV {wl.kv_dtype}")
    if checkpoint is not None:
        f = checkpoint.facts
        console.print(f"checkpoint {f.path} · {f.files} safetensors files · {f.tensors:,} tensors · {f.bytes:,} B"
                      + (" · equals the planned weights" if checkpoint.match else ""), markup=False)
        if not checkpoint.match:
            console.print(f"[yellow]warning:[/] {checkpoint.warning()}")
    console.print(f"layout {lay.describe()} · stages {'/'.join(map(str, lay.pp_split))} layers"
                  + (f" · experts split over {lay.etp} ranks" if spec.is_moe and lay.ep == 1 and lay.etp > 1 else ""))
    console.print(f"cluster {report.cluster_name} · {report.gpu_name} · {format_bytes(report.capacity_bytes)} per GPU"
                  + (f" · {report.interconnect}" if report.interconnect else "")
                  + f" · context {wl.context:,} × batch {wl.batch} · step {step_text(wl)}")
    hybrid = spec.is_hybrid
    cols = ("ranks", "node:gpu", "layers", "weights", "kv cache") + (("state",) if hybrid else ()) + (
        "activations", "runtime", "total", "free")
    table = new_table(cols, left=("ranks", "node:gpu", "layers"))
    for group, label in rank_groups(report):
        r = group[0]
        where = f"{r.node}:{r.local_gpu}" if len(group) == 1 else f"{r.node}:{r.local_gpu}–{group[-1].local_gpu}"
        b = r.bytes
        free = r.free_bytes
        table.add_row(label, where, f"{r.layers[0]}–{r.layers[1]}", gib_text(b.weights + b.zero_gather), gib_text(b.kv_cache),
                      *((gib_text(b.state),) if hybrid else ()),
                      gib_text(b.activations), gib_text(b.runtime), gib_text(b.total),
                      f"[green]{gib_text(free)}[/]" if free >= 0 else f"[red]{gib_text(free)}[/]")
    console.print(table)
    if hybrid:
        console.print("GiB per GPU · weights, KV and recurrent state exact to the byte; activations ±25 % (with the "
                      "Gated-DeltaNet prefill transient of vLLM's FLA kernels, read from the source, not yet measured "
                      "on a GPU), runtime ±50 % (estimates)")
    else:
        console.print("GiB per GPU · weights and KV exact to the byte; activations ±25 %, runtime ±50 % (estimates)")
    if hybrid:
        console.print(f"KV only on the {spec.attention_layers} full-attention layers of {spec.num_layers}; the "
                      f"{spec.num_layers - spec.attention_layers} Gated-DeltaNet layers hold a fixed state per sequence "
                      "(conv + delta-rule memory), whatever its length")
    peak = report.peak
    verdict = "memory fits" if report.fits else "[red]memory does not fit[/]"
    console.print(f"most loaded: rank {peak.rank} (stage {peak.coords.pp_rank}, node {peak.node} gpu {peak.local_gpu}): "
                  f"{format_bytes(peak.bytes.total)} used of {format_bytes(report.capacity_bytes)} · "
                  f"allocated {format_bytes(peak.bytes.allocated)}, reserved {format_bytes(peak.bytes.reserved)}")
    head = report.headroom_bytes
    console.print(f"{verdict} · headroom {format_bytes(head)} ({100 * head / report.capacity_bytes:.1f} % of the GPU)")
    limit = " (the model's max_position_embeddings)" if report.max_context_limited_by == "model" else ""
    console.print(f"largest context at batch {wl.batch}: {report.max_context:,} tokens{limit} · "
                  f"largest batch at context {wl.context:,}: {report.max_batch:,}")
    for w in report.warnings:
        console.print(f"[yellow]warning:[/] {w}")


def render_engine(rep, console) -> None:
    """The engine's own figures per rank (grouped when equal) and its start verdict."""
    knobs = ", ".join(f"{k}={v}" for k, v in rep.knobs.items() if v not in (None, False))
    rules = f" ({rep.rules['label']})" if rep.rules else ""
    console.print(f"\n[bold]{rep.engine}[/] {rep.version}{rules} · {knobs}")
    if rep.engine == "vllm":
        cols = ("ranks", "model loading", "activation peak", "non-torch", "CUDA graphs", "available KV", "KV tokens")
        fields = ("model_loading_bytes", "activation_peak_bytes", "non_torch_bytes", "cuda_graph_bytes",
                  "available_kv_cache_bytes", "kv_cache_tokens")
    elif rep.engine == "sglang":
        cols = ("ranks", "weight mem usage", "KV pool", "#tokens")
        fields = ("model_loading_bytes", "kv_cache_bytes", "kv_cache_tokens")
    elif rep.engine == "accelerate":
        cols = ("GPU", "layers", "weights (device_map)")
        fields = ("layers", "model_loading_bytes")
    else:
        cols = ("ranks", "weights", "KV cache", "peak allocated", "prefill peak (code path)")
        fields = ("model_loading_bytes", "kv_cache_bytes", "peak_allocated_bytes", "used_bytes")
    table = new_table(cols, left=("ranks", "GPU"))
    for run, label in group_runs(rep.ranks, lambda r: tuple(getattr(r, f) for f in fields)):
        values = [getattr(run[0], f) for f in fields]
        table.add_row(label, *[f"{v:,}" if f in ("kv_cache_tokens", "layers") else gib_text(v)
                               for f, v in zip(fields, values)])
    console.print(table)
    if rep.engine == "vllm":
        console.print(f"GPU KV cache size: {rep.kv_cache_tokens:,} tokens · Maximum concurrency for "
                      f"{rep.knobs['max_model_len']:,} tokens per request: {rep.max_concurrency:.2f}x")
        if rep.attention_block_size is not None:
            _vllm_hybrid_lines(rep, console)
    elif rep.engine == "sglang":
        console.print(f"KV Cache is allocated. #tokens: {rep.kv_cache_tokens:,} · mem_fraction_static "
                      f"{rep.knobs['mem_fraction_static']}")
        if rep.state_blocks is not None:
            console.print(f"Mamba Cache is allocated. max_mamba_cache_size: {rep.state_blocks:,} · state "
                          f"{rep.state_bytes_per_sequence:,} B per request, pool {gib_text(rep.state_pool_bytes)} GiB · "
                          f"KV {rep.kv_bytes_per_token:,} B per token · max_running_requests "
                          f"{rep.max_running_requests:,}", markup=False)
    elif rep.peak_allocated_bytes is not None:
        console.print(f"peak torch.cuda.max_memory_allocated summed over GPUs: {rep.peak_allocated_bytes / 2**20:,.0f} MiB")
    console.print(f"GiB unless noted · error bands: {band_text(rep)}")
    for note in rep.notes:
        console.print(f"note: {note}")
    if rep.starts and rep.start_risk:
        console.print(f"[bold yellow]{rep.engine} starts, BORDERLINE:[/] {rep.start_risk}")
    elif rep.starts:
        console.print(f"[bold green]{rep.engine} starts[/]")
    else:
        console.print(f"[bold red]{rep.engine} would not start:[/] {rep.refusal}")
        if rep.suggestion:
            console.print(f"what to change: {rep.suggestion}")


def _vllm_hybrid_lines(rep, console) -> None:
    """vLLM's own start-up lines for a hybrid's shared pool (platforms/interface.py@v0.20.0
    _align_hybrid_block_size), then the pool in one line."""
    if rep.attention_block_size > rep.knobs["block_size"]:
        console.print(f"Setting attention block size to {rep.attention_block_size} tokens to ensure that attention "
                      "page size is >= mamba page size.", markup=False)
    if rep.state_page_padding:
        console.print(f"Padding mamba page size by {100 * rep.state_page_padding:.2f}% to ensure that mamba page size "
                      "and attention page size are exactly equal.", markup=False)
    console.print(f"shared pool: {rep.state_blocks:,} blocks of {rep.attention_block_size:,} tokens · KV "
                  f"{rep.kv_bytes_per_token:,} B per token · state {rep.state_bytes_per_sequence:,} B per sequence "
                  f"(mamba page {rep.state_page_bytes:,} B per layer) · {rep.max_concurrency:.2f} sequences of "
                  f"{rep.knobs['max_model_len']:,} tokens", markup=False)


VERDICT_STYLE = {"FITS": "bold green", "BORDERLINE": "bold yellow", "DOES NOT FIT": "bold red",
                 "WILL NOT START": "bold red"}


def render_verdict(verdict, console) -> None:
    """The plan's one verdict (``core.verdict``): status, reason, and the change that fixes it."""
    console.print(f"\n[{VERDICT_STYLE[verdict.status]}]{verdict.status}[/] · {verdict.reason}", soft_wrap=False)
    if verdict.fix:
        console.print(f"fix: {verdict.fix}")


def band_text(rep) -> str:
    """The engine's bands, each with the rule set whose held-out rows set it when that is not the one in use."""
    from shardsim.engines.bands import band_details

    label = (rep.rules or {}).get("label")
    details = band_details(rep.engine, label) if label else {}
    parts = []
    for figure, value in rep.error_bands.items():
        b = details.get(figure)
        source = "" if b is None or b.rules == label else (" (goal)" if b.rules == "goal" else f" ({b.rules})")
        parts.append(f"{figure.replace('_bytes', '')} ±{100 * value:g} %{source}")
    return ", ".join(parts)


def render_explain(report, engine, verdict, console) -> None:
    """``--explain``: how the verdict was reached — the most loaded GPU's sum, the band of its estimated terms, and
    each engine figure's band with the rule set and the worst held-out row it comes from."""
    from shardsim.core.verdict import ACTIVATION_UNCERTAINTY, RUNTIME_UNCERTAINTY   # the bands the verdict uses

    b = report.peak.bytes
    console.print("\n[bold]explain[/]")
    console.print(f"rank {report.peak.rank}: weights {gib_text(b.weights)} + KV {gib_text(b.kv_cache)}"
                  + (f" + state {gib_text(b.state)}" if getattr(b, "state", 0) else "")
                  + f" + activations {gib_text(b.activations)} + runtime {gib_text(b.runtime)} = {gib_text(b.total)} "
                  f"GiB of {gib_text(report.capacity_bytes)} GiB")
    console.print(f"band of the estimated terms: activations {gib_text(b.activations)} × "
                  f"{100 * ACTIVATION_UNCERTAINTY:g} % + runtime {gib_text(b.runtime)} × {100 * RUNTIME_UNCERTAINTY:g} % = "
                  f"{gib_text(verdict.band_bytes)} GiB; headroom {gib_text(report.headroom_bytes)} GiB → "
                  f"{verdict.status}")
    if engine is not None and engine.rules:
        from shardsim.engines.bands import band_details

        for band in band_details(engine.engine, engine.rules.get("label")).values():
            console.print(f"{engine.engine} band: {band.describe()}", markup=False)
