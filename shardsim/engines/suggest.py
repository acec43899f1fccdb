"""When an engine will not start, the smallest change that makes it start, as one line of the engine's own flags.

Candidates are tried in order of how little they cost the user, each by running the same engine profile again:
the longest context that fits (vLLM ``--max-model-len`` / SGLang ``--context-length``: the tokens the cache
holds for one sequence, as vLLM's own error message computes its "estimated maximum model length",
v1/core/kv_cache_utils.py@v0.11.0 check_enough_kv_cache_memory), an fp8 KV cache, a higher memory fraction,
for an engine that captures CUDA graphs after its KV cache a lower fraction and then no graphs (vLLM
--enforce-eager), then twice the tensor-parallel degree. The first candidate that starts without a start risk
(``EngineReport.start_risk``) is printed.
"""

from __future__ import annotations

from dataclasses import replace

from shardsim.core.layout import Layout, validate_layout
from shardsim.engines.common import EngineReport
from shardsim.engines.registry import Engine
from shardsim.errors import ShardsimError
from shardsim.core.requests import EngineChoice

MIN_USEFUL_CONTEXT = 1024
"""A shorter context is not offered as a fix (no chat turn fits in it); larger changes are tried instead."""


def _longest_context(report: EngineReport, limit: int) -> int | None:
    """The tokens the smallest rank's cache holds for one sequence, if that is a useful context."""
    tokens = report.kv_cache_tokens or 0
    if tokens >= MIN_USEFUL_CONTEXT:
        return min(tokens, limit)
    return None


def suggest(engine: Engine, request, report: EngineReport) -> str | None:
    """One line of flags that makes ``engine`` start for ``request`` (a ``requests.ServeRequest``), or None: each
    candidate runs the same engine profile again."""
    if (report.starts and not report.start_risk) or engine.suggest is None:
        return None
    spec, layout, words = request.model, request.layout, engine.suggest
    knobs = request.engine.given()
    fraction = float(report.knobs.get(words.fraction) or 0.9)
    candidates: list[tuple[Layout, dict]] = []
    longest = _longest_context(report, int(report.knobs.get(words.length) or spec.max_position_embeddings))
    if longest is not None:
        candidates.append((layout, {**knobs, words.length: longest}))
    candidates.append((layout, {**knobs, "kv_cache_dtype": words.fp8_kv}))
    for higher in (0.92, 0.95):
        if higher > fraction:
            candidates.append((layout, {**knobs, words.fraction: higher}))
    if words.eager:  # CUDA graphs that do not fit after the KV cache: fewer KV bytes, or no graphs
        for lower in (0.85, 0.8):
            if lower < fraction:
                candidates.append((layout, {**knobs, words.fraction: lower}))
        candidates.append((layout, {**knobs, words.eager: True}))
    try:
        wider = validate_layout(spec, layout.with_degrees(tp=layout.tp * 2))
        candidates.append((wider, knobs))
    except ShardsimError:
        pass
    for cand_layout, cand_knobs in candidates:
        try:
            choice = EngineChoice(engine.name, engine.knobs(**cand_knobs))
            tried = engine.predict(replace(request, layout=cand_layout, engine=choice))
            if tried.starts and not tried.start_risk:
                return words.serve_command(spec, cand_layout, {**report.knobs, **cand_knobs})
        except ShardsimError:
            continue
    return None
