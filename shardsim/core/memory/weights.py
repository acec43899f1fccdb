"""Weight bytes per rank, exact: the shard rules of ``shardsim.core.tensors`` applied to every stored tensor.

Placement over pipeline stages is ``tensors.stage_edge_tensors`` (embed_tokens first, final norm and lm_head last,
a second copy of a tied embedding on the last stage when pp > 1).

ZeRO-3 / FSDP: each (TP-sharded) tensor is further partitioned over the dp ranks (``zero3_partition_numel``).

Speed: layers with the same structure (dense/MoE, same quantization exclusions) share one memoised size per
shard, so a stage costs a few multiplications however many layers it has; and ranks whose slices have the same
shapes share one size (``WeightModel.size_class``), so a TP group of 8 costs one tally, not eight.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import lru_cache

from shardsim.core.memory.allocator import AllocationTally
from shardsim.core.model import ModelSpec, QuantConfig
from shardsim.core.quant import is_skipped, stored_linear
from shardsim.core.tensors import (
    EXPERT,
    REPLICATED,
    Part,
    Shard,
    TensorSpec,
    inventory,
    layer_tensors,
    local_slices,
    numel_of,
    stage_edge_tensors,
    stage_tensors,
    zero3_partition_numel,
)
from shardsim.units import DTYPE_BYTES


@dataclass(frozen=True, slots=True)
class StoredTensor:
    """A tensor as it sits in memory on one rank: name, one copy's shape, copies (local experts), element size."""

    name: str
    shape: tuple[int, ...]
    copies: int
    elem_bytes: int

    def bytes(self, zero_dp: int = 1) -> int:
        numel = numel_of(self.shape)
        if zero_dp > 1:
            numel = zero3_partition_numel(numel, zero_dp)
        return numel * self.copies * self.elem_bytes


def stored_tensors(t: TensorSpec, shard: Shard, spec: ModelSpec, dtype: str, quant: QuantConfig) -> list[StoredTensor]:
    """What ``t`` becomes on a rank: its shard under the shard rule, then its storage under the weight format."""
    held = local_slices(t, shard, spec.head_dim)
    shape, copies = held.shape, held.copies
    if t.linear and quant.method != "none" and not is_skipped(t.module, quant):
        return [
            StoredTensor(f"{t.module}.{part.suffix}", part.shape, copies, part.elem_bytes)
            for part in stored_linear(shape[0], shape[1], quant, dtype)
        ]
    return [StoredTensor(t.name, shape, copies, DTYPE_BYTES[dtype])]


