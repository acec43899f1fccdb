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

from shardsim.constants import CUDA_CONTEXT_BYTES, VLLM_FLASHINFER_WORKSPACE_BYTES
from shardsim.core.layout import Layout
from shardsim.core.memory.kv_cache import kv_bytes_per_token_per_layer
from shardsim.core.memory.runtime import DEFAULT_FABRIC, Fabric
from shardsim.core.memory.weights import weight_model
from shardsim.core.model import ModelSpec, QuantConfig
from shardsim.engines.bands import error_bands, under_band
from shardsim.engines import vllm_hybrid, vllm_multimodal, vllm_profile as prof
from shardsim.engines.vllm_profile import forward_peak as _forward_peak  # noqa: F401  (tests read it here)
from shardsim.engines.common import EngineRankReport, EngineReport, cublas_workspace_bytes, rank_weights
from shardsim.engines.refusals import graph_capture_check, kv_cache_refusal, loading_refusal, vllm_layout_refusal
from shardsim.engines.registry import Engine, SuggestKnobs
from shardsim.engines.vllm_knobs import VllmDefaults, VllmKnobs, vllm_defaults  # noqa: F401  (imported from here too)
from shardsim.engines.releases import VllmRules, resolve
from shardsim.units import DTYPE_BYTES, GiB


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


@dataclass(frozen=True, slots=True)
class _Profile:
    """What every rank's profile shares: the model as served, the knobs and rules, the resolved shape."""

    spec: ModelSpec
    layout: Layout
    dtype: str
    quant: QuantConfig
    knobs: VllmKnobs
    rules: VllmRules
    v2: bool
    seqs: int
    batched: int
    fabric: Fabric
    compute_capability: str | None
    gpu_name: str
    encoder: object
    moe_prefix: tuple
    non_torch: tuple[int, ...]  # each rank's non-torch memory (``vllm_profile.ranks_non_torch_bytes``)


@dataclass(frozen=True, slots=True)
class _RankTerms:
    loading: int
    activation: int
    non_torch: int
    graphs: prof.CudaGraphs | None
    moe_workspace: tuple[int, int] = (0, 0)  # (bytes kept under the sampler, how much they raise the peak)
    intermediate: int = 0
    state: int = 0
    persistent: int = 0  # what of the activation peak stays allocated after the profile (workspaces, kept buffers)
    warmup: int = 0      # the last stage's sampler warm-up after graph capture (refusals.graph_capture_check)


def _rank_terms(p: _Profile, held, memo: dict) -> _RankTerms:
    """One rank's profile: loading, the activation peak (forward, sampler and what stays allocated under it),
    non-torch memory (and V2's persistent buffers the 0.27+ profiler charges), its CUDA graphs. The rank enters
    only through its stage (first or last or neither, its layers), its weight bytes, the vision tower it holds and
    its groups' non-torch memory: ranks alike in these (``memo``, one per prediction) share one profile — middle
    stages of equal layers too."""
    vision_here = p.spec.vision is not None and p.rules.vision_on_stage(held.pp_rank, p.v2)
    extra = 0
    if p.spec.vision is not None:  # the same for every rank of a TP rank and stage kind
        extra_key = ("extra", held.rank % p.layout.tp, held.pp_rank == 0, vision_here)
        extra = memo.get(extra_key)
        if extra is None:
            extra = memo[extra_key] = vllm_multimodal.extra_weight_bytes(
                p.spec, p.layout, p.dtype, vllm_quant(p.quant), held.rank, vision_here, p.knobs.mm_encoder_tp_mode,
                p.batched)
    groups = p.non_torch[held.rank]
    if p.spec.linear is not None:  # a hybrid's stages differ by which of their layers are linear attention
        layers = (held.first_layer, held.last_layer)
    else:  # other stages only by how many layers they hold and how many of those hold experts
        layers = (held.layers, p.moe_prefix[held.last_layer + 1] - p.moe_prefix[held.first_layer])
    key = (held.pp_rank == 0, held.pp_rank == p.layout.pp - 1, vision_here, layers, held.weight_bytes, extra, groups)
    hit = memo.get(key)
    if hit is None:
        hit = memo[key] = _stage_terms(p, held, vision_here, extra, groups)
    return hit


