"""The engine section: the engine's own start-up figures per rank, whether it starts, and the command to copy.

Figures: the ``EngineReport`` of ``engines.run.engine_report`` — per rank in the engine's own log terms (vLLM: model
loading, activation peak, non-torch, CUDA graphs, available KV, KV tokens; SGLang: weight mem usage, KV pool,
#tokens), identical ranks grouped (``render.tables.group_runs``); the KV tokens and concurrency it reports; the
knobs it ran with and the release's rule set; its refusal and the one-line ``suggestion`` that starts. The command:
the engine's own ``serve_command`` (``engines.registry.SuggestKnobs``: ``vllm serve …``,
``python -m sglang.launch_server …``) with the planned layout and knobs.
"""

from __future__ import annotations

from shardsim.render.html.document import Raw, Section, badge, card, code, esc, facts, para, table
from shardsim.render.tables import group_runs
from shardsim.units import gib_text

ENGINE_COLUMNS = {
    "vllm": (("model_loading_bytes", "model loading"), ("activation_peak_bytes", "activation peak"),
             ("non_torch_bytes", "non-torch"), ("cuda_graph_bytes", "CUDA graphs"),
             ("available_kv_cache_bytes", "available KV"), ("kv_cache_tokens", "KV tokens")),
    "sglang": (("model_loading_bytes", "weight mem usage"), ("kv_cache_bytes", "KV pool"), ("kv_cache_tokens", "#tokens")),
    "accelerate": (("layers", "layers"), ("model_loading_bytes", "weights (device_map)")),
    "hf": (("model_loading_bytes", "weights"), ("kv_cache_bytes", "KV cache"), ("peak_allocated_bytes", "peak allocated"),
           ("used_bytes", "prefill peak (code path)")),
}
"""Per engine, the ``EngineRankReport`` fields shown and their names in the engine's own logs (as the terminal)."""

COUNTS = ("kv_cache_tokens", "layers")
"""Fields that are counts, not bytes."""


def serve_command(rep, spec, layout) -> str | None:
    """The engine's command line for the planned layout and knobs, or None for an engine without one (HF, accelerate
    run in Python)."""
    from shardsim.engines.registry import get_engine

    words = get_engine(rep.engine).suggest
    return None if words is None else words.serve_command(spec, layout, rep.knobs)


def rank_table(rep) -> Raw:
    """The engine's figures per group of identical ranks (GiB unless a count)."""
    cols = ENGINE_COLUMNS.get(rep.engine, ENGINE_COLUMNS["hf"])
    fields = [f for f, _ in cols]
    rows = []
    for run, label in group_runs(rep.ranks, lambda r: tuple(getattr(r, f) for f in fields)):
        values = [getattr(run[0], f) for f in fields]
        rows.append([label, *(("–" if v is None else f"{v:,}") if f in COUNTS else gib_text(v)
                              for f, v in zip(fields, values))])
    return table(["ranks", *(name for _, name in cols)], rows, numeric=range(1, len(cols) + 1))


def summary(rep) -> list[tuple[str, str | None]]:
    """The engine's totals: KV tokens, concurrency at the longest request, hybrid pools, peak allocated."""
    knobs = rep.knobs
    length = knobs.get("max_model_len") or knobs.get("context_length")
    rows = [("KV cache", None if rep.kv_cache_tokens is None else f"{rep.kv_cache_tokens:,} tokens"),
            ("concurrency", None if rep.max_concurrency is None or not length else
             f"{rep.max_concurrency:.2f} requests of {length:,} tokens")]
    if rep.state_blocks is not None:
        rows.append(("state slots", f"{rep.state_blocks:,} · {rep.state_bytes_per_sequence or 0:,} B per request"))
    if rep.peak_allocated_bytes is not None:
        rows.append(("peak allocated, all GPUs", f"{gib_text(rep.peak_allocated_bytes)} GiB"))
    return rows


def engine_section(rep, spec, layout) -> Section:
    """The engine's figures, its start verdict, its knobs and the command lines to copy; a line saying how to get
    them when the plan had no ``--engine``."""
    lead = ("The engine's own start-up arithmetic (shardsim.engines), in the terms of its logs; GiB unless a count.")
    if rep is None:
        return Section("engine", "Engine", lead, [para(
            "No engine was given: run the plan with --engine vllm or --engine sglang for the engine's own figures, "
            "whether it starts, and its command line.", "muted")])
    label = (rep.rules or {}).get("label")
    title = f"{rep.engine} {rep.version}" + (f" ({label})" if label else "")
    state = (badge(f"{rep.engine} starts, BORDERLINE", "warn") if rep.starts and rep.start_risk
             else badge(f"{rep.engine} starts", "ok") if rep.starts else badge(f"{rep.engine} would not start", "bad"))
    why = rep.refusal or rep.start_risk or ""
    head = Raw(f'<div class="big">{esc(title)}</div><div class="verdict">{state}{esc(why)}</div>')
    knobs = ", ".join(f"{k}={v}" for k, v in rep.knobs.items() if v not in (None, False))
    body = [card(head, facts(summary(rep) + [("knobs", knobs)])), rank_table(rep)]
    command = serve_command(rep, spec, layout)
    if command:
        body += [Raw("<h3>Command line as planned</h3>"), code(command)]
    if rep.suggestion:
        body += [Raw("<h3>What to change so that it starts</h3>"), code(rep.suggestion)]
    if not command and not rep.suggestion:
        body.append(para(f"{rep.engine} runs inside Python (from_pretrained / generate): no command line.", "muted"))
    return Section("engine", "Engine", lead, body)
