"""Layouts: parallel degrees validated in one place, rank coordinates, and the pipeline stage split.

The world size is derived (tp × pp × dp), never restated. Ranks are numbered TP-fastest, then DP, then PP
(Megatron-LM's default order ``tp-dp-pp``; ``megatron/core/parallel_state.py``), so a TP group is a run of
consecutive ranks and stays inside a node, and pipeline stages are the outermost blocks and span nodes.

Expert parallelism (MoE only): ``ep`` divides tp × dp, the ranks that hold the same layers. With ep ≤ tp
(SGLang's ``moe_ep_size`` inside the TP group) each expert's intermediate dim is further split over
etp = tp / ep ranks; with ep > tp (vLLM's ``--enable-expert-parallel``, ep = tp × dp) experts are whole (etp = 1)
and the EP group spans DP replicas. Without ``--ep`` every expert is split over the TP ranks (etp = tp).

Context parallelism (training, Megatron's ``--context-parallel-size``): ``cp`` ranks split each sequence and hold
the same weights; they sit between TP and DP in the rank order (Megatron's ``tp-cp-ep-dp-pp``), so
rank = tp_rank + tp × (cp_rank + cp × (dp_rank + dp × pp_rank)) and world size = tp × cp × dp × pp.

``Layout`` is the one record of every degree (torchtitan's ``ParallelDims`` is the model): tp, pp, dp, cp, ep,
etp, the weight sharding over dp (``zero``) and the stage split; ``validate_layout`` is the one place degrees are
refused, and every group derives from the record (``rank_groups``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator

from shardsim.constants import MAX_WORLD_SIZE
from shardsim.core.model import ModelSpec
from shardsim.core.tensors import Shard
from shardsim.errors import ShardsimError


@dataclass(frozen=True, slots=True)
class Layout:
    """Every parallel degree of a run. ``etp`` (expert tensor parallel: how many ranks split one expert's
    intermediate dim) derives from tp and ep when not given: tp / ep when ep ≤ tp, else 1."""

    tp: int = 1
    pp: int = 1
    dp: int = 1
    ep: int = 1
    zero: int = 0
    pp_split: tuple[int, ...] | None = None
    cp: int = 1
    etp: int = 0  # 0: derived (see the class docstring)

    def __post_init__(self) -> None:
        if self.etp == 0 and isinstance(self.tp, int) and isinstance(self.ep, int) and self.ep >= 1:
            object.__setattr__(self, "etp", self.tp // self.ep if self.ep <= self.tp else 1)

    @property
    def world_size(self) -> int:
        return self.tp * self.cp * self.pp * self.dp

    def with_degrees(self, **degrees: int) -> "Layout":
        """The same layout with other degrees: etp derived again and, when the stages change, the default split
        (validate the result with ``validate_layout``)."""
        split = None if "pp" in degrees or "tp" in degrees else self.pp_split
        return replace(self, **degrees, etp=0, pp_split=split)

    def describe(self) -> str:
        """The layout as text, the one spelling every report uses: ``TP=8 × PP=2 × DP=1 · EP=8 = 16 GPUs``."""
        parts = [f"TP={self.tp}", f"PP={self.pp}", f"DP={self.dp}"] + ([f"CP={self.cp}"] if self.cp > 1 else [])
        extra = ([f"EP={self.ep}"] if self.ep > 1 else []) + ([f"ZeRO-{self.zero}"] if self.zero else [])
        return " × ".join(parts) + ("" if not extra else " · " + " · ".join(extra)) + f" = {self.world_size} GPUs"

    def short(self) -> str:
        """The compact spelling of tables: ``TP8×PP2×DP1·EP8``."""
        text = f"TP{self.tp}×PP{self.pp}×DP{self.dp}" + (f"×CP{self.cp}" if self.cp > 1 else "")
        return text + (f"·EP{self.ep}" if self.ep > 1 else "")


@dataclass(frozen=True, slots=True)
class RankCoords:
    rank: int
    tp_rank: int
    dp_rank: int
    pp_rank: int
    ep_rank: int
    etp_rank: int
    cp_rank: int = 0


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ShardsimError(f"--{name} must be a whole number ≥ 1, got {value!r}")
    if value < 1:
        raise ShardsimError(f"--{name} must be ≥ 1, got {value}")
    return value


def default_stage_split(num_layers: int, pp: int) -> tuple[int, ...]:
    """Decoder layers per pipeline stage: equal shares, the remainder going to the stages just before the last.

    The last stage already holds the final norm and lm_head, so it is spared the extra layers (and the first
    stage too unless the remainder reaches it). Source: vLLM ``get_pp_indices``
    (vllm/distributed/utils.py). Example: 94 layers over 4 stages → (23, 24, 24, 23).
    """
    base, remainder = divmod(num_layers, pp)
    split = [base] * pp
    for i in range(2, remainder + 2):
        split[-i] += 1
    return tuple(split)


def validate_layout(spec: ModelSpec, layout: Layout) -> Layout:
    """Check every degree against the model; the one place layouts are refused. Returns the layout with its
    stage split filled in."""
    tp = _positive_int("tp", layout.tp)
    pp = _positive_int("pp", layout.pp)
    dp = _positive_int("dp", layout.dp)
    ep = _positive_int("ep", layout.ep)
    cp = _positive_int("cp", layout.cp)
    if tp * pp * dp > MAX_WORLD_SIZE:
        raise ShardsimError(f"tp × pp × dp = {tp * pp * dp:,} GPUs exceeds the limit of {MAX_WORLD_SIZE:,} GPUs per layout")
    if tp * pp * dp * cp > MAX_WORLD_SIZE:
        raise ShardsimError(f"tp × cp × pp × dp = {tp * cp * pp * dp:,} GPUs exceeds the limit of {MAX_WORLD_SIZE:,} "
                            "GPUs per layout")
    heads, kv = spec.num_heads, spec.num_kv_heads
    if heads % tp:
        raise ShardsimError(f"--tp {tp} does not divide the {heads} query heads of {spec.name}; accepted tp: {_divisors_text(heads, kv, spec)}")
    if tp <= kv and kv % tp:
        raise ShardsimError(f"--tp {tp} does not divide the {kv} KV heads of {spec.name}; accepted tp: {_divisors_text(heads, kv, spec)}")
    if tp > kv and tp % kv:
        raise ShardsimError(f"--tp {tp} exceeds the {kv} KV heads of {spec.name} but is not a multiple of them, so heads cannot be replicated evenly; accepted tp: {_divisors_text(heads, kv, spec)}")
    if spec.linear is not None and (spec.linear.num_key_heads % tp or spec.linear.num_value_heads % tp):
        raise ShardsimError(f"--tp {tp} does not divide the {spec.linear.num_key_heads} key and "
                            f"{spec.linear.num_value_heads} value heads of {spec.name}'s linear-attention layers (vLLM "
                            f"and SGLang split them whole); accepted tp: {_divisors_text(heads, kv, spec)}")
    if pp > spec.num_layers:
        raise ShardsimError(f"--pp {pp} exceeds the {spec.num_layers} decoder layers of {spec.name}; accepted: 1 … {spec.num_layers}")
    if ep > 1:
        if not spec.is_moe:
            raise ShardsimError(f"--ep {ep}: {spec.name} is dense (no experts); expert parallel applies to Qwen3-MoE models only")
        if (tp * dp) % ep:
            raise ShardsimError(f"--ep {ep} must divide tp × dp = {tp * dp} (the ranks that hold the same layers)")
        if ep <= tp and tp % ep:
            raise ShardsimError(f"--ep {ep} must divide --tp {tp} when ep ≤ tp (each expert then splits over tp/ep ranks)")
        if ep > tp and ep % tp:
            raise ShardsimError(f"--ep {ep} must be a multiple of --tp {tp} when ep > tp (EP groups then span DP replicas)")
        if ep > spec.num_experts:
            raise ShardsimError(f"--ep {ep} exceeds the {spec.num_experts} experts of {spec.name}")
    if layout.zero not in (0, 3):
        raise ShardsimError(f"--zero {layout.zero} is not supported; accepted: 0 (off) or 3 (weights sharded over dp)")
    if layout.zero and ep > 1:
        raise ShardsimError("--zero 3 together with --ep is not supported; choose one way to shard the experts")
    if layout.pp_split is not None:
        split = tuple(layout.pp_split)
        if len(split) != pp:
            raise ShardsimError(f"--pp-split has {len(split)} stages but --pp is {pp}; give {pp} comma-separated layer counts")
        if any(isinstance(n, bool) or not isinstance(n, int) or n < 1 for n in split):
            raise ShardsimError(f"--pp-split {','.join(map(str, split))}: every stage needs at least one layer")
        if sum(split) != spec.num_layers:
            raise ShardsimError(f"--pp-split {','.join(map(str, split))} sums to {sum(split)}, but {spec.name} has {spec.num_layers} layers")
    else:
        split = default_stage_split(spec.num_layers, pp)
    derived = Layout(tp=tp, ep=ep).etp
    if layout.etp != derived:
        raise ShardsimError(f"--etp {layout.etp} is not what the layout gives: experts split over tp / ep = {derived} "
                            "ranks here (accepted: that value, or leave --etp out)")
    return Layout(tp=tp, pp=pp, dp=dp, ep=ep, zero=layout.zero, pp_split=split, cp=cp)


def _divisors_text(heads: int, kv: int, spec: ModelSpec | None = None) -> str:
    ok = [t for t in range(1, heads + 1) if heads % t == 0 and ((t <= kv and kv % t == 0) or (t > kv and t % kv == 0))]
    if spec is not None and spec.linear is not None:
        ok = [t for t in ok if spec.linear.num_key_heads % t == 0 and spec.linear.num_value_heads % t == 0]
    return ", ".join(map(str, ok))


def valid_tp_degrees(spec: ModelSpec) -> list[int]:
    return [int(x) for x in _divisors_text(spec.num_heads, spec.num_kv_heads, spec).split(", ")]


def stage_ranges(layout: Layout) -> list[tuple[int, int]]:
    """Inclusive [first, last] decoder-layer index of each stage, from the (validated) stage split."""
    ranges, first = [], 0
    for n in layout.pp_split:
        ranges.append((first, first + n - 1))
        first += n
    return ranges


def rank_coords(rank: int, layout: Layout) -> RankCoords:
    """Coordinates of ``rank``: rank = tp_rank + tp × (cp_rank + cp × (dp_rank + dp × pp_rank))."""
    tp_rank = rank % layout.tp
    cp_rank = (rank // layout.tp) % layout.cp
    dp_rank = (rank // (layout.tp * layout.cp)) % layout.dp
    pp_rank = rank // (layout.tp * layout.cp * layout.dp)
    if layout.ep <= layout.tp:
        etp = layout.tp // layout.ep
        ep_rank, etp_rank = tp_rank // etp, tp_rank % etp
    else:
        per_dp = layout.ep // layout.tp
        ep_rank, etp_rank = (dp_rank % per_dp) * layout.tp + tp_rank, 0
    return RankCoords(rank, tp_rank, dp_rank, pp_rank, ep_rank, etp_rank, cp_rank)


def rank_of(layout: Layout, tp_rank: int, dp_rank: int, pp_rank: int, cp_rank: int = 0) -> int:
    """The global rank at these coordinates (inverse of ``rank_coords``)."""
    return tp_rank + layout.tp * (cp_rank + layout.cp * (dp_rank + layout.dp * pp_rank))


@dataclass(slots=True)
class RankGroups:
    """The process groups one rank belongs to (members in rank order, the rank itself included) and its pipeline
    neighbours: the one definition the planner's communicators and the validation workers both use."""

    tp: range
    dp: range
    ep: range | tuple[int, ...]
    pp_prev: int | None
    pp_next: int | None
    last_stage_leader: int  # the rank that holds the logits first (tp rank 0 of the last stage, dp replica 0)
    cp: range = range(0)