def _stage_terms(p: _Profile, held, vision_here: bool, extra_weights: int, groups_non_torch: int) -> _RankTerms:
    """``_rank_terms`` given the rank's own parts: the vision tower's extra bytes and the non-torch memory."""
    spec, layout, rules, knobs = p.spec, p.layout, p.rules, p.knobs
    moe = p.moe_prefix[held.last_layer + 1] - p.moe_prefix[held.first_layer]
    has_moe, has_dense = moe > 0, moe < held.layers
    forward = prof.forward_peak(spec, layout, p.batched, p.seqs, has_moe, has_dense, p.v2,
                            vllm_hybrid.gdn_profile(spec, rules, held.first_layer, held.last_layer))
    is_first, is_last = held.pp_rank == 0, held.pp_rank == layout.pp - 1
    logit = prof.v2_per_logit(rules, layout.tp) if p.v2 else prof.per_logit(_sampler(knobs, rules))
    logits = int(logit * p.seqs * spec.vocab_size) if is_last else 0  # the dummy sampler's, in the profile and after
    sampler = logits + 2 * spec.hidden_size * (p.batched + 2 * p.seqs) if is_last else 0
    moe_ws = prof.moe_workspace_bytes(spec, layout.etp, p.batched) if has_moe and rules.moe_workspace_kept else 0
    inter = (prof.intermediate_tensor_bytes(spec, p.batched, p.dtype)
             if not is_first and prof.intermediate_charged(p.v2, rules) else 0)
    activation = activation_core = max(forward, sampler + moe_ws)
    if p.encoder and vision_here:   # the encoder's run, then its outputs held through the language model's
        activation = max(p.encoder.forward_peak_bytes, p.encoder.output_bytes + activation)
    attention_workspace = (VLLM_FLASHINFER_WORKSPACE_BYTES
                           if rules.flashinfer_attention_sm100 and str(p.compute_capability).startswith("10.") else 0)
    activation += cublas_workspace_bytes(p.compute_capability) + attention_workspace + (0 if p.v2 else inter)
    loading = _loading_bytes(spec, layout, p.dtype, p.quant, held.weight_bytes, moe) + extra_weights
    state = prof.v2_sampler_state_bytes(spec, p.seqs) if p.v2 and rules.profiler == "consumed" and is_last else 0
    non_torch = groups_non_torch + state + (inter if p.v2 else 0)
    graphs = prof.cuda_graphs(spec, layout.tp, layout.etp, held.layers, has_moe, has_dense, rules, p.v2, prof.GraphRun(
        p.seqs, p.batched, knobs.enforce_eager, knobs.version == "v0", prof.rocm(p.gpu_name)))
    kept = (moe_ws if is_last else 0, activation_core - max(forward, sampler))
    # kept after the profile: cuBLAS and attention workspaces (allocated once, cublas_workspace_bytes), a later
    # stage's receive buffers (intermediate_tensor_bytes), the kept fused-MoE workspaces (moe_workspace_bytes)
    persistent = cublas_workspace_bytes(p.compute_capability) + attention_workspace + (0 if p.v2 else inter) + moe_ws
    return _RankTerms(loading, activation, non_torch, graphs, kept, inter, state, persistent,
                      logits if knobs.version == "v1" else 0)


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
    ranks, pools, terms = [], [], []
    bands, start_risk, under = error_bands("vllm", rules.label), None, under_band("vllm", rules.label, "cuda_graph_bytes")
    context, others = prof.counted_context(knobs.version, rules), prof.others_bytes(rules, capacity_bytes, knobs.startup_free_bytes)
    refusal = _release_refusal(knobs, rules, capacity_bytes) or (hybrid.refusal if hybrid else None)
    v2 = knobs.version == "v1" and rules.uses_v2(spec.is_moe, quant.method != "none")
    profile = _Profile(spec, layout, dtype, quant, knobs, rules, v2, seqs, batched, fabric, compute_capability, gpu_name,
                       vllm_multimodal.profile_for(spec, layout.tp, dtype, limits, knobs, seqs, batched),
                       weight_model(spec, dtype, vllm_quant(quant)).moe_prefix,
                       prof.ranks_non_torch_bytes(knobs.version, rules, layout, fabric))
    alike = _shared_profiles(profile)
    sized: dict[tuple, tuple] = {}  # ranks of one profile and the same layers size their cache alike
    for held in rank_weights(spec, layout, dtype, vllm_quant(quant)):
        t = _rank_terms(profile, held, alike)
        terms.append(t)
        key = (id(t), held.first_layer, held.last_layer)  # t is kept in ``alike`` for the whole loop
        hit = sized.get(key)
        if hit is None:
            hit = sized[key] = _rank_cache(t, held, requested, page_per_layer, knobs, spec, hybrid, context)
        graphs, available, cache_bytes, tokens, used, pool = hit
        if pool is not None:  # one pool of K/V and state pages (engines/vllm_hybrid.py); tokens are set below
            pools.append(pool)
        ranks.append(EngineRankReport(
            rank=held.rank, layers=held.layers, model_loading_bytes=t.loading, activation_peak_bytes=t.activation,
            non_torch_bytes=t.non_torch, cuda_graph_bytes=graphs, available_kv_cache_bytes=available,
            kv_cache_bytes=cache_bytes, kv_cache_tokens=tokens, used_bytes=used,
        ))
        refusal = refusal or loading_refusal(held.rank, t.loading, capacity_bytes - CUDA_CONTEXT_BYTES)
        if t.graphs and (not t.graphs.subtracted or knobs.kv_cache_memory_bytes is not None):  # after the KV cache
            left = prof.left_for_graphs(capacity_bytes, context, t.loading + t.non_torch + t.persistent, cache_bytes,
                                        others)
            check = graph_capture_check(held.rank, graphs, t.warmup, left, under, knobs.kv_cache_memory_bytes is not None)
            refusal, start_risk = refusal or check.refusal, start_risk or check.risk
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
            "sampler": "v2" if v2 else _sampler(knobs, rules),
            "cuda_graphs_subtracted": bool(terms[0].graphs and terms[0].graphs.subtracted)},
        knobs={**knob_values, "sampler": _sampler(knobs, rules), "max_num_seqs": seqs,
               "max_num_batched_tokens": batched, "max_model_len": cache.max_len},
        ranks=ranks, starts=refusal is None, refusal=refusal, kv_cache_tokens=cache.tokens,
        max_concurrency=cache.concurrency, error_bands=bands, start_risk=None if refusal else start_risk,
        notes=_notes(release, profile, terms, ranks) + list(cache.notes)
        + ([profile.encoder.describe()] if profile.encoder else []), **cache.fields,
    )


