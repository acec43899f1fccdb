"""vLLM: what it logs at start-up and whether it starts, per rank.

Sources (vLLM v0.10.2 / v0.11.0 unless noted):
- vllm/v1/worker/gpu_worker.py ``determine_available_memory``: requested = total × gpu_memory_utilization;
  available KV cache memory = requested − (model loading + torch peak increase + non-torch increase).
  CUDA graphs are captured afterwards and not subtracted.
- vllm/v1/worker/gpu_model_runner.py ``load_model`` ("Model loading took X GiB": torch bytes after − before);
  ``profile_run``: a dummy forward of max_num_batched_tokens tokens, then a dummy sampler run over
  min(max_num_seqs, max_num_batched_tokens) requests × vocab logits (all-gathered over TP).
- Weights: merged QKV / gate_up and fused MoE w13/w2 hold the same bytes per rank as shardsim's shard rules
  (``QKVParallelLinear`` replicates KV heads when tp > kv heads; ``FusedMoE`` splits each expert's intermediate
  over tp, or places whole experts with expert parallel and adds an int32 ``expert_map`` [E]); the rotary
  ``cos_sin_cache`` [max_position, head_dim] in the model dtype (rotary_embedding/base.py); vocab padded to a
  multiple of 64 (``pad_vocab_size``; Qwen3's 151,936 needs none). GPTQ through Marlin drops ``qzeros`` of
  symmetric checkpoints (gptq_marlin.py).
- vllm/v1/core/kv_cache_utils.py: page = 2 · block · kv heads · head_dim · dtype per layer;
  num_blocks = available // page // layers (minimum over workers); "GPU KV cache size: num_blocks × block tokens";
  "Maximum concurrency …: num_blocks / ceil(max_model_len / block)"; ``check_enough_kv_cache_memory`` messages.
- V0 (0.8.5, ``VLLM_USE_V1=0``): KV = total × util − weights − non-torch (NCCL included) − activation peak.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from shardsim.constants import (
    CUDA_CONTEXT_BYTES,
    VLLM_BIG_GPU_BYTES,
    VLLM_CUDA_GRAPH_BYTES,
    VLLM_DEFAULT_BATCHED_TOKENS_BIG,
    VLLM_DEFAULT_BATCHED_TOKENS_SMALL,
    VLLM_DEFAULT_SEQS_BIG,
    VLLM_DEFAULT_SEQS_SMALL,
    VLLM_FLASHINFER_SAMPLER_BYTES_PER_LOGIT,
    VLLM_NON_TORCH_BYTES,
    VLLM_NON_TORCH_TP_EXTRA_BYTES,
    VLLM_SAMPLER_BYTES_PER_LOGIT,
    VLLM_V0_NON_TORCH_BYTES,
)
from shardsim.core.layout import Layout
from shardsim.core.memory.activations import activation_peak_bytes
from shardsim.core.memory.kv_cache import kv_bytes_per_token_per_layer
from shardsim.core.memory.weights import weight_model
from shardsim.core.model import ModelSpec, QuantConfig
from shardsim.engines.common import EngineRankReport, EngineReport, cublas_workspace_bytes, rank_weights
from shardsim.engines.refusals import kv_cache_refusal, loading_refusal, vllm_layout_refusal
from shardsim.errors import ShardsimError
from shardsim.units import DTYPE_BYTES


class VllmKnobs(BaseModel):
    """vLLM's own options (``vllm serve`` flags); None means vLLM's default for the GPU."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None
    max_num_batched_tokens: int | None = None
    max_num_seqs: int | None = None
    block_size: int = 16
    enforce_eager: bool = False
    kv_cache_dtype: str = "auto"
    sampler: str = "native"  # native (PyTorch top-k/top-p) or flashinfer
    version: str = "v1"      # v1 (0.10+) or v0 (0.8.x with VLLM_USE_V1=0)

    def checked(self) -> "VllmKnobs":
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ShardsimError(f"--gpu-memory-utilization {self.gpu_memory_utilization} is out of range; accepted: (0, 1]")
        for name in ("max_model_len", "max_num_batched_tokens", "max_num_seqs"):
            value = getattr(self, name)
            if value is not None and not 1 <= value <= 10_000_000:
                raise ShardsimError(f"--{name.replace('_', '-')} {value} is out of range; accepted: 1 … 10,000,000")
        if self.block_size not in (1, 8, 16, 32, 64, 128, 256):
            raise ShardsimError(f"--block-size {self.block_size} is not one vLLM accepts: 1, 8, 16, 32, 64, 128, 256")
        if self.kv_cache_dtype not in ("auto", "bf16", "fp16", "fp8", "fp8_e4m3", "fp8_e5m2"):
            raise ShardsimError(f"--kv-cache-dtype {self.kv_cache_dtype!r} is not known; accepted: auto, bf16, fp16, fp8")
        if self.sampler not in ("native", "flashinfer") or self.version not in ("v1", "v0"):
            raise ShardsimError("sampler must be native or flashinfer, version v1 or v0")
        return self