@dataclass(slots=True)
class WeightModel:
    """Per-rank weight sizes of one model in one weight format; memoised per shard."""

    spec: ModelSpec
    dtype: str
    quant: QuantConfig
    layer_class: list[int] = field(default_factory=list)
    class_layer: list[int] = field(default_factory=list)
    class_prefix: list[list[int]] = field(default_factory=list)
    _memo: dict = field(default_factory=dict)
    cache: dict = field(default_factory=dict)  # for callers that derive per-layout figures from this model
    moe_prefix: list[int] = field(default_factory=list)  # MoE layers among the first i layers

    def __post_init__(self) -> None:
        classes: dict[tuple, int] = {}
        for layer in range(self.spec.num_layers):
            tensors = layer_tensors(self.spec, layer)
            key = (self.spec.is_moe_layer(layer), self.spec.layer_kind(layer)) + tuple(
                t.linear and self.quant.method != "none" and not is_skipped(t.module, self.quant) for t in tensors
            )
            if key not in classes:
                classes[key] = len(classes)
                self.class_layer.append(layer)
            self.layer_class.append(classes[key])
        self.moe_prefix = [0]
        for layer in range(self.spec.num_layers):
            self.moe_prefix.append(self.moe_prefix[-1] + self.spec.is_moe_layer(layer))
        for c in range(len(classes)):
            prefix, n = [0], 0
            for layer_c in self.layer_class:
                n += layer_c == c
                prefix.append(n)
            self.class_prefix.append(prefix)

    def _tensors(self, tensors: list[TensorSpec], shard: Shard) -> list[StoredTensor]:
        out: list[StoredTensor] = []
        for t in tensors:
            out += stored_tensors(t, shard, self.spec, self.dtype, self.quant)
        return out

    def _tally(self, key: tuple, tensors_fn, shard: Shard, zero_dp: int) -> AllocationTally:
        memo_key = (key, shard, zero_dp)
        tally = self._memo.get(memo_key)
        if tally is None:
            tally = AllocationTally()
            for st in self._tensors(tensors_fn(), shard):
                size = st.bytes(zero_dp) // st.copies
                tally.add(size, st.copies)
            self._memo[memo_key] = tally
        return tally

    def size_class(self, shard: Shard) -> Shard:
        """The lowest-numbered shard whose every tensor has the shapes ``shard``'s has, hence the same bytes.

        A split of n items into p parts gives part i one more item iff i < n mod p (``tensors.split_range``), so along
        one degree the ranks from one nonzero remainder of the model's split sizes up to the next hold equal shapes;
        a KV-head split holds the same count on every rank (``tensors.kv_heads_per_rank``). Every split size of the
        model is looked at: the tensor-parallel dims (vocabulary rows included), each expert's ETP dim and the
        expert count for EP."""
        key = ("size_class", shard)
        hit = self._memo.get(key)
        if hit is None:
            hit = self._memo[key] = Shard(shard.tp, self._lowest_alike("tp", shard.tp, shard.tp_rank),
                                          shard.ep, self._lowest_alike("ep", shard.ep, shard.ep_rank),
                                          shard.etp, self._lowest_alike("etp", shard.etp, shard.etp_rank))
        return hit

    def _lowest_alike(self, degree: str, parts: int, index: int) -> int:
        return max((n % parts for n in self._split_sizes()[degree] if 0 < n % parts <= index), default=0)

    def _split_sizes(self) -> dict[str, frozenset[int]]:
        """The sizes the model splits along each degree: one layer of each structure class and every edge tensor."""
        hit = self._memo.get("split_sizes")
        if hit is None:
            sizes: dict[str, set[int]] = {"tp": set(), "ep": set(), "etp": set()}
            tensors = [t for layer in self.class_layer for t in layer_tensors(self.spec, layer)]
            for t in tensors + stage_edge_tensors(self.spec, True, True):
                if t.rule == EXPERT:
                    sizes["etp"].add(t.shape[t.split_dim])
                    sizes["ep"].add(t.experts)
                elif t.rule != REPLICATED and not t.kv_heads:
                    sizes["tp"].add(t.shape[t.split_dim])
            hit = self._memo["split_sizes"] = {k: frozenset(v) for k, v in sizes.items()}
        return hit

    def layer_tally(self, cls: int, shard: Shard, zero_dp: int = 1) -> AllocationTally:
        shard = self.size_class(shard)
        layer = self.class_layer[cls]
        return self._tally(("layer", cls), lambda: layer_tensors(self.spec, layer), shard, zero_dp)

    def stage_tally(self, first: int, last: int, is_first: bool, is_last: bool, shard: Shard, zero_dp: int = 1) -> AllocationTally:
        """Allocations of one rank of a stage holding decoder layers first…last (inclusive)."""
        counts = self.class_counts(first, last)
        shard = self.size_class(shard)
        # Stages with the same layer mix hold the same bytes wherever they sit: memoised on the counts.
        memo_key = ("stage", counts, is_first, is_last, shard, zero_dp)
        cached = self._memo.get(memo_key)
        if cached is not None:
            return cached
        total = AllocationTally()
        for cls, count in enumerate(counts):
            if count:
                total.merge(self.layer_tally(cls, shard, zero_dp), count)
        tp_only = Shard(tp=shard.tp, tp_rank=shard.tp_rank)  # what slices a group without experts
        for part_tensors, experts in self._edge_tensors(is_first, is_last):
            total.merge(self._tally(("edge", part_tensors[0].name), lambda: part_tensors, shard if experts else tp_only,
                                    zero_dp))
        self._memo[memo_key] = total
        return total

    def class_counts(self, first: int, last: int) -> tuple[int, ...]:
        """How many layers of each structure class lie in first…last."""
        if len(self.class_prefix) == 1:  # every layer alike (all Qwen3 presets)
            return (last - first + 1,)
        return tuple(prefix[last + 1] - prefix[first] for prefix in self.class_prefix)

    def _edge_tensors(self, is_first: bool, is_last: bool) -> list[tuple[list[TensorSpec], bool]]:
        """The stage's edge tensors (``tensors.stage_edge_tensors``), one memo group per tensor, except the vision
        tower and the MTP head, one group each (hundreds of tensors that always travel together), each with whether it
        holds experts; memoised."""
        key = ("edges", is_first, is_last)
        hit = self._memo.get(key)
        if hit is None:
            groups: dict[object, list[TensorSpec]] = {}
            for t in stage_edge_tensors(self.spec, is_first, is_last):
                groups.setdefault(t.part if t.part in (Part.VISION, Part.MTP) else t.name, []).append(t)
            hit = self._memo[key] = [(g, any(t.rule == EXPERT for t in g)) for g in groups.values()]
        return hit

    def rank_breakdown(self, first: int, last: int, is_first: bool, is_last: bool, shard: Shard, zero_dp: int = 1) -> dict[str, int]:
        """Bytes per stored tensor on one rank, keyed by tensor name (experts of a projection under ``.*.``).

        Any module's size is a prefix sum: ``sum(v for k, v in d.items() if k.startswith("model.layers.3.mlp"))``.
        """
        out: dict[str, int] = {}
        for st in self._tensors(stage_tensors(self.spec, first, last, is_first, is_last), shard):
            out[st.name.replace("{e}", "*")] = st.bytes(zero_dp)
        return out


