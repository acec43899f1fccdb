"""The refusal rules of the engines, in one place: when vLLM or SGLang would not start, in the engine's own words.

The engine profiles (``vllm.predict_vllm``), the planner's warnings (``shardsim plan``) and the capacity review all
call these functions, so a layout is refused the same way wherever it is evaluated. Each returns the refusal text,
or None when the engine accepts. Sources are vLLM's own checks at v0.10.2 / v0.11.0 and SGLang's at 0.4.9–0.5.2,
cited per rule.
"""

from __future__ import annotations

from dataclasses import dataclass

from shardsim.core.layout import Layout
from shardsim.core.model import ModelSpec, QuantConfig
from shardsim.units import GiB


def _gib(n: int) -> str:
    return f"{n / GiB:.2f}"


def fp8_block_refusal(spec: ModelSpec, layout: Layout, quant: QuantConfig) -> str | None:
    """Block-quantized FP8 needs every TP shard of a weight to hold whole ``block_n``-wide scale blocks.

    Experts: ``Fp8MoEMethod.create_weights`` refuses an expert intermediate per partition (moe_intermediate / etp)
    that is not a multiple of block_n; dense MLPs: ``validate_fp8_block_shape`` refuses an output partition of
    gate/up (intermediate / tp) that is not (vllm/model_executor/layers/quantization/fp8.py). Attention shards are
    whole heads of head_dim 128, a multiple of the 128-wide blocks of Qwen's FP8 checkpoints.
    """
    if quant.method != "fp8":
        return None
    block_n = quant.block_size[0]
    if spec.is_moe:
        width = spec.moe_intermediate_size // layout.etp
        if width % block_n:
            return (f"ValueError: The output_size of gate's and up's weight = {width} is not divisible by weight "
                    f"quantization block_n = {block_n}. (FP8 experts split over {layout.etp} ranks; use expert "
                    f"parallel so that each rank holds whole experts)")
    width = spec.intermediate_size // layout.tp
    if width % block_n and (not spec.is_moe or any(not spec.is_moe_layer(i) for i in range(spec.num_layers))):
        return (f"ValueError: Weight output_partition_size = {width} is not divisible by weight quantization "
                f"block_n = {block_n}. (FP8 MLP shards of --tp {layout.tp})")
    return None


def fp8_hardware_refusal(quant: QuantConfig, gpu_name: str, compute_capability: str | None) -> str | None:
    """FP8 weights need compute capability ≥ 8.0: native FP8 GEMMs on 8.9+, the weight-only Marlin fallback on
    8.0–8.6 (vllm/model_executor/layers/quantization/fp8.py, ``Fp8Config.get_min_capability`` = 80)."""
    if quant.method != "fp8" or compute_capability is None or float(compute_capability) >= 8.0:
        return None
    return f"vLLM's FP8 weights need compute capability ≥ 8.0 (Marlin fallback); {gpu_name} has {compute_capability}"


def expert_parallel_refusal(spec: ModelSpec, layout: Layout) -> str | None:
    """vLLM has expert parallelism off (each expert split over the TP ranks) or on over every rank of the stage:
    ``--enable-expert-parallel`` sets the EP size to tp × dp (vllm/config/parallel.py; FusedMoE)."""
    if not spec.is_moe or layout.ep in (1, layout.tp * layout.dp):
        return None
    return (f"vLLM runs expert parallel over all tp × dp = {layout.tp * layout.dp} ranks (--enable-expert-parallel) "
            f"or not at all; --ep {layout.ep} is not a layout vLLM has")


def max_model_len_refusal(spec: ModelSpec, max_model_len: int) -> str | None:
    """A ``max_model_len`` beyond the model's window (vllm/config ``_get_and_verify_max_len``)."""
    if max_model_len <= spec.max_position_embeddings:
        return None
    return (f"User-specified max_model_len ({max_model_len}) is greater than the derived max_model_len "
            f"(max_position_embeddings={spec.max_position_embeddings} in the model's config.json); "
            "enable rope scaling (YaRN) in the config to serve longer requests")


def loading_refusal(rank: int, loading_bytes: int, free_bytes: int) -> str | None:
    """The weights alone do not fit: torch's CUDA OOM while loading."""
    if loading_bytes <= free_bytes:
        return None
    return (f"CUDA out of memory while loading the model: rank {rank} needs {_gib(loading_bytes)} GiB of weights, "
            f"{_gib(free_bytes)} GiB are free")


@dataclass(frozen=True, slots=True)
class CaptureCheck:
    """Whether CUDA graphs captured after the KV cache fit in what is left: a refusal, a risk, or neither."""

    refusal: str | None = None
    risk: str | None = None


