"""When an engine will not start, the smallest change that makes it start, as one line of the engine's own flags.

Candidates are tried in order of how little they cost the user, each by running the same engine profile again:
the longest context that fits (vLLM ``--max-model-len`` / SGLang ``--context-length``: the tokens the cache
holds for one sequence, as vLLM's own error message computes its "estimated maximum model length",
v1/core/kv_cache_utils.py@v0.11.0 check_enough_kv_cache_memory), an fp8 KV cache, a higher memory fraction,
then twice the tensor-parallel degree. The first candidate that starts is printed.
"""

from __future__ import annotations

from shardsim.core.layout import Layout, validate_layout
from shardsim.core.model import ModelSpec
from shardsim.engines.common import EngineReport
from shardsim.errors import ShardsimError

MIN_USEFUL_CONTEXT = 1024
"""A shorter context is not offered as a fix (no chat turn fits in it); larger changes are tried instead."""


def _flags(engine: str, spec: ModelSpec, layout: Layout, knobs: dict) -> str:
    """The serve command line for ``knobs`` on ``layout``."""
    name = f"Qwen/{spec.name}"
    if engine == "vllm":
        parts = [f"vllm serve {name}", f"--tensor-parallel-size {layout.tp}"]
        if layout.pp > 1:
            parts.append(f"--pipeline-parallel-size {layout.pp}")
        names = {"max_model_len": "--max-model-len", "kv_cache_dtype": "--kv-cache-dtype",
                 "gpu_memory_utilization": "--gpu-memory-utilization"}
    else:
        parts = [f"python -m sglang.launch_server --model-path {name}", f"--tp {layout.tp}"]
        names = {"context_length": "--context-length", "kv_cache_dtype": "--kv-cache-dtype",
                 "mem_fraction_static": "--mem-fraction-static"}
    parts += [f"{flag} {knobs[key]}" for key, flag in names.items() if knobs.get(key) not in (None, "auto")]
    return " ".join(parts)


def _longest_context(report: EngineReport, limit: int) -> int | None:
    """The tokens the smallest rank's cache holds for one sequence, if that is a useful context."""
    tokens = report.kv_cache_tokens or 0
    if tokens >= MIN_USEFUL_CONTEXT:
        return min(tokens, limit)
    return None


def suggest(engine: str, run, spec: ModelSpec, layout: Layout, knobs: dict, report: EngineReport) -> str | None:
    """One line of flags that makes ``engine`` start, or None. ``run(layout, knobs)`` re-runs the profile."""
    if report.starts or engine not in ("vllm", "sglang"):
        return None
    length_key = "max_model_len" if engine == "vllm" else "context_length"
    fraction_key = "gpu_memory_utilization" if engine == "vllm" else "mem_fraction_static"
    fraction = float(report.knobs.get(fraction_key) or 0.9)
    candidates: list[tuple[Layout, dict]] = []
    longest = _longest_context(report, int(report.knobs.get(length_key) or spec.max_position_embeddings))
    if longest is not None:
        candidates.append((layout, {**knobs, length_key: longest}))
    fp8 = "fp8" if engine == "vllm" else "fp8_e4m3"
    candidates.append((layout, {**knobs, "kv_cache_dtype": fp8}))
    for higher in (0.92, 0.95):
        if higher > fraction:
            candidates.append((layout, {**knobs, fraction_key: higher}))
    try:
        wider = validate_layout(spec, layout.with_degrees(tp=layout.tp * 2))
        candidates.append((wider, knobs))
    except ShardsimError:
        pass
    for cand_layout, cand_knobs in candidates:
        try:
            if run(cand_layout, cand_knobs).starts:
                return _flags(engine, spec, cand_layout, {**report.knobs, **cand_knobs})
        except ShardsimError:
            continue
    return None