def tp_groups(layout: Layout) -> list[tuple[int, ...]]:
    """Every TP group, stage-major then replica then context slice (the order every rank must create them in with
    ``torch.distributed.new_group``): consecutive runs of tp ranks."""
    return [tuple(rank_groups(rank_of(layout, 0, d, p, c), layout).tp) for p in range(layout.pp)
            for d in range(layout.dp) for c in range(layout.cp)]


def rank_groups(rank: int, layout: Layout) -> RankGroups:
    """Groups of ``rank`` (ranks are tp-fastest, then dp, then pp):

    - TP: the same stage, replica and context slice, tp consecutive ranks;
    - CP: the same stage, replica and tp rank, every tp-th rank across the context slices;
    - DP: the same stage, tp rank and context slice, every (tp × cp)-th rank across the replicas;
    - EP: the ranks that share out one set of experts: inside the TP group those with the same expert-TP slice
      (every etp-th rank) when ep ≤ tp, else ep / tp consecutive replicas of the stage;
    - pipeline neighbours: the same tp and dp rank one stage before / after.
    """
    c = rank_coords(rank, layout)
    tp, cp, dp = layout.tp, layout.cp, layout.dp
    tp_first = rank_of(layout, 0, c.dp_rank, c.pp_rank, c.cp_rank)
    replica_first = rank_of(layout, 0, c.dp_rank, c.pp_rank)
    stage_first = rank_of(layout, 0, 0, c.pp_rank)
    if layout.ep <= tp:
        ep = range(tp_first + c.etp_rank, tp_first + tp, layout.etp)
    else:
        per = layout.ep // tp
        first_dp = c.dp_rank - c.dp_rank % per
        if cp == 1:
            first = rank_of(layout, 0, first_dp, c.pp_rank)
            ep = range(first, first + per * tp)
        else:  # the same context slice of per consecutive replicas
            ep = tuple(rank_of(layout, t, d, c.pp_rank, c.cp_rank) for d in range(first_dp, first_dp + per)
                       for t in range(tp))
    stage_size = tp * cp * dp
    prev = rank - stage_size if c.pp_rank > 0 else None
    nxt = rank + stage_size if c.pp_rank < layout.pp - 1 else None
    dp_first = stage_first + c.tp_rank + tp * c.cp_rank
    return RankGroups(range(tp_first, tp_first + tp), range(dp_first, stage_first + stage_size, tp * cp), ep,
                      prev, nxt, rank_of(layout, 0, 0, layout.pp - 1),
                      range(replica_first + c.tp_rank, replica_first + tp * cp, tp))