def graph_capture_check(rank: int, capture_bytes: int, warmup_bytes: int, left_bytes: int, under: float,
                        kv_given: bool) -> CaptureCheck:
    """CUDA graphs captured after the KV cache is allocated (not subtracted from its budget, ``VllmRules``; or the
    KV size given outright, which returns before any profile) take their memory from what is left, and the last
    stage's sampler warm-up runs after them (v1/worker/gpu_worker.py@v0.10.2 … @v0.33.0 compile_or_warm_up_model:
    capture_model, then _dummy_sampler_run "after capture_model on purpose"): torch's CUDA OOM when capture +
    warm-up exceed it. A risk when they fit at the estimate but not at the high edge of the graph memory's held-out
    band: ``under`` is the largest under-estimate held out (engines/bands.py), so the capture may take up to
    capture / (1 − under)."""
    fix = "a smaller --kv-cache-memory-bytes" if kv_given else "a lower --gpu-memory-utilization"
    need = capture_bytes + warmup_bytes
    warm = f" and the sampler warm-up after it {_gib(warmup_bytes)} GiB" if warmup_bytes else ""
    if need > left_bytes:
        return CaptureCheck(refusal=(
            f"CUDA out of memory capturing CUDA graphs after the KV cache: rank {rank} needs about "
            f"{_gib(capture_bytes)} GiB for them{warm}, {_gib(max(0, left_bytes))} GiB are left; --enforce-eager "
            f"captures none, or {fix} leaves them more"))
    high = int(capture_bytes / (1 - under)) if 0 < under < 1 else capture_bytes
    if high + warmup_bytes <= left_bytes:
        return CaptureCheck()
    return CaptureCheck(risk=(
        f"rank {rank}'s CUDA graphs, captured after the KV cache, need about {_gib(capture_bytes)} GiB{warm}, up to "
        f"{_gib(high)} GiB at the largest held-out under-estimate of graph memory ({100 * under:.1f} %), and "
        f"{_gib(left_bytes)} GiB are left (--enforce-eager, or {fix})"))


def kv_cache_refusal(available_bytes: int, blocks: int, request_blocks: int, block_size: int, page_bytes: int,
                     layers: int, max_model_len: int) -> str | None:
    """No memory for cache blocks, or fewer blocks than one request of ``max_model_len`` needs
    (vllm/v1/core/kv_cache_utils.py, ``check_enough_kv_cache_memory``; vllm/v1/worker/gpu_worker.py)."""
    if available_bytes <= 0:
        return ("No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when "
                "initializing the engine.")
    if blocks >= request_blocks:
        return None
    needed = request_blocks * page_bytes * layers
    longest = blocks * block_size
    return (f"To serve at least one request with the models's max seq len ({max_model_len}), ({_gib(needed)} GiB KV "
            f"cache is needed, which is larger than the available KV cache memory ({_gib(available_bytes)} GiB). "
            + (f"Based on the available memory, the estimated maximum model length is {longest}. " if longest > 0 else "")
            + "Try increasing `gpu_memory_utilization` or decreasing `max_model_len` when initializing the engine.")


def vllm_layout_refusal(spec: ModelSpec, layout: Layout, quant: QuantConfig, max_model_len: int) -> str | None:
    """Every refusal vLLM makes from the model, layout and format alone, before sizing memory (first one wins)."""
    return (max_model_len_refusal(spec, max_model_len) or expert_parallel_refusal(spec, layout)
            or fp8_block_refusal(spec, layout, quant))


def sglang_loading_refusal(rank: int, usage_bytes: int, free_bytes: int) -> str | None:
    """The weights (and loading's side effects) exceed the free memory: torch's CUDA OOM while SGLang loads."""
    if usage_bytes <= free_bytes:
        return None
    return (f"CUDA out of memory while loading the weights: rank {rank} needs {usage_bytes / GiB:.2f} GB, "
            f"{free_bytes / GiB:.2f} GB free")


def sglang_pool_refusal(tokens: int) -> str | None:
    """Nothing left for the KV pool under ``mem_fraction_static`` (srt/model_executor/model_runner.py,
    ``init_memory_pool``)."""
    if tokens > 0:
        return None
    return "RuntimeError: Not enough memory. Please try to increase --mem-fraction-static."


def sglang_hybrid_refusal(slots: int, ratio: int, max_running: int, rest_gib: float, per_request: int,
                          explicit: bool) -> str | None:
    """A hybrid's state pool holds no slot, or too few for one running request. From 0.5.13 SGLang says so in its
    own words (model_executor/model_runner_kv_cache_mixin.py@v0.5.13 handle_max_mamba_cache and the max_num_reqs
    check; mem_cache/kv_cache_configurator.py@v0.5.16 the same); before, nothing it prints names it."""
    if slots > 0 and max_running > 0:
        return None
    if not explicit:
        return (f"max_mamba_cache_size={slots}, max_running_requests={max_running}: no request can run (this "
                "SGLang release has no message of its own for it); increase --mem-fraction-static")
    if slots <= 0:
        return ("RuntimeError: Not enough GPU memory for hybrid (mamba/linear-attention) state cache. Computed "
                f"max_mamba_cache_size={slots} (total_rest_memory={rest_gib:.2f} GB, mamba_cache_per_req="
                f"{per_request / (1 << 20):.2f} MB). Try: (1) reduce --max-running-requests, (2) increase "
                "--mem-fraction-static, (3) reduce --speculative-num-draft-tokens, or (4) use GPUs with more memory.")
    return ("RuntimeError: Hybrid (mamba/linear-attention) state cache is too small to serve any requests. "
            f"max_mamba_cache_size={slots}, mamba_ratio={ratio}, resulting max_num_reqs={max_running}. Try: (1) "
            "reduce --max-running-requests, (2) increase --mem-fraction-static, or (3) use GPUs with more memory.")
