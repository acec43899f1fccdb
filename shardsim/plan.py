"""plan(model, layout, workload, capacity) → PlanReport: the memory of every rank. Pure: no I/O, no torch.

Per rank: weights (exact), KV cache (exact), activation peak (estimate), runtime (estimate: CUDA context, cuBLAS,
NCCL, allocator rounding). total = weights + ZeRO gather buffer + kv_cache + activations + runtime, which is what
the GPU shows as used. ``Planner`` keeps the per-stage static parts so the largest context and batch that fit are
found by bisection over cheap re-evaluations, and so thousands of layouts per second can be scored.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from pydantic import BaseModel, ConfigDict

from .constants import (
    ACTIVATION_UNCERTAINTY,
    ALLOC_ROUND_LARGE,
    KV_BLOCK_TOKENS,
    MAX_BATCH,
    MAX_CONTEXT_TOKENS,
    PREFILL_CHUNK_TOKENS,
    RUNTIME_UNCERTAINTY,
    ZERO3_PREFETCH_BUCKET_ELEMENTS,
)
from .errors import ShardsimError
from .layout import Layout, RankCoords, rank_coords, shard_of, validate_layout
from .memory.activations import activation_peak_bytes, activation_peak_eager, activation_peak_hf
from .memory.allocator import reserved_for
from .memory.kv_cache import kv_bytes_per_token_per_layer, kv_tokens_allocated
from .memory.runtime import RuntimeBytes, runtime_bytes
from .memory.weights import largest_module_bytes, weight_model
from .models import ModelSpec, QuantConfig
from .tensors import Shard, active_parameter_count, parameter_count
from .units import DTYPE_BYTES, canonical_dtype, round_up


class Workload(BaseModel):
    """What the model must hold besides its weights; validated once per command."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    context: int = 8192
    batch: int = 1
    prefill_chunk: int = PREFILL_CHUNK_TOKENS
    dtype: str = "bf16"
    quant: QuantConfig | None = None  # None: the checkpoint's own quantization_config
    kv_dtype: str = "bf16"
    block_size: int = KV_BLOCK_TOKENS
    kernels: str = "fused"  # fused (vLLM/SGLang kernels), eager (shardsim's torch backend) or hf (transformers)
    expert_tokens: int | None = None  # eager MoE: tokens one expert gets at most (None: all T, the bound)

    def checked(self) -> "Workload":
        if not 1 <= self.context <= MAX_CONTEXT_TOKENS:
            raise ShardsimError(f"--context {self.context} is out of range; accepted: 1 … {MAX_CONTEXT_TOKENS:,} tokens")
        if not 1 <= self.batch <= MAX_BATCH:
            raise ShardsimError(f"--batch {self.batch} is out of range; accepted: 1 … {MAX_BATCH:,} sequences")
        if not 1 <= self.prefill_chunk <= MAX_CONTEXT_TOKENS:
            raise ShardsimError(f"--prefill-chunk {self.prefill_chunk} is out of range; accepted: 1 … {MAX_CONTEXT_TOKENS:,}")
        if not 1 <= self.block_size <= 4096:
            raise ShardsimError(f"--block-size {self.block_size} is out of range; accepted: 1 … 4096")
        if self.kernels not in ("fused", "eager", "hf"):
            raise ShardsimError(f"kernels {self.kernels!r} is not known; accepted: fused, eager, hf")
        canonical_dtype(self.dtype)
        canonical_dtype(self.kv_dtype, ("bf16", "fp16", "fp32", "fp8"))
        return self


@dataclass(slots=True)
class RankBytes:
    weights: int
    zero_gather: int
    kv_cache: int
    activations: int
    runtime: int
    allocated: int
    reserved: int

    @property
    def total(self) -> int:
        return self.weights + self.zero_gather + self.kv_cache + self.activations + self.runtime

    def to_dict(self) -> dict:
        d = asdict(self)
        d["total"] = self.total
        return d


