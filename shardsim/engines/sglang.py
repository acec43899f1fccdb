"""SGLang: the weight "mem usage" and the KV token pool it logs, and whether it starts.

Sources (sglang 0.4.9 … 0.5.2):
- srt/server_args.py: default ``mem_fraction_static`` = round((gpu_mem − reserved) / gpu_mem, 3), gpu_mem the
  nvidia-smi total in MiB, reserved from ``SGLANG_RESERVE_TABLE`` (constants) by GPU size and tp × pp.
- srt/model_executor/model_runner.py ``profile_max_num_token``: cell = kv heads per rank · head_dim · layers · 2 ·
  dtype; rest = avail_after_load − total_free_before_load × (1 − mem_fraction_static) (GiB, where
  total_free_before_load is the free memory measured after distributed init, before the weights);
  #tokens = rest · 2³⁰ // cell, capped by ``--max-total-tokens``. ``init_memory_pool`` then allocates the K and V
  buffers ([tokens + page, heads, head_dim] per layer) and the request-to-token table
  (int32 [max_num_reqs, context_len + 4]). "Not enough memory. Please try to increase --mem-fraction-static." when
  rest ≤ 0.
- "Load weight end: … mem usage=X GB" is the free-memory drop over loading: the weights, the rotary cache and
  loading's device-level side effects (cuBLAS handles, kernels). The latter is not in any formula:
  ``SGLANG_LOAD_OVERHEAD_BYTES`` (constants) comes from one published log and carries a wide error band.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from shardsim.constants import (
    CUDA_CONTEXT_BYTES,
    SGLANG_LOAD_OVERHEAD_BYTES,
    SGLANG_MAX_REQS,
    SGLANG_MIN_REQS,
    SGLANG_RESERVE_LARGE_MIB,
    SGLANG_RESERVE_TABLE,
    SGLANG_TP_TABLE,
)
from shardsim.core.layout import Layout
from shardsim.core.memory.kv_cache import kv_bytes_per_token
from shardsim.core.model import ModelSpec, QuantConfig
from shardsim.engines.bands import error_bands
from shardsim.engines.common import EngineRankReport, EngineReport, rank_weights
from shardsim.engines.refusals import sglang_loading_refusal, sglang_pool_refusal
from shardsim.engines.registry import Engine, SuggestKnobs
from shardsim.engines.releases import NEWEST, SglangRules, resolve
from shardsim.errors import ShardsimError
from shardsim.units import DTYPE_BYTES, GiB, MiB


class SglangKnobs(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    mem_fraction_static: float | None = None
    context_length: int | None = None
    max_total_tokens: int | None = None
    kv_cache_dtype: str = "auto"
    chunked_prefill_size: int | None = None
    engine_version: str | None = None  # the SGLang release (None: the newest modelled)
    # Hybrid models only (engines/sglang_hybrid.py checks them against the model and the release)
    mamba_full_memory_ratio: float | None = None  # --mamba-full-memory-ratio (0.5.4+) [0.9]
    mamba_ssm_dtype: str | None = None  # --mamba-ssm-dtype float32 | bfloat16
    max_mamba_cache_size: int | None = None  # --max-mamba-cache-size: state slots
    max_running_requests: int | None = None  # --max-running-requests
    disable_radix_cache: bool | None = None  # --disable-radix-cache
    mamba_scheduler_strategy: str | None = None  # --mamba-scheduler-strategy (0.5.7–0.5.13)
    mamba_radix_cache_strategy: str | None = None  # --mamba-radix-cache-strategy (0.5.14+)

    def checked(self) -> "SglangKnobs":
        if self.mem_fraction_static is not None and not 0 < self.mem_fraction_static < 1:
            raise ShardsimError(f"--mem-fraction-static {self.mem_fraction_static} is out of range; accepted: (0, 1)")
        if self.kv_cache_dtype not in ("auto", "bf16", "fp8", "fp8_e4m3", "fp8_e5m2"):
            raise ShardsimError(f"--kv-cache-dtype {self.kv_cache_dtype!r:.40} is not one SGLang takes; accepted: auto, "
                                "bf16, fp8_e4m3, fp8_e5m2")
        for name in ("context_length", "max_total_tokens", "chunked_prefill_size"):
            value = getattr(self, name)
            if value is not None and not 1 <= value <= 100_000_000:
                raise ShardsimError(f"--{name.replace('_', '-')} {value} is out of range; accepted: 1 … 100,000,000")
        return self


def default_mem_fraction_static(gpu_mem_mib: float, tp: int, pp: int, rules: SglangRules = NEWEST["sglang"],
                                chunked_prefill_size: int | None = None) -> float:
    """SGLang's default for a GPU of ``gpu_mem_mib`` (nvidia-smi total) and tp × pp ranks at this release
    (``SglangRules.reserve``; sources there)."""
    parallel = tp * pp
    if rules.reserve == "tp-table":
        if gpu_mem_mib > 81920:
            return round((gpu_mem_mib - 13 * 1024) / gpu_mem_mib, 3)
        return next(f for limit, f in SGLANG_TP_TABLE if parallel >= limit)
    if rules.reserve == "reserve-table":
        for limit, base, per_rank in SGLANG_RESERVE_TABLE:
            if gpu_mem_mib < limit:
                reserved = (base + parallel * per_rank) * 1024
                break
        else:
            reserved = SGLANG_RESERVE_LARGE_MIB
        return round((gpu_mem_mib - reserved) / gpu_mem_mib, 3)
    chunk, graph_bs = sglang_gpu_defaults(gpu_mem_mib, tp, rules)
    chunk = chunked_prefill_size or chunk
    reserved = 512 + max(chunk, 2048) * 1.5 + graph_bs * 2 + parallel / 8 * 1024
    if rules.piecewise_graphs:
        reserved += len(piecewise_capture_sizes(chunk)) * 8
    if gpu_mem_mib > 60 * 1024:
        reserved = max(reserved, 10240)
    return round((gpu_mem_mib - reserved) / gpu_mem_mib, 3)


def sglang_gpu_defaults(gpu_mem_mib: float, tp: int, rules: SglangRules) -> tuple[int, int]:
    """(chunked_prefill_size, cuda_graph_max_bs) by GPU memory (server_args.py@v0.5.3 _handle_gpu_memory_settings;
    the < 35 GiB tier from arg_groups/memory_hook.py@v0.5.20)."""
    gib = gpu_mem_mib / 1024
    if gib < 20:
        return 2048, 8
    if gib < 35:
        return (4096, 48 if tp < 4 else 160) if rules.small_gpu_tier_2026 else (2048, 24 if tp < 4 else 80)
    if gib < 60:
        return 4096, 32 if tp < 4 else 160
    if gib < 160:
        return 8192, 256 if tp < 4 else 512
    return 16384, 512


def piecewise_capture_sizes(max_tokens: int) -> list[int]:
    """Prefill piecewise CUDA-graph token sizes up to ``max_tokens`` (server_args.py@v0.5.10)."""
    sizes = (list(range(4, 33, 4)) + list(range(48, 257, 16)) + list(range(288, 513, 32)) + list(range(576, 1025, 64))
             + list(range(1280, 4097, 256)) + list(range(4608, max_tokens + 1, 512)))
    return [x for x in sizes if x <= max_tokens]


def predict_sglang(spec: ModelSpec, layout: Layout, capacity_bytes: int, nvidia_smi_bytes: int | None, dtype: str,
                   quant: QuantConfig, knobs: SglangKnobs) -> EngineReport:
    knobs = knobs.checked()
    release = resolve("sglang", knobs.engine_version)
    rules = release.rules
    from shardsim.engines.sglang_hybrid import check_hybrid_knobs, predict_sglang_hybrid

    check_hybrid_knobs(spec, release, knobs)
    gpu_mem_mib = (nvidia_smi_bytes or capacity_bytes) / MiB
    fraction = knobs.mem_fraction_static or default_mem_fraction_static(gpu_mem_mib, layout.tp, layout.pp, rules,
                                                                        knobs.chunked_prefill_size)
    context = knobs.context_length or spec.max_position_embeddings
    kv_bytes = 1 if knobs.kv_cache_dtype.startswith("fp8") else DTYPE_BYTES[dtype if dtype != "fp32" else "bf16"]
    if spec.is_hybrid:
        return predict_sglang_hybrid(spec, layout, capacity_bytes, release, knobs, fraction, context, kv_bytes, dtype,
                                     quant)
    free_before = capacity_bytes - CUDA_CONTEXT_BYTES
    rotary = spec.max_position_embeddings * spec.head_dim * 4  # SGLang keeps the cos/sin cache in fp32
    ranks, refusal, running = [], None, None
    for held in rank_weights(spec, layout, dtype, quant):
        rank, layers, weights = held.rank, held.layers, held.weight_bytes
        usage = weights + rotary + SGLANG_LOAD_OVERHEAD_BYTES
        avail = free_before - usage
        cell = kv_bytes_per_token(spec, kv_bytes, layout.tp, layers)
        rest_gib = avail / GiB - free_before / GiB * (1 - fraction)
        tokens = int(rest_gib * (1 << 30) // cell) if rest_gib > 0 else 0
        if knobs.max_total_tokens:
            tokens = min(tokens, knobs.max_total_tokens)
        # --max-running-requests sets the request table's rows (srt/model_executor/model_runner.py
        # init_memory_pool: max_num_reqs = server_args.max_running_requests, else the formula); the scheduler runs at
        # most min(the flag, else max_total_num_tokens // 2, the table's rows) (srt/managers/tp_worker.py)
        reqs = knobs.max_running_requests or min(max(int(tokens / context * 512), SGLANG_MIN_REQS), SGLANG_MAX_REQS)
        if rules.reqs_capped_by_tokens:
            reqs = min(reqs, tokens // 2)
        req_table = reqs * (context + 4) * 4
        cap = reqs if knobs.max_running_requests else min(tokens // 2, reqs)
        running = cap if running is None else min(running, cap)
        ranks.append(EngineRankReport(
            rank=rank, layers=layers, model_loading_bytes=usage, available_kv_cache_bytes=int(rest_gib * GiB),
            kv_cache_bytes=(tokens + 1) * cell, kv_cache_tokens=tokens,
            used_bytes=CUDA_CONTEXT_BYTES + usage + (tokens + 1) * cell + req_table,
        ))
        refusal = refusal or sglang_loading_refusal(rank, usage, free_before) or sglang_pool_refusal(tokens)
    tokens = min(r.kv_cache_tokens for r in ranks)
    return EngineReport(
        engine="sglang", version=release.version, rules=rules.to_dict(),
        knobs={**knobs.model_dump(), "mem_fraction_static": fraction, "context_length": context},
        ranks=ranks, starts=refusal is None, refusal=refusal, kv_cache_tokens=tokens,
        max_concurrency=tokens / context if context else None, max_running_requests=running,
        error_bands=error_bands("sglang", rules.label),
        notes=[n for n in (release.note, release.warning) if n]
        + ["mem usage includes device-level loading overhead (~0.12 GiB, from one published log)"],
    )


def serve_command(spec: ModelSpec, layout: Layout, knobs: dict) -> str:
    """``sglang.launch_server`` with the layout's TP degree and the knobs that differ from SGLang's defaults."""
    parts = [f"python -m sglang.launch_server --model-path Qwen/{spec.name}", f"--tp {layout.tp}"]
    names = {"context_length": "--context-length", "kv_cache_dtype": "--kv-cache-dtype",
             "mem_fraction_static": "--mem-fraction-static"}
    return " ".join(parts + [f"{flag} {knobs[key]}" for key, flag in names.items() if knobs.get(key) not in (None, "auto")])


def predict(request) -> EngineReport:
    """``predict_sglang`` for a ``requests.ServeRequest``: TP (and EP) layouts only."""
    if request.layout.pp > 1 or request.layout.dp > 1:
        raise ShardsimError("the SGLang profile covers TP (and EP) layouts; use --pp 1 --dp 1")
    hw = request.hardware
    return predict_sglang(request.model, request.layout, hw.capacity_bytes, hw.nvidia_smi_bytes,
                          request.workload.dtype, request.quant, request.engine.knobs)


ENGINE = Engine("sglang", SglangKnobs, predict,
                SuggestKnobs("context_length", "mem_fraction_static", "fp8_e4m3", serve_command))
