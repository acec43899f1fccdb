"""``shardsim speed`` for people: the estimates with their held-out bands, and the arithmetic (``--explain``), in
lines of at most 80 columns. JSON is ``speed.estimate.SpeedReport.to_dict``."""

from __future__ import annotations

WIDTH = 80


def _band(entry: dict | None) -> str:
    if not entry:
        return "band unknown: no held-out row"
    how = f"p90 of {entry['rows']} held-out rows" if entry["how"] == "p90" else \
        f"worst of {entry['rows']}: {entry['row']}"
    return f"±{entry['band'] * 100:.0f} % ({how})"


def _num(value: float | None, digits: int = 1) -> str:
    if value is None:
        return "—"
    return f"{value:,.{digits}f}"


def header_lines(request, report) -> list[str]:
    serve, wl = request.serve, request.workload
    engine = serve.engine.name if serve.engine is not None else "none (planner; vLLM V1 scheduling)"
    load = (f"{wl.request_rate:g} requests/s (open loop, Little's law)" if wl.request_rate is not None
            else f"{wl.concurrency:,} concurrent users (closed loop)" if wl.concurrency is not None
            else f"{wl.num_prompts:,} requests at once (median request)")
    sched = report.scheduler
    return [
        f"{serve.model.name} · {serve.layout.short()} = {report.gpus} GPUs · {report.peaks.gpu}",
        f"engine {engine} · {wl.input_tokens:,} in / {wl.output_tokens:,} out tokens · {load}",
        f"step budget {sched.budget:,} tokens · running cap {sched.max_seqs:,} · KV holds {sched.kv_seqs:,} "
        f"requests per replica",
    ]


def figure_lines(request, report) -> list[str]:
    """The estimates, each with its band (TTFT, TPOT and output tokens/s have held-out bands; the other
    throughputs follow output tokens/s)."""
    band = report.band
    rows = [
        ("TTFT", f"{_num(report.ttft_ms)} ms" if report.ttft_ms is not None else "unbounded", _band(band.get("ttft"))),
        ("TPOT", f"{_num(report.tpot_ms, 2)} ms" if report.tpot_ms is not None else "— (1 token)",
         _band(band.get("tpot"))),
        ("output tokens/s", _num(report.output_tokens_per_s, 0), _band(band.get("throughput"))),
        ("total tokens/s", _num(report.total_tokens_per_s, 0), "as output tokens/s"),
        ("output tokens/s per GPU", _num(report.tokens_per_s_per_gpu, 0), "as output tokens/s"),
        ("tokens/s per user", _num(report.tokens_per_s_per_user), "1 / TPOT, as TPOT"),
    ]
    if report.usd_per_mtok is not None:
        rows.append(("$ per 1M output tokens", f"{report.usd_per_mtok:,.3f}",
                     f"{report.price_per_gpu_hour:g} $/GPU-hour × {report.gpus}, as output tokens/s"))
    out = [f"{'estimate':<24} {'value':>11}  held-out band"]
    out += [f"{name:<24} {value:>11}  {band_text}" for name, value, band_text in rows]
    wl = request.workload
    if report.max_concurrency_at_slo is not None:
        targets = " and ".join(t for t in (f"TTFT ≤ {wl.ttft_ms:g} ms" if wl.ttft_ms is not None else "",
                                           f"TPOT ≤ {wl.tpot_ms:g} ms" if wl.tpot_ms is not None else "") if t)
        out.append(f"largest concurrency with {targets}: {report.max_concurrency_at_slo:,} users")
    return out


def footer_lines(report) -> list[str]:
    rows = ", ".join(report.fit_rows) or "none: prior values"
    out = [f"note: {n}" for n in report.notes]
    out.append("Every figure is an estimate: a roofline of the plan's exact per-rank FLOPs and bytes, fitted "
               f"efficiencies (rows: {rows}); --explain shows the arithmetic.")
    return out


def explain_lines(request, report) -> list[str]:
    """The arithmetic: the GPU's peaks, the fitted values, each stage's coefficients, the two steps of the steady
    state (FLOPs, bytes and time per op group and collective) and the serving formulas with their numbers."""
    eff, peaks, s = report.efficiency, report.peaks, report.steady
    wl = request.workload
    out = ["", "arithmetic",
           f"GPU {peaks.gpu}: {peaks.flops / 1e12:,.1f} TFLOP/s {peaks.dtype}, {peaks.bandwidth / 1e9:,.0f} GB/s "
           f"({peaks.source})",
           f"fitted: compute {eff.compute:.2f}, memory {eff.memory:.2f} of peak; {eff.step_overhead_s * 1e3:.2f} ms "
           f"per step, {eff.ttft_overhead_s * 1e3:.1f} ms per request"]
    if peaks.dtype == "fp8":
        speedup = "the peaks' 2×" if eff.fp8_speedup is None else f"{eff.fp8_speedup:.2f}× (fitted)"
        out.append(f"fp8 matmuls at {eff.compute_of('fp8'):.2f} of the fp8 peak: bf16's rate × {speedup}; "
                   f"attention at {eff.compute:.2f} of the 16-bit peak")
    for c in report.breakdown["stage_coefficients"]:
        out.append(f"stage {c['pp_rank']} rank: weights read {c['dense_weight_bytes']:,} B + {c['local_experts']} "
                   f"experts × {c['expert_bytes']:,} B × {c['moe_layers']} MoE layers if all touched; "
                   f"{c['matmul_flops_per_token']:,} matmul FLOP/token; {c['attn_flops_per_key']:,} attention "
                   f"FLOP/key; KV {c['kv_bytes_per_token']:,} B/token")
    for label, key in (("decode step", "decode_step"), ("prompt step", "prefill_step")):
        out += _step_lines(label, report.breakdown[key])
    out += _serving_lines(wl, report, s)
    return out


