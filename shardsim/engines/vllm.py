"""vLLM: what it logs at start-up and whether it starts, per rank, by release (``releases.VLLM_RULES``).

Sources (vLLM v0.10.2 / v0.11.0 unless noted; what changes between releases is in ``engines/releases.py``):
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

from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict

from shardsim.constants import (
    CUDA_CONTEXT_BYTES,
    CUSTOM_ALLREDUCE_RANK_DATA_BYTES,
    VLLM_BIG_GPU_BYTES,
    VLLM_CUDA_GRAPH_BYTES,
    VLLM_DEFAULT_BATCHED_TOKENS_BIG,
    VLLM_DEFAULT_BATCHED_TOKENS_SMALL,
    VLLM_DEFAULT_SEQS_BIG,
    VLLM_DEFAULT_SEQS_SMALL,
    VLLM_FLASHINFER_SAMPLER_BYTES_PER_LOGIT,
    VLLM_FLASHINFER_WORKSPACE_BYTES,
    VLLM_LLM_BATCHED_TOKENS_BIG,
    VLLM_LLM_BATCHED_TOKENS_SMALL,
    VLLM_NON_TORCH_BYTES,
    VLLM_SAMPLER_BYTES_PER_LOGIT,
    VLLM_V0_NON_TORCH_BYTES,
    VLLM_V2_SAMPLER_BYTES_PER_LOGIT,
)
from shardsim.core.layout import Layout, rank_groups
from shardsim.core.memory.activations import activation_peak, activation_peak_bytes
from shardsim.core.memory.kv_cache import kv_bytes_per_token_per_layer
from shardsim.core.memory.runtime import DEFAULT_FABRIC, Fabric, nccl_communicator_bytes, nvls_bytes, runtime_bytes
from shardsim.core.memory.weights import weight_model
from shardsim.core.model import ModelSpec, QuantConfig
from shardsim.engines.bands import error_bands
from shardsim.engines import vllm_hybrid, vllm_multimodal
from shardsim.engines.common import EngineRankReport, EngineReport, cublas_workspace_bytes, rank_weights
from shardsim.engines.refusals import kv_cache_refusal, loading_refusal, vllm_layout_refusal
from shardsim.engines.registry import Engine, SuggestKnobs
from shardsim.engines.releases import NEWEST, VllmRules, resolve
from shardsim.errors import ShardsimError
from shardsim.units import DTYPE_BYTES, GiB


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
    sampler: str | None = None  # native (PyTorch sort), triton (0.17+) or flashinfer; None: the release's default
    version: str = "v1"         # the engine core: v1, or v0 (VLLM_USE_V1=0, up to 0.10.x)
    engine_version: str | None = None   # the vLLM release (None: the newest modelled)
    kv_cache_memory_bytes: int | None = None  # 0.10.2+: the KV cache size, bypassing gpu_memory_utilization
    max_model_len_auto: bool = False    # 0.14+: --max-model-len auto / -1
    startup_free_bytes: int | None = None  # free memory at start when other processes hold some (None: all but the context)
    entrypoint: str = "serve"  # serve (OpenAI server) or llm (the offline vllm.LLM class): their own defaults
    install: str = "pip"  # pip (PyPI wheel: no flashinfer before 0.20) or docker (vllm/vllm-openai: flashinfer installed)
    # Hybrids only (engines/vllm_hybrid.py); None: not given, vLLM's default
    mamba_cache_dtype: str | None = None  # conv state (and before 0.17 the temporal state): auto = the model's
    mamba_ssm_cache_dtype: str | None = None  # temporal state, 0.17+: auto = the conv's (Qwen3.5: config's)
    mamba_cache_mode: str | None = None  # none | align | all (0.15+)
    enable_prefix_caching: bool | None = None  # None: the release's default (on for hybrids from 0.26)
    # A vision tower only (Qwen3-VL, Qwen3.5 / 3.6; engines/vllm_multimodal.py): image=N,video=N (unnamed: 999);
    limit_mm_per_prompt: str | None = None  # weights | data; the profile's encoder run skipped; longest image edge²
    mm_encoder_tp_mode: str = "weights"
    skip_mm_profiling: bool = False
    mm_max_pixels: int | None = None

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
        if self.sampler not in (None, "native", "triton", "flashinfer"):
            raise ShardsimError(f"--sampler {self.sampler!r:.40} is not known; accepted: native, triton, flashinfer")
        if self.entrypoint not in ("serve", "llm"):
            raise ShardsimError(f"--vllm-entrypoint {self.entrypoint!r:.40} is not known; accepted: serve, llm")
        if self.install not in ("pip", "docker"):
            raise ShardsimError(f"--vllm-install {self.install!r:.40} is not known; accepted: pip, docker")
        if self.version not in ("v1", "v0"):
            raise ShardsimError(f"--vllm-version {self.version!r:.40} is not known; accepted: v1, v0")
        if self.kv_cache_memory_bytes is not None and not 1 <= self.kv_cache_memory_bytes <= 1 << 50:
            raise ShardsimError(f"--kv-cache-memory-bytes {self.kv_cache_memory_bytes} is out of range; accepted: "
                                "1 B … 1 PiB")
        vllm_multimodal.check_knobs(self)
        vllm_hybrid.check_knobs(self)
        return self


@dataclass(frozen=True, slots=True)
class VllmDefaults:
    max_num_seqs: int
    max_num_batched_tokens: int


def vllm_defaults(capacity_bytes: int, gpu_name: str, rules: VllmRules = NEWEST["vllm"],
                  max_model_len: int | None = None, entrypoint: str = "serve") -> VllmDefaults:
    """The max_num_seqs and max_num_batched_tokens that ``vllm serve`` (or the offline ``vllm.LLM``) picks for this
    GPU at this release (``VllmRules.a100_small_defaults`` and ``clamp_defaults``, cited there; the LLM class
    takes 16,384 / 8,192 tokens on big / other GPUs, engine/arg_utils.py@v0.10.2 _set_default_args_v1)."""
    big = capacity_bytes >= VLLM_BIG_GPU_BYTES and not (rules.a100_small_defaults and "a100" in gpu_name.lower())
    seqs, tokens = ((VLLM_DEFAULT_SEQS_BIG, VLLM_DEFAULT_BATCHED_TOKENS_BIG) if big
                    else (VLLM_DEFAULT_SEQS_SMALL, VLLM_DEFAULT_BATCHED_TOKENS_SMALL))
    if entrypoint == "llm":
        tokens = VLLM_LLM_BATCHED_TOKENS_BIG if big else VLLM_LLM_BATCHED_TOKENS_SMALL
    if rules.clamp_defaults and max_model_len:
        tokens = min(seqs * max_model_len, tokens)
        seqs = min(seqs, tokens)
    return VllmDefaults(seqs, tokens)


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


def _non_torch_bytes(knobs: VllmKnobs, rules: VllmRules, layout: Layout, rank: int, fabric: Fabric) -> int:
    """Non-torch memory the profile charges: the kernels and handles loaded during start-up (fitted, TP1) plus,
    at TP > 1, the TP group's NCCL buffers, NVLS, custom all-reduce IPC buffers (its 8 MiB rank data is a torch
    tensor) and symmetric-memory buffer on this fabric (``core.memory.runtime``), and at PP > 1 the PP group's
    NCCL communicator (vllm/distributed/device_communicators/cuda_communicator.py: PyNccl for every group but EP). The 0.8.5–0.9.0 profiler charges
    everything used on the device, the CUDA context included."""
    if knobs.version == "v0":
        return VLLM_V0_NON_TORCH_BYTES
    rt = runtime_bytes(rank, layout, False, fabric)
    groups_bytes = 0
    if layout.tp > 1:
        groups = rank_groups(rank, layout)
        groups_bytes = (nccl_communicator_bytes(groups.tp, fabric) + nvls_bytes(groups.tp, fabric)
                        + max(0, rt.custom_allreduce - CUSTOM_ALLREDUCE_RANK_DATA_BYTES) + rt.symmetric_memory)
    if layout.pp > 1:  # the PP group's own PyNccl communicator (every non-EP group gets one, cuda_communicator.py)
        stride = layout.tp * layout.dp
        groups_bytes += nccl_communicator_bytes(range(rank % stride, layout.world_size, stride), fabric)
    context = CUDA_CONTEXT_BYTES if rules.profiler == "absolute" else 0
    return VLLM_NON_TORCH_BYTES + groups_bytes + context


def _forward_peak(spec: ModelSpec, layout: Layout, tokens: int, seqs: int, has_moe: bool, has_dense: bool,
                  skip_attention: bool, gdn: str | None = None) -> int:
    """The profile's dummy forward (``memory.activations``; ``gdn``: ``vllm_hybrid.gdn_profile``); Model Runner V2
    profiles with ``skip_attn=True`` (v1/worker/gpu/model_runner.py@v0.22.0 profile_run): no attention transient."""
    if not skip_attention:
        return activation_peak_bytes(spec, layout.tp, layout.etp, tokens, seqs, has_moe, has_dense, False, gdn=gdn)
    peak = activation_peak(spec, layout.tp, layout.etp, tokens, seqs, has_moe, has_dense, False, gdn=gdn)
    return peak.resident + max(peak.mlp, peak.linear_attention)


def _sampler(knobs: VllmKnobs, rules: VllmRules) -> str:
    """The sampler the profile runs: the knob, else FlashInfer where this release uses it whenever installed and
    the install has it, else the release's default."""
    if knobs.sampler:
        return knobs.sampler
    if rules.flashinfer_when_installed and knobs.install == "docker":
        return "flashinfer"
    return rules.sampler