def shard_of(coords: RankCoords, layout: Layout) -> Shard:
    return Shard(tp=layout.tp, tp_rank=coords.tp_rank, ep=layout.ep, ep_rank=coords.ep_rank, etp=layout.etp, etp_rank=coords.etp_rank)


def _layout_degrees(spec: ModelSpec, max_world_size: int, tp_cap: int) -> Iterator[Layout]:
    """Every (tp, pp, dp, ep) the model's heads, layers and experts allow on at most ``max_world_size`` GPUs."""
    for tp in valid_tp_degrees(spec):
        if tp > tp_cap:
            break
        for pp in range(1, min(spec.num_layers, max_world_size // tp) + 1):
            for dp in range(1, max_world_size // (tp * pp) + 1):
                eps = [1]
                if spec.is_moe:
                    eps += [e for e in range(2, min(tp * dp, spec.num_experts) + 1)
                            if (tp * dp) % e == 0 and ((e <= tp and tp % e == 0) or (e > tp and e % tp == 0))]
                for ep in eps:
                    yield Layout(tp=tp, pp=pp, dp=dp, ep=ep)


def enumerate_layouts(spec: ModelSpec, max_world_size: int, tp_max: int | None = None,
                      limit: int | None = None) -> list[Layout]:
    """Every valid (tp, pp, dp, ep) layout of ``spec`` on at most ``max_world_size`` GPUs (ZeRO off, default
    stage split), each already validated. ``tp_max`` caps tp (e.g. GPUs per node, to keep TP inside a node);
    more than ``limit`` layouts are refused before any is built (a lower bound, dense degrees only, first)."""
    tp_cap = min(tp_max or max_world_size, max_world_size)
    if limit is not None:
        dense = sum(max_world_size // (tp * pp) for tp in valid_tp_degrees(spec) if tp <= tp_cap
                    for pp in range(1, min(spec.num_layers, max_world_size // tp) + 1))
        count = dense if dense > limit else sum(1 for _ in _layout_degrees(spec, max_world_size, tp_cap))
        if count > limit:
            raise ShardsimError(f"{spec.name} has over {limit:,} layouts on {max_world_size:,} GPUs (the limit per "
                                f"model and cluster); use fewer GPUs (review: --max-gpus; sweep: smaller --gpus)")
    return [validate_layout(spec, lay) for lay in _layout_degrees(spec, max_world_size, tp_cap)]
