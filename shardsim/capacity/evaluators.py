"""How a review scores one layout on one GPU: shardsim's planner (engine none) or vLLM's start-up arithmetic.

Both return a ``Score``; ``finish`` fills the figures shown for an option (largest context and concurrency, KV
tokens, the reason it does not fit). vLLM's refusals come from ``engines.refusals``, the same rules ``shardsim plan
--engine vllm`` applies.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shardsim.capacity.records import Option, Score, Variant
from shardsim.constants import KV_BLOCK_TOKENS, MAX_BATCH
from shardsim.core.layout import Layout, rank_coords, rank_of
from shardsim.core.memory.kv_cache import kv_bytes_per_token_per_layer
from shardsim.core.planner import Planner
from shardsim.core.workload import Workload
from shardsim.engines import refusals
from shardsim.engines.releases import resolve
from shardsim.engines.vllm import predict_vllm
from shardsim.engines.vllm_knobs import VllmKnobs, vllm_defaults
from shardsim.hardware import ClusterSpec
from shardsim.hardware.topology import fabric_of
from shardsim.units import gib_text


class _Memos:
    """What an evaluator keeps while scoring (``MEMOS``: its caches) is left out when it is pickled — a review's
    worker sends its evaluators back (``capacity.fanout``) only to finish the shown options, which needs none of it."""

    MEMOS: tuple[str, ...] = ()

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in self.MEMOS}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        for name in self.MEMOS:
            setattr(self, name, {})


class PlannerEval(_Memos):
    """Engine none: shardsim's planner, peak rank total at (context, ceil(concurrency / dp))."""

    engine = "none"
    MEMOS = ("planners", "peaks", "fabrics")

    def __init__(self, variant: Variant, gpu_memory_utilization: float | None = None,
                 engine_version: str | None = None):
        self.variant = variant  # the planner has no engine knobs: the other two are vLLM's
        wl = Workload(context=variant.context, batch=1, quant=variant.quant, kv_dtype=variant.kv_dtype).checked()
        self.base = Planner(variant.spec, Layout(), wl)
        self.planners: dict[tuple, Planner] = {}
        self.peaks: dict[tuple, Any] = {}
        self.fabrics: dict[int, Any] = {}

    def fabric(self, cluster: ClusterSpec):
        """The cluster's wiring (runtime terms depend on it), memoised per cluster."""
        hit = self.fabrics.get(id(cluster))
        if hit is None or hit[0] is not cluster:
            hit = self.fabrics[id(cluster)] = (cluster, fabric_of(cluster))
        return hit[1]

    def runs(self, layout: Layout) -> bool:
        """Every valid layout: the planner refuses none."""
        return True

    def planner(self, layout: Layout, fabric=None) -> Planner:
        key = (layout, fabric)
        p = self.planners.get(key)
        if p is None:
            p = self.planners[key] = self.base.with_layout(layout, fabric)
        return p

    def score(self, cluster: ClusterSpec, layout: Layout) -> Score:
        fabric = self.fabric(cluster)
        peak = self.peaks.get((layout, fabric))
        if peak is None:
            batch = -(-self.variant.concurrency // layout.dp)
            peak = self.peaks[(layout, fabric)] = self.planner(layout, fabric).peak_total(self.variant.context, batch)
        capacity = cluster.gpu.capacity_bytes
        return Score(peak.total_bytes <= capacity, peak.rank, peak.total_bytes, capacity, capacity - peak.total_bytes)

    def finish(self, opt: Option) -> None:
        v, lay = self.variant, opt.layout
        planner = self.planner(lay, self.fabric(opt.cluster))
        capacity = opt.cluster.gpu.capacity_bytes
        batch = -(-v.concurrency // lay.dp)
        opt.max_context = planner.largest_fitting(capacity, batch, "context", v.spec.max_position_embeddings)
        max_batch = planner.largest_fitting(capacity, v.context, "batch", MAX_BATCH)
        opt.max_concurrency = max_batch * lay.dp
        opt.kv_cache_tokens = max_batch * (-(-v.context // planner.block_size) * planner.block_size)
        if not opt.fits:
            opt.reason = (f"rank {opt.peak_rank} needs {gib_text(opt.peak_bytes)} GiB of {gib_text(capacity)} GiB "
                          f"at context {v.context:,} × batch {batch:,}")


@dataclass(frozen=True, slots=True)
class VllmNote:
    report: Any
    need_blocks: int
    request_blocks: int
    per_replica: int
    refusal: str | None
    default_knobs: bool = False  # the report is at vLLM's default scheduler knobs (max_num_seqs not raised)


class VllmEval(_Memos):
    """Engine vllm: ``predict_vllm`` per layout (one replica when experts are not spread over DP)."""

    engine = "vllm"
    MEMOS = ("reports", "scores")

    def __init__(self, variant: Variant, gpu_memory_utilization: float, engine_version: str | None = None):
        self.variant = variant
        self.util = gpu_memory_utilization
        self.engine_version = engine_version
        self.kv_cache_dtype = "fp8" if variant.kv_dtype == "fp8" else "auto"
        self.kv_bytes = 1 if variant.kv_dtype == "fp8" else 2
        self.block = KV_BLOCK_TOKENS
        self.reports: dict[tuple, Any] = {}
        self.scores: dict[tuple, Score] = {}
        self.request_blocks = -(-variant.context // self.block)

    def runs(self, layout: Layout) -> bool:
        """Layouts vLLM has (``refusals.expert_parallel_refusal``)."""
        return refusals.expert_parallel_refusal(self.variant.spec, layout) is None

    def score(self, cluster: ClusterSpec, layout: Layout) -> Score:
        gpu = cluster.gpu
        fabric = fabric_of(cluster)
        key = (layout, gpu.capacity_bytes, gpu.name, gpu.compute_capability, fabric)
        hit = self.scores.get(key)
        if hit is None:
            hit = self.scores[key] = self._score(gpu, layout, fabric)
        return hit

    def _report(self, gpu, layout: Layout, per_replica: int, fabric):
        """vLLM's start-up figures of one replica (all of them when experts span the replicas, ep > tp)."""
        v = self.variant
        rules = resolve("vllm", self.engine_version).rules
        defaults = vllm_defaults(gpu.capacity_bytes, gpu.name, rules, v.context)
        knobs = dict(gpu_memory_utilization=self.util, max_model_len=v.context, kv_cache_dtype=self.kv_cache_dtype,
                     block_size=self.block, engine_version=self.engine_version)
        if per_replica > defaults.max_num_seqs:  # serve them all at once: --max-num-seqs raised to the requests
            knobs.update(max_num_seqs=per_replica,
                         max_num_batched_tokens=max(defaults.max_num_batched_tokens, per_replica))
        one = layout if layout.ep > layout.tp else layout.with_degrees(dp=1)
        key = (one, gpu.capacity_bytes, gpu.name, gpu.compute_capability, fabric,
               tuple(sorted(knobs.items(), key=lambda kv: kv[0])))
        report = self.reports.get(key)
        if report is None:
            report = self.reports[key] = predict_vllm(v.spec, one, gpu.capacity_bytes, gpu.name,
                                                      gpu.compute_capability, "bf16", v.quant, VllmKnobs(**knobs),
                                                      fabric)
        return one, report, per_replica <= defaults.max_num_seqs

    def _score(self, gpu, layout: Layout, fabric) -> Score:
        v = self.variant
        per_replica = -(-v.concurrency // layout.dp)
        one, report, default_knobs = self._report(gpu, layout, per_replica, fabric)
        page = self.block * kv_bytes_per_token_per_layer(v.spec, layout.tp, self.kv_bytes)
        need_blocks = per_replica * self.request_blocks
        worst, headroom = 0, None
        for r in report.ranks:
            if v.spec.is_hybrid:
                # one pool of attention and state pages (engines.vllm_hybrid): it holds max_concurrency sequences
                # of max_model_len (= the context); what the requests leave of it, in proportion
                held = report.max_concurrency or 0.0
                h = int(r.available_kv_cache_bytes * (1 - per_replica / held)) if held else -1
            else:
                h = r.available_kv_cache_bytes - need_blocks * page * r.layers
            if headroom is None or h < headroom:
                worst, headroom = r.rank, h
        if one is not layout:  # the same rank of replica 0 in the full layout
            c = rank_coords(worst, one)
            worst = rank_of(layout, c.tp_rank, 0, c.pp_rank)
        refusal = (refusals.max_model_len_refusal(v.spec, v.context)
                   or refusals.fp8_hardware_refusal(v.quant, gpu.name, gpu.compute_capability)
                   or refusals.fp8_block_refusal(v.spec, layout, v.quant))
        budget = int(gpu.capacity_bytes * self.util)
        fits = refusal is None and report.starts and headroom >= 0
        note = VllmNote(report, need_blocks, self.request_blocks, per_replica, refusal, default_knobs)
        return Score(fits, worst, budget - headroom, budget, headroom, note)

    def finish(self, opt: Option) -> None:
        v, lay, note = self.variant, opt.layout, opt.note
        report = note.report
        blocks = report.kv_cache_tokens // self.block
        opt.kv_cache_tokens = report.kv_cache_tokens
        opt.max_concurrency = blocks // note.request_blocks * lay.dp if report.starts else 0
        opt.max_context = min(blocks // note.per_replica * self.block, v.spec.max_position_embeddings) if report.starts else 0
        if v.spec.is_hybrid and report.starts:  # the shared pool's own count (engines.vllm_hybrid)
            opt.max_concurrency = int(report.max_concurrency or 0) * lay.dp
        if opt.fits:
            return
        if note.refusal:
            opt.reason = note.refusal
        elif not report.starts:
            opt.reason = report.refusal
        else:
            opt.reason = (f"KV cache holds {report.kv_cache_tokens:,} tokens per replica = {blocks // note.request_blocks:,} "
                          f"requests of {v.context:,} tokens, {note.per_replica:,} needed (rank {opt.peak_rank} is short)")


EVALUATORS = {"none": PlannerEval, "vllm": VllmEval}
"""The review's engines: each scores a layout on a cluster (``score``), says which layouts it has (``runs``) and
fills an option's figures (``finish``); adding one is a class and a line here."""
