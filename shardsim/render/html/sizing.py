"""The sizing card: how many GPUs of which kind (N = replicas × GPUs per replica), each GPU's memory, and the
verdict with its reason and fix.

For a plan the figures are the ``PlanReport``'s (layout, GPU, capacity as the CUDA runtime reports it, the most
loaded rank, the largest context and batch) and the verdict ``core.verdict.plan_verdict``'s. For a review the card
is the top-ranked ``capacity.records.Option``'s: its cluster, layout, cost, need against its budget and, when the
review estimated speed, its serving figures.
"""

from __future__ import annotations

from shardsim.render.html.document import Raw, badge, card, code, esc, facts
from shardsim.render.html.style import STATUS_CLASS
from shardsim.units import format_bytes, gib_text


def gpu_count_text(world: int, replicas: int, gpu: str) -> str:
    """``16 × H100-SXM-80GB = 2 replicas × 8 GPUs per replica``."""
    per = world // max(1, replicas)
    return (f"{world} × {gpu} = {replicas} replica{'s' if replicas != 1 else ''} × {per} GPU"
            f"{'s' if per != 1 else ''} per replica")


def weights_text(report) -> str:
    """The weights' format and bytes as the plan's header line prints them."""
    q, wl = report.quant, report.workload
    fmt = wl.dtype if q.method == "none" else q.method
    if q.method in ("gptq", "awq"):
        fmt = f"int{q.bits} ({q.method}, group {q.group_size})"
    return f"{fmt}, {format_bytes(report.weight_bytes)} ({report.weight_bytes:,} B)"


def verdict_block(status: str, reason: str, fix: str | None) -> Raw:
    """The verdict badge, its reason and (when there is one) the fix to copy."""
    out = (f'<div class="verdict">{badge(status, STATUS_CLASS.get(status, "info"))}{esc(reason)}</div>')
    if fix:
        out += f'<div class="muted">fix:</div>{code(fix)}'
    return Raw(out)


def plan_card(report, verdict) -> Raw:
    """The sizing card of a plan: GPUs, memory per GPU, model, layout, workload, the most loaded GPU, the verdict."""
    lay, wl, peak = report.layout, report.workload, report.peak
    head = report.headroom_bytes
    params = f"{report.params:,}" + (f" ({report.active_params:,} active)" if report.model.is_moe else "")
    rows = [
        ("GPU", f"{report.gpu_name}, {format_bytes(report.capacity_bytes)} each (as the CUDA runtime reports it)"),
        ("cluster", f"{report.cluster_name}" + (f" · {report.interconnect}" if report.interconnect else "")),
        ("model", f"{report.model.name} · {params} parameters"),
        ("weights", weights_text(report)),
        ("layout", f"{lay.describe()} · stages {'/'.join(map(str, lay.pp_split))} layers"),
        ("workload", f"context {wl.context:,} × batch {wl.batch} · KV {wl.kv_dtype}"),
        ("most loaded GPU", f"rank {peak.rank} (stage {peak.coords.pp_rank}, node {peak.node} gpu {peak.local_gpu}): "
                            f"{format_bytes(peak.bytes.total)} of {format_bytes(report.capacity_bytes)}"),
        ("headroom", f"{format_bytes(head)} ({100 * head / report.capacity_bytes:.1f} % of the GPU)"),
        ("largest context", f"{report.max_context:,} tokens at batch {wl.batch}"
                            + (" (the model's window)" if report.max_context_limited_by == "model" else "")),
        ("largest batch", f"{report.max_batch:,} at context {wl.context:,}"),
    ]
    return card(Raw(f'<div class="big">{esc(gpu_count_text(lay.world_size, lay.dp, report.gpu_name))}</div>'),
                verdict_block(verdict.status, verdict.reason, verdict.fix), facts(rows))


def figure(values: dict | None, key: str, fmt: str, before: str = "", after: str = "") -> str | None:
    """``values[key]`` formatted (``before`` and ``after`` around it), None when it is absent."""
    value = (values or {}).get(key)
    return None if value is None else f"{before}{value:{fmt}}{after}"


def speed_facts(speed: dict | None) -> list[tuple[str, str | None]]:
    """TTFT, TPOT, tokens/s and $ per million output tokens of a speed report's ``to_dict`` (None left out)."""
    if not speed:
        return []
    return [("TTFT", figure(speed, "ttft_ms", ",.0f", after=" ms")),
            ("TPOT", figure(speed, "tpot_ms", ",.1f", after=" ms")),
            ("output tokens/s per GPU", figure(speed, "tokens_per_s_per_gpu", ",.0f")),
            ("tokens/s per user", figure(speed, "tokens_per_s_per_user", ",.1f")),
            ("$ per million output tokens", figure(speed, "usd_per_mtok", ",.3f", before="$"))]


def option_card(option, money: str, cost_text: str, speed: dict | None) -> Raw:
    """The sizing card of a review's top option: GPUs, memory per GPU, cluster, cost, need against budget."""
    lay, gpu = option.layout, option.cluster.gpu
    where = option.cluster.name + (f" (also {', '.join(option.also_on)})" if option.also_on else "")
    status = "DOES NOT FIT" if not option.fits else ("NOT RANKED" if option.held_back else "FITS")
    reason = option.held_back or (f"rank {option.peak_rank} needs {gib_text(option.peak_bytes)} GiB of its "
                                  f"{gib_text(option.budget_bytes)} GiB budget · headroom "
                                  f"{gib_text(option.headroom_bytes)} GiB")
    rows = [
        ("GPU", f"{gpu.name}, {format_bytes(gpu.capacity_bytes)} each"),
        ("cluster", where),
        ("layout", f"{lay.describe()}"),
        ("weights · KV", f"{option.variant.weights_label} · {option.variant.kv_dtype}"),
        (money, cost_text),
        ("largest context", None if option.max_context is None else f"{option.max_context:,} tokens"),
        ("largest concurrency", None if option.max_concurrency is None else f"{option.max_concurrency:,}"),
        ("KV tokens per replica", None if option.kv_cache_tokens is None else f"{option.kv_cache_tokens:,}"),
        *speed_facts(speed),
    ]
    return card(Raw(f'<div class="big">{esc(gpu_count_text(lay.world_size, lay.dp, gpu.name))}</div>'),
                verdict_block(status, reason, None), facts(rows))