def _step_lines(label: str, step: dict) -> list[str]:
    shape = step["shape"]
    out = [f"{label} (per stage: FLOPs and time at the fitted compute rate | bytes and time at the fitted "
           f"bandwidth: bound): {shape['decode']:,.1f} decodes × {shape['decode_keys']:,.0f} keys + {shape['prefill']:,.0f} "
           f"prompt tokens × {shape['prefill_keys']:,.0f} keys, in {step['micro_batches']} micro-batch(es)"]
    for st in step["stages"]:
        for g in st["groups"]:
            out.append(f"  {st['stage']} {g['name']:<9} {g['flops']:9.3e} FLOP {g['compute_s'] * 1e3:8.3f} ms |"
                       f" {g['bytes']:9.3e} B {g['memory_s'] * 1e3:8.3f} ms: {g['bound'][:3]}")
        for c in st["collectives"]:
            out.append(f"  stage {st['stage']} {c['name']}: {c['count']} × {c['bytes']:,.0f} B over {c['ranks']} "
                       f"ranks = {c['seconds'] * 1e3:.3f} ms")
        out.append(f"  {st['stage']} per-layer floor: none, decodes alone replay one CUDA graph" if st["graphed"] else
                   f"  {st['stage']} per-layer floor of {st['layers']} layers {st['layer_overhead_s'] * 1e3:.3f} ms")
    out.append(f"  = pipeline {step['pipeline_s'] * 1e3:.3f} ms + overhead {step['overhead_s'] * 1e3:.2f} ms = "
               f"{step['seconds'] * 1e3:.3f} ms")
    return out


def _serving_lines(wl, report, s) -> list[str]:
    sched = report.scheduler
    out = [f"serving ({'mixed steps' if sched.mixed else 'separate prefill batches'}; speed.serving): "
           f"{s.users:,.2f} users per replica, {s.running:,.2f} running (cap {sched.limit:,})",
           f"  decode batch d = {s.decode_batch:,.2f}; a request lives {s.lifetime_steps:,.1f} steps, "
           + (f"{s.prefill_steps:g} of them its prompt" if sched.mixed else
              f"{s.prefill_steps:g} of them prefill steps before its first token (its own, and in a wave of equal "
              "requests the wave's earlier ones)"),
           f"  steps carrying prompt tokens: {s.mixed_fraction:.3f} of all, {s.prefill_per_step:,.0f} tokens each; "
           f"{s.after_fraction:.3f} of the steps after a request's own prompt carry others'",
           f"  TPOT = {s.after_fraction:.3f} × {s.t_mixed * 1e3:.3f} + {1 - s.after_fraction:.3f} × "
           f"{s.t_decode * 1e3:.3f} = {s.tpot * 1e3:.3f} ms" if sched.mixed else
           f"  TPOT = decode {s.t_decode * 1e3:.3f} ms + the prefill steps after its first token per decode step = "
           f"{s.tpot * 1e3:.3f} ms",
           f"  TTFT = {s.ttft * 1e3:,.1f} ms (request overhead, prompt steps, waiting {s.wait * 1e3:,.1f} ms)",
           f"  E2E = TTFT + (O − 1) × TPOT = {s.e2e * 1e3:,.1f} ms; requests/s = {report.replicas} × "
           f"{s.running:,.2f} / running E2E = {report.requests_per_s:,.3f}",
           f"  output tokens/s = requests/s × {wl.output_tokens:,} = {report.output_tokens_per_s:,.1f}"]
    if report.trace is not None:
        t = report.trace
        out.append(f"  vLLM's scheduler stepped through the run (speed.simulate, block pool {sched.pool.blocks:,} "
                   f"blocks of {sched.pool.block_tokens} tokens): {len(t.steps):,} steps, up to {t.max_running:,} "
                   f"running, {t.preemptions:,} preemptions (not in the figures)")
    if report.usd_per_mtok is not None:
        out.append(f"  $/1M output tokens = {report.price_per_gpu_hour:g} × {report.gpus} / "
                   f"({report.output_tokens_per_s:,.1f} × 3600 / 1e6) = {report.usd_per_mtok:,.4f}")
    return out


def wrap(lines: list[str], width: int = WIDTH) -> list[str]:
    """Lines cut at spaces to ``width`` columns, continuations indented."""
    import textwrap

    out = []
    for line in lines:
        if len(line) <= width:
            out.append(line)
            continue
        indent = " " * (len(line) - len(line.lstrip()) + 2)
        out += textwrap.wrap(line, width=width, subsequent_indent=indent, break_long_words=True,
                             break_on_hyphens=False)
    return out


def speed_lines(request, report, explain: bool = False) -> list[str]:
    lines = header_lines(request, report) + [""] + figure_lines(request, report) + [""] + footer_lines(report)
    if explain:
        lines += explain_lines(request, report)
    return wrap(lines)
