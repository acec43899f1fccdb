"""The per-stage arithmetic of a plan: what a rank holds whatever the workload, and its total at any (context, batch).

``Planner`` keeps each stage's static part (weights, ZeRO gather buffer, runtime, KV bytes per token) so the largest
context and batch that fit are found by bisection over cheap re-evaluations, and thousands of layouts per second can
be scored (``benchmarks/bench_plan.py``). Every total is reserved + CUDA context + cuBLAS + NCCL: allocated bytes
rounded by the caching allocator (``memory.allocator``) plus the fixed runtime (``memory.runtime``).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from shardsim.constants import ALLOC_ROUND_LARGE, ZERO3_PREFETCH_BUCKET_ELEMENTS
from shardsim.core.layout import Layout, RankCoords, rank_coords, shard_of, validate_layout
from shardsim.core.memory.activations import activation_peak_bytes, activation_peak_eager, activation_peak_hf
from shardsim.core.memory.allocator import AllocationTally, reserved_for
from shardsim.core.memory.kv_cache import kv_bytes_per_token_per_layer, kv_tokens_allocated
from shardsim.core.memory.runtime import DEFAULT_FABRIC, Fabric, RuntimeBytes, runtime_bytes
from shardsim.core.memory.state import (
    hf_state_bytes_per_sequence_per_layer,
    linear_layers_in,
    state_bytes_per_sequence_per_layer,
)
from shardsim.core.memory.weights import largest_module_bytes, weight_model
from shardsim.core.model import ModelSpec
from shardsim.core.records import RankBytes
from shardsim.core.search import largest_that_fits
from shardsim.core.workload import Workload, step_shape
from shardsim.units import DTYPE_BYTES, canonical_dtype, round_up


@dataclass(slots=True)
class StageStatic:
    """What a rank of one stage holds whatever the workload. (The records of this module are not frozen: they are
    built ~10⁴–10⁵ times per second when layouts are scored, and frozen dataclasses construct several times slower;
    nothing mutates them.)"""

    first_layer: int
    last_layer: int
    weights: AllocationTally
    zero_gather: int
    runtime: RuntimeBytes
    kv_bytes_per_token_layer: int
    attention_layers: int  # the stage's layers that hold KV
    state_per_sequence: int  # recurrent state of the stage's linear-attention layers, one sequence
    has_moe: bool
    has_dense: bool
    is_last: bool
    # Derived once (scoring reads them thousands of times per second):
    layers: int = 0
    weights_reserved: int = 0
    runtime_total: int = 0


@dataclass(slots=True)
class StagePeak:
    """A most loaded rank of a stage (tp 0, dp 0) and its static part, for scoring."""

    rank: int
    static: StageStatic


@dataclass(slots=True)
class PeakRank:
    rank: int
    total_bytes: int


@dataclass(slots=True)
class RankTerms:
    """Every term of one rank at one (context, batch), and the runtime detail behind it."""

    bytes: RankBytes
    runtime: RuntimeBytes
    layers: tuple[int, int]
    kv_bytes_per_token: int = 0
    state_bytes_per_sequence: int = 0


class Planner:
    """One model × layout × weight format; evaluates any (context, batch) quickly."""

    __slots__ = ("spec", "layout", "dtype", "quant", "kv_bytes", "prefill_chunk", "step_tokens", "block_size", "wm", "_stages",
                 "activation_fn", "fabric", "state_bytes")

    def __init__(self, spec: ModelSpec, layout: Layout, workload: Workload, *, validated: bool = False,
                 fabric: Fabric = DEFAULT_FABRIC):
        self.spec = spec
        self.fabric = fabric
        self.layout = layout if validated else validate_layout(spec, layout)
        self.dtype = canonical_dtype(workload.dtype)
        self.quant = workload.quant if workload.quant is not None else spec.quant
        self.kv_bytes = DTYPE_BYTES[canonical_dtype(workload.kv_dtype, ("bf16", "fp16", "fp32", "fp8"))]
        ssm = workload.state_dtype or spec.state_dtype or self.dtype
        # rule (transformers' own shapes and dtypes, or vLLM's), conv, delta-rule memory
        self.state_bytes = (workload.kernels == "hf", DTYPE_BYTES[self.dtype], DTYPE_BYTES[canonical_dtype(ssm)])
        self.prefill_chunk = workload.prefill_chunk
        self.step_tokens = workload.step_tokens
        self.block_size = workload.block_size
        if workload.kernels in ("eager", "hf"):
            expert_tokens = workload.expert_tokens
            fn = activation_peak_eager if workload.kernels == "eager" else activation_peak_hf
            self.activation_fn = partial(fn, expert_tokens=expert_tokens)
        elif spec.linear is not None:  # a hybrid: its Gated-DeltaNet prefill transient too (every stage holds some)
            gdn = f"prefill:{self.state_bytes[2]}"
            self.activation_fn = partial(activation_peak_bytes, gdn=gdn)
        else:
            self.activation_fn = activation_peak_bytes
        self.wm = weight_model(spec, self.dtype, self.quant)
        # Shared by every Planner of this model and weight format: a stage is sized once per layout.
        self._stages: dict[tuple, object] = self.wm.cache.setdefault(("stages", self.kv_bytes, self.state_bytes, fabric), {})

    def with_layout(self, layout: Layout, fabric: Fabric | None = None) -> "Planner":
        """The same model, weight format and workload on another layout (validated), or another fabric: cheap,
        for sweeps and reviews."""
        other = object.__new__(Planner)
        for name in Planner.__slots__:
            setattr(other, name, getattr(self, name))
        other.layout = validate_layout(self.spec, layout)
        if fabric is not None and fabric != self.fabric:
            other.fabric = fabric
            other._stages = self.wm.cache.setdefault(("stages", self.kv_bytes, self.state_bytes, fabric), {})
        return other

    def static(self, coords: RankCoords) -> StageStatic:
        """What a rank holds whatever the workload, memoised per (layout, stage, shard)."""
        lay = self.layout
        shard = shard_of(coords, lay)
        key = (lay, coords.pp_rank, shard)
        hit = self._stages.get(key)
        if hit is not None:
            return hit
        first = sum(lay.pp_split[: coords.pp_rank])
        last = first + lay.pp_split[coords.pp_rank] - 1
        is_first, is_last = coords.pp_rank == 0, coords.pp_rank == lay.pp - 1
        zero_dp = lay.dp if lay.zero == 3 else 1
        tally = self.wm.stage_tally(first, last, is_first, is_last, shard, zero_dp)
        # ZeRO-3 all-gathers the parameters of one module at a time and keeps them while they will be reused
        # soon (the tied embedding stays gathered from embed_tokens to lm_head), and prefetches up to
        # stage3_prefetch_bucket_size elements ahead (DeepSpeed runtime/zero/partitioned_param_coordinator.py;
        # defaults in runtime/zero/config.py). Measured on CPU with DeepSpeed 0.19.8: 0.6B tied, dp 2, decode:
        # 311.2 MB (embedding) + ~100 MB prefetch = 411.8 MB.
        gather = 0
        if zero_dp > 1:
            stage_full = self.wm.stage_tally(first, last, is_first, is_last, shard, 1).bytes
            prefetch = min(ZERO3_PREFETCH_BUCKET_ELEMENTS * DTYPE_BYTES[self.dtype], stage_full)
            gather = largest_module_bytes(self.wm, shard, is_first, is_last) + prefetch
        # Stages differ in their pipeline neighbours only by position: the stage's first rank stands for it.
        runtime = runtime_bytes(coords.rank, lay, self.spec.is_moe, self.fabric)
        moe_layers = self.wm.moe_prefix[last + 1] - self.wm.moe_prefix[first]
        linear = linear_layers_in(self.spec, first, last)
        spec_tokens = self.spec.speculative_tokens
        hf_state, conv_bytes, ssm_bytes = self.state_bytes
        state = linear * (hf_state_bytes_per_sequence_per_layer(self.spec, conv_bytes) if hf_state else
                          state_bytes_per_sequence_per_layer(self.spec, lay.tp, conv_bytes, ssm_bytes, spec_tokens))
        # MTP drafting keeps KV for its own full-attention layers on the last stage (vLLM: the draft model's
        # attention layers join the KV cache groups, v1/spec_decode/eagle.py@v0.11.0)
        draft_layers = self.spec.mtp_layers if spec_tokens and is_last else 0
        hit = StageStatic(first, last, tally, gather, runtime,
                          kv_bytes_per_token_per_layer(self.spec, lay.tp, self.kv_bytes),
                          last - first + 1 - linear + draft_layers, state,
                          moe_layers > 0, moe_layers < last - first + 1, is_last,
                          last - first + 1, tally.reserved, runtime.total)
        self._stages[key] = hit
        return hit

    def rank_terms(self, coords: RankCoords, context: int, batch: int) -> RankTerms:
        """Every term of one rank at (context, batch)."""
        st = self.static(coords)
        kv_layer = st.kv_bytes_per_token_layer * kv_tokens_allocated(context, batch, self.block_size)
        tokens, seqs = step_shape(context, batch, self.prefill_chunk, self.step_tokens)
        act = self.activation_fn(self.spec, self.layout.tp, self.layout.etp, tokens, seqs, st.has_moe,
                                 st.has_dense, st.is_last)
        kv = st.attention_layers * kv_layer
        state = st.state_per_sequence * batch
        allocated = st.weights.bytes + kv + state + act + st.zero_gather
        # KV: one K and one V tensor per layer (HF DynamicCache / static cache, vLLM per-layer views); the state one
        # pool.
        reserved = (st.weights_reserved + reserved_for(kv_layer // 2, 2 * st.attention_layers)
                    + round_up(state, ALLOC_ROUND_LARGE) + round_up(act + st.zero_gather, ALLOC_ROUND_LARGE))
        runtime = st.runtime_total + (reserved - allocated)
        rb = RankBytes(st.weights.bytes, st.zero_gather, kv, act, runtime, allocated, reserved, state)
        return RankTerms(rb, st.runtime, (st.first_layer, st.last_layer),
                         st.attention_layers * st.kv_bytes_per_token_layer, st.state_per_sequence)

    def peak_stages(self) -> list[StagePeak]:
        """Per distinct stage, a most loaded rank (tp 0, dp 0: balanced splits give the remainder to the first
        ranks, ``tensors.split_range``) and its static part. Memoised per layout."""
        key = (self.layout, "peak")
        hit = self._stages.get(key)
        if hit is None:
            lay = self.layout
            per_stage, last_stage = lay.tp * lay.dp, lay.pp - 1
            hit, seen, first = [], set(), 0
            for pp_rank, n_layers in enumerate(lay.pp_split):
                last = first + n_layers - 1
                # Stages with the same layer mix, position (first / middle / last) and node crossings have identical
                # totals: score the first of them only. The runtime differs where a stage's pipeline neighbour
                # sits on another node (its send/recv buffers are the network's) or its groups span nodes.
                stage_first = pp_rank * per_stage
                place = self.fabric.placement
                signature = (self.wm.class_counts(first, last), pp_rank == 0, pp_rank == last_stage,
                             pp_rank > 0 and not place.same_node(stage_first, stage_first - per_stage),
                             pp_rank < last_stage and not place.same_node(stage_first, stage_first + per_stage),
                             place.spans_nodes((stage_first, stage_first + per_stage - 1)))
                first = last + 1
                if signature in seen:
                    continue
                seen.add(signature)
                coords = rank_coords(stage_first, lay)
                hit.append(StagePeak(coords.rank, self.static(coords)))
            self._stages[key] = hit
        return hit

    def peak_total(self, context: int, batch: int) -> PeakRank:
        """The most loaded rank and its total bytes at (context, batch)."""
        slots = kv_tokens_allocated(context, batch, self.block_size)
        tokens, seqs = step_shape(context, batch, self.prefill_chunk, self.step_tokens)
        tp, etp, spec, activation_fn = self.layout.tp, self.layout.etp, self.spec, self.activation_fn
        best_rank, best = 0, -1
        for stage in self.peak_stages():
            st = stage.static
            act = activation_fn(spec, tp, etp, tokens, seqs, st.has_moe, st.has_dense, st.is_last)
            kv_layer = st.kv_bytes_per_token_layer * slots
            # reserved bytes + fixed runtime, as ``rank_terms``: KV one K and one V tensor per layer, activations
            # and the gather buffer one large block (inlined: this loop runs ~10⁵ times per second)
            total = (st.weights_reserved + reserved_for(kv_layer // 2, 2 * st.attention_layers)
                     + -(-(act + st.zero_gather) // ALLOC_ROUND_LARGE) * ALLOC_ROUND_LARGE + st.runtime_total)
            if st.state_per_sequence:
                total += -(-(st.state_per_sequence * batch) // ALLOC_ROUND_LARGE) * ALLOC_ROUND_LARGE
            if total > best:
                best_rank, best = stage.rank, total
        return PeakRank(best_rank, best)

    def largest_fitting(self, capacity: int, fixed: int, vary: str, upper: int) -> int:
        """Largest context (vary='context', batch fixed) or batch (vary='batch') whose peak fits; 0 if none."""
        def fits(n: int) -> bool:
            args = (n, fixed) if vary == "context" else (fixed, n)
            return self.peak_total(*args).total_bytes <= capacity
        return largest_that_fits(fits, upper)