def _rank_cache(t: _RankTerms, held, requested: int, page_per_layer: int, knobs: VllmKnobs, spec: ModelSpec,
                hybrid, context: int) -> tuple:
    """(CUDA-graph bytes, available KV bytes, KV cache bytes, tokens, used bytes, hybrid pool or None) of one rank:
    what the requested budget leaves after its profile (the graphs' estimate too where the release subtracts it),
    in whole pages of its layers; a hybrid's pool instead (``vllm_hybrid.rank_pool``)."""
    graphs = t.graphs.capture_bytes if t.graphs else 0
    subtracted = t.graphs.estimate_bytes if t.graphs and t.graphs.subtracted else 0
    available = requested - t.loading - t.activation - t.non_torch - subtracted
    if knobs.kv_cache_memory_bytes is not None:
        available = knobs.kv_cache_memory_bytes
    blocks = max(0, available) // page_per_layer // held.layers
    cache_bytes, tokens, pool = blocks * page_per_layer * held.layers, blocks * knobs.block_size, None
    if hybrid:
        pool = vllm_hybrid.rank_pool(spec, held.first_layer, held.last_layer, available, hybrid)
        cache_bytes = pool.num_blocks * hybrid.page_bytes * pool.group_size
    used = context + t.loading + t.activation + t.non_torch + cache_bytes + graphs
    return graphs, available, cache_bytes, tokens, used, pool