def v2_sampler_state_bytes(spec: ModelSpec, max_num_reqs: int) -> int:
    """Model Runner V2's persistent penalty state, allocated with the sampler at load (sample/penalties.py@v0.27.1,
    PenaltiesState: ``output_bin_counts`` int32 [max_num_reqs, V] and ``prompt_bin_mask`` int32
    [max_num_reqs, ceil(V/32)]). From 0.27 ``memory_profiling`` charges all memory consumed since the init
    snapshot (utils/mem_utils.py@v0.27.0), these included."""
    return max_num_reqs * spec.vocab_size * 4 + max_num_reqs * -(-spec.vocab_size // 32) * 4


def _per_logit(knobs: VllmKnobs, rules: VllmRules) -> int:
    sampler = _sampler(knobs, rules)
    return VLLM_SAMPLER_BYTES_PER_LOGIT if sampler == "native" else VLLM_FLASHINFER_SAMPLER_BYTES_PER_LOGIT


def _shape(spec: ModelSpec, capacity_bytes: int, gpu_name: str, knobs: VllmKnobs, rules: VllmRules) -> tuple[int, int, int]:
    """(max_num_seqs, max_num_batched_tokens, max_model_len) as this release resolves them."""
    max_len = knobs.max_model_len or spec.max_position_embeddings
    defaults = vllm_defaults(capacity_bytes, gpu_name, rules, max_len, knobs.entrypoint)
    batched = knobs.max_num_batched_tokens or defaults.max_num_batched_tokens
    return min(knobs.max_num_seqs or defaults.max_num_seqs, batched), batched, max_len


def _release_refusal(knobs: VllmKnobs, rules: VllmRules, capacity_bytes: int) -> str | None:
    """What this release refuses before loading anything."""
    if knobs.version == "v0" and not rules.v0_available:
        return f"the V0 engine (VLLM_USE_V1=0) is gone in {rules.label}; use --vllm-version v1"
    if knobs.kv_cache_memory_bytes is not None and not rules.kv_cache_memory_bytes:
        return f"--kv-cache-memory-bytes does not exist in {rules.label} (added in 0.10.2)"
    if knobs.max_model_len_auto and not rules.max_model_len_auto:
        return f"--max-model-len auto does not exist in {rules.label} (added in 0.14.0)"
    free = knobs.startup_free_bytes if knobs.startup_free_bytes is not None else capacity_bytes - CUDA_CONTEXT_BYTES
    requested = int(capacity_bytes * knobs.gpu_memory_utilization)
    if rules.startup_free_check and knobs.kv_cache_memory_bytes is None and free < requested:
        return (f"ValueError: Free memory on device ({free / GiB:.2f}/{capacity_bytes / GiB:.2f} GiB) on startup is "
                f"less than desired GPU memory utilization ({knobs.gpu_memory_utilization}, {requested / GiB:.2f} GiB)")
    return None


def predict_vllm(spec: ModelSpec, layout: Layout, capacity_bytes: int, gpu_name: str, compute_capability: str | None,
                 dtype: str, quant: QuantConfig, knobs: VllmKnobs, fabric: Fabric = DEFAULT_FABRIC) -> EngineReport:
    knobs = knobs.checked()
    vllm_hybrid.dense_knob_check(spec, knobs)
    vision_model, limits = spec.vision is not None, vllm_multimodal.parse_limits(knobs.limit_mm_per_prompt)
    spec = vllm_multimodal.served_spec(spec, knobs, limits)
    release = resolve("vllm", knobs.engine_version)
    rules = release.rules
    seqs, batched, max_len = _shape(spec, capacity_bytes, gpu_name, knobs, rules)
    kv_bytes = 1 if knobs.kv_cache_dtype.startswith("fp8") else DTYPE_BYTES[dtype if dtype != "fp32" else "bf16"]
    page_per_layer = knobs.block_size * kv_bytes_per_token_per_layer(spec, layout.tp, kv_bytes)
    hybrid = (vllm_hybrid.setup(spec, layout, knobs, release, dtype, kv_bytes, compute_capability)
              if spec.is_hybrid else None)
    requested = int(capacity_bytes * knobs.gpu_memory_utilization)
    per_logit = _per_logit(knobs, rules)
    cublas = cublas_workspace_bytes(compute_capability)
    graphs = 0 if knobs.enforce_eager else VLLM_CUDA_GRAPH_BYTES
    moe_prefix = weight_model(spec, dtype, vllm_quant(quant)).moe_prefix
    ranks, pools = [], []
    refusal = _release_refusal(knobs, rules, capacity_bytes) or (hybrid.refusal if hybrid else None)
    v2 = knobs.version == "v1" and rules.uses_v2(spec.is_moe, quant.method != "none")
    subtract_graphs = not knobs.enforce_eager and rules.graphs_subtracted(v2)
    attention_workspace = (VLLM_FLASHINFER_WORKSPACE_BYTES
                           if rules.flashinfer_attention_sm100 and str(compute_capability).startswith("10.") else 0)
    encoder = vllm_multimodal.profile_for(spec, layout.tp, dtype, limits, knobs, seqs, batched)
    for held in rank_weights(spec, layout, dtype, vllm_quant(quant)):
        moe = moe_prefix[held.last_layer + 1] - moe_prefix[held.first_layer]
        forward = _forward_peak(spec, layout, batched, seqs, moe > 0, moe < held.layers, v2,
                                vllm_hybrid.gdn_profile(spec, rules, held.first_layer, held.last_layer))
        is_last = held.pp_rank == layout.pp - 1
        logit_bytes = (VLLM_V2_SAMPLER_BYTES_PER_LOGIT * (1 + (1 / layout.tp if layout.tp > 1 else 0))) if v2 else per_logit
        sampler = int(logit_bytes * seqs * spec.vocab_size) + 2 * spec.hidden_size * (batched + 2 * seqs) if is_last else 0
        vision_here = spec.vision is not None and rules.vision_on_stage(held.pp_rank, v2)
        activation = max(forward, sampler)
        if encoder and vision_here:   # the encoder's run, then its outputs held through the language model's
            activation = max(encoder.forward_peak_bytes, encoder.output_bytes + activation)
        activation += cublas + attention_workspace
        loading = _loading_bytes(spec, layout, dtype, quant, held.weight_bytes, moe) + vllm_multimodal.extra_weight_bytes(
            spec, layout, dtype, vllm_quant(quant), held.rank, vision_here, knobs.mm_encoder_tp_mode, batched)
        non_torch = _non_torch_bytes(knobs, rules, layout, held.rank, fabric)
        if v2 and rules.profiler == "consumed":  # persistent torch buffers since the snapshot are charged (0.27+)
            non_torch += v2_sampler_state_bytes(spec, seqs)
        available = requested - loading - activation - non_torch - (graphs if subtract_graphs else 0)
        if knobs.kv_cache_memory_bytes is not None:
            available = knobs.kv_cache_memory_bytes
        blocks = max(0, available) // page_per_layer // held.layers
        cache_bytes, tokens = blocks * page_per_layer * held.layers, blocks * knobs.block_size
        if hybrid:  # one pool of K/V and state pages (engines/vllm_hybrid.py); tokens are set below
            pools.append(vllm_hybrid.rank_pool(spec, held.first_layer, held.last_layer, available, hybrid))
            cache_bytes = pools[-1].num_blocks * hybrid.page_bytes * pools[-1].group_size
        ranks.append(EngineRankReport(
            rank=held.rank, layers=held.layers, model_loading_bytes=loading, activation_peak_bytes=activation,
            non_torch_bytes=non_torch, cuda_graph_bytes=graphs, available_kv_cache_bytes=available,
            kv_cache_bytes=cache_bytes, kv_cache_tokens=tokens,
            used_bytes=CUDA_CONTEXT_BYTES + loading + activation + non_torch + cache_bytes + graphs,
        ))
        refusal = refusal or loading_refusal(held.rank, loading, capacity_bytes - CUDA_CONTEXT_BYTES)
    cache = (_hybrid_cache(spec, knobs, rules, hybrid, pools, ranks, seqs, max_len) if hybrid
             else _dense_cache(spec, knobs, rules, ranks, page_per_layer, max_len))
    refusal = refusal or vllm_layout_refusal(spec, layout, quant, cache.max_len) or cache.refusal
    knob_values = {k: v for k, v in knobs.model_dump().items()
                   if (hybrid or k not in vllm_hybrid.HYBRID_KNOBS) and (vision_model or k not in vllm_multimodal.VISION_KNOBS)}
    if hybrid and rules.mamba_cache_mode:  # what vLLM runs with
        knob_values |= {"mamba_cache_mode": hybrid.mode, "enable_prefix_caching": hybrid.mode == "align"}
    return EngineReport(
        engine="vllm", version=release.version,
        rules=rules.to_dict(hybrid=hybrid is not None, vision=vision_model) | {
            "engine_core": knobs.version, "model_runner": "v2" if v2 else "v1",
            "sampler": "v2" if v2 else _sampler(knobs, rules), "cuda_graphs_subtracted": subtract_graphs},
        knobs={**knob_values, "sampler": _sampler(knobs, rules), "max_num_seqs": seqs,
               "max_num_batched_tokens": batched, "max_model_len": cache.max_len},
        ranks=ranks, starts=refusal is None, refusal=refusal, kv_cache_tokens=cache.tokens,
        max_concurrency=cache.concurrency, error_bands=error_bands("vllm", rules.label),
        notes=([release.warning] if release.warning else []) + [_sampler_note(knobs, rules, seqs, spec.vocab_size, v2)]
        + list(cache.notes) + ([encoder.describe()] if encoder else []), **cache.fields,
    )


@dataclass(frozen=True, slots=True)
class CacheFigures:
    """What the KV cache (a hybrid's shared pool) gives: the max_model_len in effect, the logged tokens and
    concurrency, the refusal, notes and (hybrids) the report's pool fields."""

    max_len: int
    tokens: int
    concurrency: float
    refusal: str | None
    notes: tuple[str, ...] = ()
    fields: dict = field(default_factory=dict)


def _dense_cache(spec: ModelSpec, knobs: VllmKnobs, rules: VllmRules, ranks: list[EngineRankReport],
                 page_per_layer: int, max_len: int) -> CacheFigures:
    """Every layer's paged K/V: blocks = the fewest over the ranks, ``check_enough_kv_cache_memory``."""
    blocks = min(r.kv_cache_tokens for r in ranks) // knobs.block_size
    if knobs.max_model_len_auto and rules.max_model_len_auto:
        max_len = min(spec.max_position_embeddings, blocks * knobs.block_size) or max_len
    worst = min(ranks, key=lambda r: r.available_kv_cache_bytes)
    per_request_blocks = -(-max_len // knobs.block_size)
    refusal = kv_cache_refusal(worst.available_kv_cache_bytes, blocks, per_request_blocks, knobs.block_size,
                               page_per_layer, worst.layers, max_len)
    return CacheFigures(max_len, blocks * knobs.block_size, blocks / per_request_blocks, refusal)


def _hybrid_cache(spec: ModelSpec, knobs: VllmKnobs, rules: VllmRules, hybrid: vllm_hybrid.HybridSetup,
                  pools: list, ranks: list[EngineRankReport], seqs: int, max_len: int) -> CacheFigures:
    """The shared pool of a hybrid (``engines.vllm_hybrid``); each rank's logged tokens set here, once max_model_len
    is known."""
    if knobs.max_model_len_auto and rules.max_model_len_auto:
        longest = min(vllm_hybrid.longest_request(p, hybrid) for p in pools)
        max_len = min(spec.max_position_embeddings, longest) or max_len
    for rank, pool in zip(ranks, pools):
        rank.kv_cache_tokens = vllm_hybrid.logged_tokens(pool, hybrid, rules, max_len)
    s = vllm_hybrid.summary(pools, hybrid, rules, max_len, seqs, knobs.enforce_eager)
    worst = min(zip(ranks, pools), key=lambda rp: rp[1].num_blocks)
    refusal = kv_cache_refusal(worst[0].available_kv_cache_bytes, s.num_blocks, s.blocks_per_request,
                               hybrid.block_size, hybrid.page_bytes, worst[1].group_size, max_len)
    return CacheFigures(max_len, s.kv_cache_tokens, s.max_concurrency, refusal or s.refusal, s.notes,
                        s.fields)


SAMPLER_SOURCES = {
    "native": "PyTorch sort of the fp32 logits with int64 indices, v1/sample/ops/topk_topp_sampler.py@v0.11.1",
    "triton": "in-place Triton top-k/top-p, no sort buffers, v1/sample/ops/topk_topp_sampler.py@v0.17.0",
    "flashinfer": "FlashInfer top-k/top-p: opted in (VLLM_USE_FLASHINFER_SAMPLER=1), or installed up to 0.11.0 "
                  "(topk_topp_sampler.py@v0.11.0; the vllm/vllm-openai image installs it, docker/Dockerfile)",
}


def _sampler_note(knobs: VllmKnobs, rules: VllmRules, seqs: int, vocab: int, v2: bool) -> str:
    if v2:
        return (f"activation peak: Model Runner V2's dummy sampler over {seqs:,} × {vocab:,} logits reads the bf16 "
                f"logits in place ({VLLM_V2_SAMPLER_BYTES_PER_LOGIT} B per logit, v1/worker/gpu/model_runner.py@v0.27.1 "
                "_dummy_sampler_run); its forward skips attention"
                + ("; its persistent penalty state is charged (utils/mem_utils.py@v0.27.0)"
                   if rules.profiler == "consumed" else ""))
    sampler = _sampler(knobs, rules)
    return (f"activation peak: the profile's dummy sampler over {seqs:,} × {vocab:,} logits, "
            f"{_per_logit(knobs, rules)} B per logit ({sampler}: {SAMPLER_SOURCES[sampler]})")


def serve_command(spec: ModelSpec, layout: Layout, knobs: dict) -> str:
    """``vllm serve`` with the layout's degrees and the knobs that differ from vLLM's defaults."""
    parts = [f"vllm serve Qwen/{spec.name}", f"--tensor-parallel-size {layout.tp}"]
    if layout.pp > 1:
        parts.append(f"--pipeline-parallel-size {layout.pp}")
    names = {"max_model_len": "--max-model-len", "kv_cache_dtype": "--kv-cache-dtype",
             "gpu_memory_utilization": "--gpu-memory-utilization"}
    return " ".join(parts + [f"{flag} {knobs[key]}" for key, flag in names.items() if knobs.get(key) not in (None, "auto")])


def predict(request) -> EngineReport:
    """``predict_vllm`` for a ``requests.ServeRequest``."""
    hw = request.hardware
    return predict_vllm(request.model, request.layout, hw.capacity_bytes, hw.gpu_name, hw.compute_capability,
                        request.workload.dtype, request.quant, request.engine.knobs, hw.fabric)


ENGINE = Engine("vllm", VllmKnobs, predict, SuggestKnobs("max_model_len", "gpu_memory_utilization", "fp8", serve_command))