@dataclass(slots=True)
class RankReport:
    rank: int
    node: int
    local_gpu: int
    coords: RankCoords
    layers: tuple[int, int]
    bytes: RankBytes
    capacity_bytes: int
    communicators: tuple[str, ...]

    @property
    def free_bytes(self) -> int:
        return self.capacity_bytes - self.bytes.total

    def to_dict(self) -> dict:
        c = self.coords
        return {
            "rank": self.rank, "node": self.node, "local_gpu": self.local_gpu,
            "tp_rank": c.tp_rank, "pp_rank": c.pp_rank, "dp_rank": c.dp_rank, "ep_rank": c.ep_rank,
            "layers": list(self.layers), "bytes": self.bytes.to_dict(), "capacity_bytes": self.capacity_bytes,
            "free_bytes": self.free_bytes, "communicators": list(self.communicators),
        }


@dataclass(slots=True)
class PlanReport:
    model: ModelSpec
    layout: Layout
    workload: Workload
    quant: QuantConfig
    params: int
    active_params: int
    weight_bytes: int
    capacity_bytes: int
    ranks: list[RankReport]
    peak_rank: int
    max_context: int
    max_context_limited_by: str
    max_batch: int
    warnings: list[str] = field(default_factory=list)
    cluster_name: str = ""
    gpu_name: str = ""

    @property
    def peak(self) -> RankReport:
        return self.ranks[self.peak_rank]

    @property
    def fits(self) -> bool:
        return self.peak.bytes.total <= self.capacity_bytes

    @property
    def headroom_bytes(self) -> int:
        return self.capacity_bytes - self.peak.bytes.total

    def to_dict(self) -> dict:
        lay = self.layout
        return {
            "model": {"name": self.model.name, "architecture": self.model.architecture, "params": self.params,
                      "active_params": self.active_params, "weight_bytes": self.weight_bytes,
                      "dtype": self.workload.dtype, "quant": self.quant.method, "kv_dtype": self.workload.kv_dtype},
            "layout": {"tp": lay.tp, "pp": lay.pp, "dp": lay.dp, "ep": lay.ep, "zero": lay.zero,
                       "world_size": lay.world_size, "pp_split": list(lay.pp_split)},
            "workload": {"context": self.workload.context, "batch": self.workload.batch,
                         "prefill_chunk": self.workload.prefill_chunk, "block_size": self.workload.block_size},
            "cluster": {"name": self.cluster_name, "gpu": self.gpu_name, "capacity_bytes": self.capacity_bytes},
            "ranks": [r.to_dict() for r in self.ranks],
            "peak_rank": self.peak_rank,
            "peak_bytes": self.peak.bytes.total,
            "fits": self.fits,
            "headroom_bytes": self.headroom_bytes,
            "max_context": self.max_context,
            "max_context_limited_by": self.max_context_limited_by,
            "max_batch": self.max_batch,
            "uncertainty": {"weights": 0.0, "kv_cache": 0.0, "activations": ACTIVATION_UNCERTAINTY,
                            "runtime": RUNTIME_UNCERTAINTY},
            "warnings": list(self.warnings),
        }