SHARED_PROFILES = 4096
"""Predictions whose rank profiles are kept for another prediction that differs only in its KV cache dtype (a
review's ``--kv-dtype`` variants score the same layouts one after the other): the most recent this many."""
_SHARED: dict = {}


def _shared_profiles(p: _Profile) -> dict:
    """The ``_rank_terms`` memo of ``p``: shared with every prediction whose profile differs from it only in
    ``kv_cache_dtype``, which no rank's profile reads (loading, activations, non-torch memory and CUDA graphs are
    sized before the KV cache: ``_stage_terms``). Keyed by the spec's identity, which the entry holds so that the
    identity cannot be reused while it is kept."""
    try:
        knobs = tuple((k, v) for k, v in p.knobs.__dict__.items() if k != "kv_cache_dtype")
        key = (id(p.spec), p.layout, p.dtype, p.quant, knobs, p.rules, p.v2, p.seqs, p.batched, p.fabric,
               p.compute_capability, p.gpu_name)
        hash(key)
    except TypeError:  # a knob value that does not hash: not shared
        return {}
    hit = _SHARED.get(key)
    if hit is None or hit[0] is not p.spec:
        if len(_SHARED) >= SHARED_PROFILES:
            del _SHARED[next(iter(_SHARED))]
        hit = _SHARED[key] = (p.spec, {})
    return hit[1]


def _sampler(knobs: VllmKnobs, rules: VllmRules) -> str:
    return prof.sampler_name(knobs.sampler, knobs.install, rules)


def _notes(release, p: _Profile, terms: list[_RankTerms], ranks: list[EngineRankReport]) -> list[str]:
    """The release used, the sampler, the CUDA graphs and what else the profile charges (the worst rank's)."""
    worst = terms[min(range(len(ranks)), key=lambda i: ranks[i].available_kv_cache_bytes)]
    extras = prof.buffers_note(max(t.moe_workspace for t in terms), max(t.intermediate for t in terms),
                               max(t.state for t in terms), p.rules, p.v2)
    compiled = prof.compile_note(p.knobs.compile_cache, p.knobs.enforce_eager, p.knobs.version)
    return ([n for n in (release.note, release.warning) if n]
            + [prof.sampler_note(_sampler(p.knobs, p.rules), p.rules, p.seqs, p.spec.vocab_size, p.v2, p.layout.tp)]
            + ([worst.graphs.describe()] if worst.graphs else []) + [n for n in (extras, compiled) if n])


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


def serve_command(spec: ModelSpec, layout: Layout, knobs: dict) -> str:
    """``vllm serve`` with the layout's degrees and the knobs that differ from vLLM's defaults."""
    parts = [f"vllm serve Qwen/{spec.name}", f"--tensor-parallel-size {layout.tp}"]
    if layout.pp > 1:
        parts.append(f"--pipeline-parallel-size {layout.pp}")
    names = {"max_model_len": "--max-model-len", "kv_cache_dtype": "--kv-cache-dtype",
             "gpu_memory_utilization": "--gpu-memory-utilization"}
    return " ".join(parts + [f"{flag} {knobs[key]}" for key, flag in names.items() if knobs.get(key) not in (None, "auto")]
                    + (["--enforce-eager"] if knobs.get("enforce_eager") else []))


def predict(request) -> EngineReport:
    """``predict_vllm`` for a ``requests.ServeRequest``."""
    hw = request.hardware
    return predict_vllm(request.model, request.layout, hw.capacity_bytes, hw.gpu_name, hw.compute_capability,
                        request.workload.dtype, request.quant, request.engine.knobs, hw.fabric)


ENGINE = Engine("vllm", VllmKnobs, predict,
                SuggestKnobs("max_model_len", "gpu_memory_utilization", "fp8", serve_command, "enforce_eager"))