@lru_cache(maxsize=64)
def weight_model(spec: ModelSpec, dtype: str, quant: QuantConfig) -> WeightModel:
    return WeightModel(spec, dtype, quant)


def checkpoint_bytes(spec: ModelSpec) -> int:
    """Bytes of every tensor of an unquantized checkpoint as stored: elements × the tensor's stored width (the
    model's dtype, or fp32 where the checkpoint keeps it so, ``TensorSpec.checkpoint_dtype``) — what
    ``model.safetensors.index.json`` calls ``total_size``. Vision tower and MTP head included; tied embeddings
    once."""
    return sum(t.numel * DTYPE_BYTES[t.checkpoint_dtype or spec.torch_dtype] for t in inventory(spec))


def total_weight_bytes(spec: ModelSpec, dtype: str = "bf16", quant: QuantConfig | None = None) -> int:
    """Bytes of the whole unsharded model (tied embeddings once): a TP1 × PP1 rank."""
    wm = weight_model(spec, dtype, quant or spec.quant)
    return wm.stage_tally(0, spec.num_layers - 1, True, True, Shard()).bytes


def largest_module_bytes(wm: WeightModel, shard: Shard, is_first: bool, is_last: bool) -> int:
    """The biggest single module's weights on a rank before ZeRO partitioning (a module's tensors are gathered
    together; one projection of all experts counts as one module, as transformers fuses them)."""
    modules: dict[str, int] = {}
    tensors = stage_edge_tensors(wm.spec, is_first, is_last)
    for cls_layer in wm.class_layer:
        tensors += layer_tensors(wm.spec, cls_layer)
    for t in tensors:
        for st in stored_tensors(t, shard, wm.spec, wm.dtype, wm.quant):
            key = t.module
            modules[key] = modules.get(key, 0) + st.bytes()
    return max(modules.values())


__all__ = ["StoredTensor", "WeightModel", "weight_model", "total_weight_bytes", "largest_module_bytes", "stored_tensors"]