class Planner:
    """One model × layout × weight format; evaluates any (context, batch) quickly."""

    __slots__ = ("spec", "layout", "dtype", "quant", "kv_bytes", "prefill_chunk", "block_size", "wm", "_stages",
                 "activation_fn")

    def __init__(self, spec: ModelSpec, layout: Layout, workload: Workload, *, validated: bool = False):
        self.spec = spec
        self.layout = layout if validated else validate_layout(spec, layout)
        self.dtype = canonical_dtype(workload.dtype)
        self.quant = workload.quant if workload.quant is not None else spec.quant
        self.kv_bytes = DTYPE_BYTES[canonical_dtype(workload.kv_dtype, ("bf16", "fp16", "fp32", "fp8"))]
        self.prefill_chunk = workload.prefill_chunk
        self.block_size = workload.block_size
        if workload.kernels in ("eager", "hf"):
            expert_tokens = workload.expert_tokens
            fn = activation_peak_eager if workload.kernels == "eager" else activation_peak_hf
            self.activation_fn = lambda *args: fn(*args, expert_tokens=expert_tokens)
        else:
            self.activation_fn = activation_peak_bytes
        self.wm = weight_model(spec, self.dtype, self.quant)
        # Shared by every Planner of this model and weight format: a stage is sized once per layout.
        self._stages: dict[tuple, tuple] = self.wm.cache.setdefault(("stages", self.kv_bytes), {})

    def with_layout(self, layout: Layout) -> "Planner":
        """The same model, weight format and workload on another layout (validated): cheap, for sweeps."""
        other = object.__new__(Planner)
        for name in Planner.__slots__:
            setattr(other, name, getattr(self, name))
        other.layout = validate_layout(self.spec, layout)
        return other

    def static(self, coords: RankCoords) -> tuple:
        """What a rank holds whatever the workload, memoised per (layout, stage, shard):
        (layers, weights tally, ZeRO gather bytes, runtime, KV bytes per token and layer, has MoE, has dense, last?)."""
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
        rt = runtime_bytes(lay.tp, lay.pp, lay.dp, lay.ep, coords.pp_rank, lay.zero, self.spec.is_moe)
        kv_tok_layer = kv_bytes_per_token_per_layer(self.spec.num_kv_heads, self.spec.head_dim, lay.tp, self.kv_bytes)
        moe_layers = self.wm.moe_prefix[last + 1] - self.wm.moe_prefix[first]
        has_moe, has_dense = moe_layers > 0, moe_layers < last - first + 1
        hit = ((first, last), tally, gather, rt, kv_tok_layer, has_moe, has_dense, is_last, tally.bytes, tally.reserved)
        self._stages[key] = hit
        return hit

    def rank_bytes(self, coords: RankCoords, context: int, batch: int) -> tuple[RankBytes, RuntimeBytes]:
        """Every term of one rank at (context, batch)."""
        (first, last), _, gather, rt, kv_tok_layer, has_moe, has_dense, is_last, w_bytes, w_reserved = self.static(coords)
        n_layers = last - first + 1
        kv_layer = kv_tok_layer * kv_tokens_allocated(context, batch, self.block_size)
        tokens = min(context, self.prefill_chunk) * batch
        act = self.activation_fn(self.spec, self.layout.tp, self.layout.etp, tokens, batch, has_moe, has_dense, is_last)
        allocated = w_bytes + n_layers * kv_layer + act + gather
        # KV: one K and one V tensor per layer (HF DynamicCache / static cache, vLLM per-layer views).
        reserved = w_reserved + reserved_for(kv_layer // 2, 2 * n_layers) + round_up(act + gather, ALLOC_ROUND_LARGE)
        runtime = rt.total + (reserved - allocated)
        return RankBytes(w_bytes, gather, n_layers * kv_layer, act, runtime, allocated, reserved), rt

    def peak_stages(self) -> list[tuple]:
        """Per stage, the static part of its rank (tp 0, dp 0) — a most loaded rank of the stage, since balanced
        splits give the remainder to the first ranks (``tensors.split_range``). Memoised per layout."""
        key = (self.layout, "peak")
        hit = self._stages.get(key)
        if hit is None:
            lay = self.layout
            per_stage, last_stage = lay.tp * lay.dp, lay.pp - 1
            hit, seen, first = [], set(), 0
            for pp_rank, n_layers in enumerate(lay.pp_split):
                last = first + n_layers - 1
                # Stages with the same layer mix and position (first / middle / last) have identical totals:
                # score the first of them only.
                signature = (self.wm.class_counts(first, last), pp_rank == 0, pp_rank == last_stage)
                first = last + 1
                if signature in seen:
                    continue
                seen.add(signature)
                coords = rank_coords(pp_rank * per_stage, lay)
                _, _, gather, rt, kv_tok_layer, has_moe, has_dense, is_last, _, w_reserved = self.static(coords)
                hit.append((coords.rank, n_layers, w_reserved, gather, rt.total, kv_tok_layer, has_moe, has_dense, is_last))
            self._stages[key] = hit
        return hit

    def peak_total(self, context: int, batch: int) -> tuple[int, int]:
        """(rank, total bytes) of the most loaded rank at (context, batch).

        total = reserved + CUDA context + cuBLAS + NCCL (``rank_bytes``: runtime = fixed + reserved − allocated).
        """
        slots = kv_tokens_allocated(context, batch, self.block_size)
        tokens = min(context, self.prefill_chunk) * batch
        tp, etp, spec = self.layout.tp, self.layout.etp, self.spec
        best_rank, best = 0, -1
        for rank, n_layers, w_reserved, gather, rt_total, kv_tok_layer, has_moe, has_dense, is_last in self.peak_stages():
            kv_layer = kv_tok_layer * slots
            act = self.activation_fn(spec, tp, etp, tokens, batch, has_moe, has_dense, is_last)
            total = (w_reserved + reserved_for(kv_layer // 2, 2 * n_layers)
                     + -(-(act + gather) // ALLOC_ROUND_LARGE) * ALLOC_ROUND_LARGE + rt_total)
            if total > best:
                best_rank, best = rank, total
        return best_rank, best

    def largest_fitting(self, capacity: int, fixed: int, vary: str, upper: int) -> int:
        """Largest context (vary='context', batch fixed) or batch (vary='batch') whose peak fits; 0 if none."""
        def fits(n: int) -> bool:
            args = (n, fixed) if vary == "context" else (fixed, n)
            return self.peak_total(*args)[1] <= capacity
        if not fits(1):
            return 0
        lo, hi = 1, upper
        if fits(hi):
            return hi
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if fits(mid):
                lo = mid
            else:
                hi = mid
        return lo


def plan(spec: ModelSpec, layout: Layout, workload: Workload, capacity_bytes: int, *, node_size: int = 8,
         cluster_name: str = "", gpu_name: str = "", warnings: list[str] | None = None) -> PlanReport:
    """Every rank's memory for ``spec`` sharded as ``layout`` serving ``workload`` on GPUs of ``capacity_bytes``."""
    workload = workload.checked()
    planner = Planner(spec, layout, workload)
    lay = planner.layout
    ranks = []
    for rank in range(lay.world_size):
        coords = rank_coords(rank, lay)
        rb, rt = planner.rank_bytes(coords, workload.context, workload.batch)
        layers = planner.static(coords)[0]
        ranks.append(RankReport(rank, rank // node_size, rank % node_size, coords, layers, rb, capacity_bytes, rt.communicators))
    peak_rank = max(ranks, key=lambda r: (r.bytes.total, -r.rank)).rank
    model_limit = spec.max_position_embeddings
    max_context = planner.largest_fitting(capacity_bytes, workload.batch, "context", model_limit)
    limited_by = "model" if max_context == model_limit else "memory"
    max_batch = planner.largest_fitting(capacity_bytes, workload.context, "batch", MAX_BATCH)
    notes = list(warnings or [])
    notes += quant_warnings(spec, lay, planner.quant)
    return PlanReport(
        model=spec, layout=lay, workload=workload, quant=planner.quant,
        params=parameter_count(spec), active_params=active_parameter_count(spec),
        weight_bytes=planner.wm.stage_tally(0, spec.num_layers - 1, True, True, Shard()).bytes,
        capacity_bytes=capacity_bytes, ranks=ranks, peak_rank=peak_rank, max_context=max_context,
        max_context_limited_by=limited_by, max_batch=max_batch, warnings=notes,
        cluster_name=cluster_name, gpu_name=gpu_name,
    )


def quant_warnings(spec: ModelSpec, layout: Layout, quant: QuantConfig) -> list[str]:
    """Block-quantized shards that engines refuse: vLLM requires each FP8 shard to hold whole 128-wide blocks
    (``vllm/model_executor/layers/quantization/fp8.py``, ``validate_block_quant_shapes``)."""
    if quant.method != "fp8":
        return []
    block = quant.block_size[0]
    out = []
    if spec.is_moe and layout.etp > 1 and (spec.moe_intermediate_size // layout.etp) % block:
        out.append(f"FP8 experts split over {layout.etp} ranks are {spec.moe_intermediate_size // layout.etp} wide, not a "
                   f"multiple of the {block}-wide scale blocks: vLLM refuses this layout; use --ep {layout.tp} (whole experts)")
    if (spec.intermediate_size // layout.tp) % block and not spec.is_moe:
        out.append(f"FP8 MLP shards are {spec.intermediate_size // layout.tp} wide, not a multiple of {block}: vLLM refuses this layout")
    return out