@dataclass(frozen=True, slots=True)
class VllmDefaults:
    max_num_seqs: int
    max_num_batched_tokens: int


def vllm_defaults(capacity_bytes: int, gpu_name: str) -> VllmDefaults:
    """The max_num_seqs and max_num_batched_tokens that ``vllm serve`` picks for this GPU."""
    if capacity_bytes >= VLLM_BIG_GPU_BYTES and "a100" not in gpu_name.lower():
        return VllmDefaults(VLLM_DEFAULT_SEQS_BIG, VLLM_DEFAULT_BATCHED_TOKENS_BIG)
    return VllmDefaults(VLLM_DEFAULT_SEQS_SMALL, VLLM_DEFAULT_BATCHED_TOKENS_SMALL)


def vllm_quant(quant: QuantConfig) -> QuantConfig:
    """GPTQ through Marlin keeps qweight and scales at their size and drops symmetric qzeros."""
    if quant.method == "gptq":
        return quant.model_copy(update={"method": "gptq_marlin"})
    return quant


def _loading_bytes(spec: ModelSpec, layout: Layout, dtype: str, quant: QuantConfig, weights: int, moe_layers: int) -> int:
    """"Model loading took": the rank's weights, the rotary ``cos_sin_cache`` [max_position, head_dim] in the model
    dtype, the int32 ``expert_map`` [E] under expert parallel, and GPTQ-Marlin MoE's int32 g_idx and
    g_idx_sort_indices per local expert ([E, H] for w13 and [E, I/tp] for w2; gptq_marlin.py,
    GPTQMarlinMoEMethod.create_weights: Qwen3-30B-A3B w4a16 on an RTX 3090, vLLM 0.8.5, logs 15.6841 GiB =
    weights + these 0.129 GiB)."""
    rotary = spec.max_position_embeddings * spec.head_dim * DTYPE_BYTES[dtype]
    expert_map = 4 * spec.num_experts if layout.ep > 1 else 0
    gidx_per_layer = 0
    if quant.method == "gptq" and spec.is_moe:
        local = -(-spec.num_experts // layout.ep)
        gidx_per_layer = local * 2 * 4 * (spec.hidden_size + spec.moe_intermediate_size // layout.etp)
    return weights + rotary + expert_map + moe_layers * gidx_per_layer


def _non_torch_bytes(knobs: VllmKnobs, layout: Layout) -> int:
    if knobs.version == "v0":
        return VLLM_V0_NON_TORCH_BYTES
    return VLLM_NON_TORCH_BYTES + (VLLM_NON_TORCH_TP_EXTRA_BYTES if layout.tp > 1 else 0)


def predict_vllm(spec: ModelSpec, layout: Layout, capacity_bytes: int, gpu_name: str, compute_capability: str | None,
                 dtype: str, quant: QuantConfig, knobs: VllmKnobs) -> EngineReport:
    knobs = knobs.checked()
    defaults = vllm_defaults(capacity_bytes, gpu_name)
    batched = knobs.max_num_batched_tokens or defaults.max_num_batched_tokens
    seqs = min(knobs.max_num_seqs or defaults.max_num_seqs, batched)
    max_len = knobs.max_model_len or spec.max_position_embeddings
    kv_bytes = 1 if knobs.kv_cache_dtype.startswith("fp8") else DTYPE_BYTES[dtype if dtype != "fp32" else "bf16"]
    page_per_layer = knobs.block_size * kv_bytes_per_token_per_layer(spec, layout.tp, kv_bytes)
    requested = int(capacity_bytes * knobs.gpu_memory_utilization)
    per_logit = VLLM_SAMPLER_BYTES_PER_LOGIT if knobs.sampler == "native" else VLLM_FLASHINFER_SAMPLER_BYTES_PER_LOGIT
    cublas = cublas_workspace_bytes(compute_capability)
    non_torch = _non_torch_bytes(knobs, layout)
    graphs = 0 if knobs.enforce_eager else VLLM_CUDA_GRAPH_BYTES
    moe_prefix = weight_model(spec, dtype, vllm_quant(quant)).moe_prefix
    ranks, refusal = [], None
    for held in rank_weights(spec, layout, dtype, vllm_quant(quant)):
        moe = moe_prefix[held.last_layer + 1] - moe_prefix[held.first_layer]
        forward = activation_peak_bytes(spec, layout.tp, layout.etp, batched, seqs, moe > 0, moe < held.layers, False)
        is_last = held.pp_rank == layout.pp - 1
        sampler = per_logit * seqs * spec.vocab_size + 2 * spec.hidden_size * (batched + 2 * seqs) if is_last else 0
        activation = max(forward, sampler) + cublas
        loading = _loading_bytes(spec, layout, dtype, quant, held.weight_bytes, moe)
        available = requested - loading - activation - non_torch
        blocks = max(0, available) // page_per_layer // held.layers
        ranks.append(EngineRankReport(
            rank=held.rank, layers=held.layers, model_loading_bytes=loading, activation_peak_bytes=activation,
            non_torch_bytes=non_torch, cuda_graph_bytes=graphs, available_kv_cache_bytes=available,
            kv_cache_bytes=blocks * page_per_layer * held.layers, kv_cache_tokens=blocks * knobs.block_size,
            used_bytes=CUDA_CONTEXT_BYTES + requested + graphs,
        ))
        refusal = refusal or loading_refusal(held.rank, loading, capacity_bytes - CUDA_CONTEXT_BYTES)
    refusal = refusal or vllm_layout_refusal(spec, layout, quant, max_len)
    worst = min(ranks, key=lambda r: r.available_kv_cache_bytes)
    blocks = min(r.kv_cache_tokens for r in ranks) // knobs.block_size
    per_request_blocks = -(-max_len // knobs.block_size)
    refusal = refusal or kv_cache_refusal(worst.available_kv_cache_bytes, blocks, per_request_blocks, knobs.block_size,
                                          page_per_layer, worst.layers, max_len)
    return EngineReport(
        engine="vllm", version=knobs.version,
        knobs={**knobs.model_dump(), "max_num_seqs": seqs, "max_num_batched_tokens": batched, "max_model_len": max_len},
        ranks=ranks, starts=refusal is None, refusal=refusal, kv_cache_tokens=blocks * knobs.block_size,
        max_concurrency=blocks / per_request_blocks,
        error_bands={"model_loading_bytes": 0.005, "activation_peak_bytes": 0.05, "non_torch_bytes": 0.5,
                     "kv_cache_tokens": 0.03, "cuda_graph_bytes": 1.0},
        notes=["activation peak: the sampler's dummy run over max_num_seqs × vocab logits dominates; with FlashInfer "
               "sampling (--sampler flashinfer) it is ~14 B per logit instead of 38"] if knobs.sampler == "native" else [],
    )
