"""Capacity review: one or more served models against a catalog of priced clusters, every layout, ranked by cost.

A *workload* names, per model, the context every request carries (tokens: prompt + generated) and how many
requests run at once (``concurrency``), optionally a weight format (``quant``) and KV dtype to consider. For
every cluster in the catalog every valid layout is enumerated (``enumerate_layouts``: TP stays inside a node,
the layout may use fewer GPUs than the cluster has) and scored:

- engine ``none`` (shardsim's own planner): the layout fits when the most loaded rank's total at
  (context, batch = ceil(concurrency / dp)) is at most the GPU's capacity (``Planner.peak_total``).
- engine ``vllm``: the layout fits when ``predict_vllm`` says vLLM starts (``max_model_len`` = context) and the KV
  cache of each DP replica holds its ceil(concurrency / dp) requests at full context, in whole pages. Layouts are
  the ones vLLM can run: expert parallel off (ep 1) or ``--enable-expert-parallel`` (ep = tp × dp). FP8 weights
  need compute capability ≥ 8.0 (vLLM's Marlin fallback) and whole 128-wide scale blocks per shard
  (``plan.quant_warnings``); a context beyond the model's max_position_embeddings is refused as vLLM does. When a replica's requests exceed vLLM's default ``max_num_seqs`` the review raises
  it to them, as one would with ``--max-num-seqs`` (the sampler's dummy run grows with it).
  The headroom is measured inside vLLM's own budget, gpu_memory_utilization × capacity: budget − (model loading
  + activation peak + non-torch memory + the workload's KV pages) on the worst rank.

Cost counts the GPUs a layout uses, not the whole cluster: (cluster price / its GPUs) × layout GPUs, with the
cluster's purchase price (``--by purchase``) or its hourly price (``--by hourly``). The same layout on clusters
of the same GPU at the same per-GPU price is one option (the smallest such cluster; the others in ``also_on``).
Fitting options are ranked by cost, then by headroom (largest first); the nearest misses are the options that
do not fit with the smallest deficit.

Speed: each distinct (layout, GPU) is scored once per model variant; the planner path uses the memoised
``Planner.peak_total``, and vLLM with data parallel but no expert parallel is predicted on one replica (every
replica holds the same ranks). Largest context / concurrency are found only for the options that are shown.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable


from .cluster import ClusterSpec
from .constants import KV_BLOCK_TOKENS, MAX_BATCH
from .errors import ShardsimError
from .layout import Layout, enumerate_layouts
from .models import ModelSpec, QuantConfig
from .units import GiB

from .workload import (  # noqa: F401 - re-exported for callers of shardsim.review
    BASE_PRESETS,
    COST_BASES,
    ENGINES,
    KV_DTYPES,
    QUANT_NAMES,
    ModelLoad,
    WorkloadSpec,
    cluster_cost,
    load_catalog,
    load_workload,
    resolve_served_model,
)


# ---------------------------------------------------------------- options
@dataclass(frozen=True, slots=True)
class Variant:
    """One model in one weight format and KV dtype, serving ``concurrency`` requests of ``context`` tokens."""

    spec: ModelSpec
    context: int
    concurrency: int
    quant_name: str  # none / fp8 / int8 / int4, or 'checkpoint' (the checkpoint's own format)
    quant: QuantConfig
    kv_dtype: str

    @property
    def weights_label(self) -> str:
        q = self.quant
        if q.method == "none":
            return "bf16"
        if q.method.startswith("gptq"):
            return f"int{q.bits}"
        return q.method


@dataclass(slots=True)
class Option:
    """One layout on one cluster for one variant, scored."""

    variant: Variant
    cluster: ClusterSpec
    layout: Layout
    fits: bool
    cost: float | None
    peak_rank: int
    peak_bytes: int
    budget_bytes: int  # what peak_bytes is compared with: the capacity (planner) or util × capacity (vLLM)
    headroom_bytes: int
    note: Any = None  # engine-specific detail kept for ``finish`` (vLLM: the EngineReport and its blocks)
    also_on: list[str] = field(default_factory=list)
    reason: str | None = None
    max_context: int | None = None
    max_concurrency: int | None = None
    kv_cache_tokens: int | None = None  # per DP replica
    finished: bool = False

    def to_dict(self) -> dict:
        lay, v = self.layout, self.variant
        return {
            "model": v.spec.name, "quant": v.weights_label, "kv_dtype": v.kv_dtype,
            "cluster": self.cluster.name, "also_on": list(self.also_on), "gpu": self.cluster.gpu.name,
            "layout": {"tp": lay.tp, "pp": lay.pp, "dp": lay.dp, "ep": lay.ep, "world_size": lay.world_size},
            "gpus": lay.world_size, "fits": self.fits, "cost": None if self.cost is None else round(self.cost, 4),
            "peak_rank": self.peak_rank, "peak_bytes": self.peak_bytes, "budget_bytes": self.budget_bytes,
            "capacity_bytes": self.cluster.gpu.capacity_bytes, "headroom_bytes": self.headroom_bytes,
            "max_context": self.max_context, "max_concurrency": self.max_concurrency,
            "kv_cache_tokens": self.kv_cache_tokens, "replicas": lay.dp, "reason": self.reason,
        }


def layout_text(layout: Layout) -> str:
    text = f"TP{layout.tp}×PP{layout.pp}×DP{layout.dp}"
    return text + (f"·EP{layout.ep}" if layout.ep > 1 else "")


def _gib(n: int) -> str:
    return f"{n / GiB:,.2f}"


class _PlannerEval:
    """Engine none: shardsim's planner, peak rank total at (context, ceil(concurrency / dp))."""

    engine = "none"

    def __init__(self, variant: Variant):
        from .plan import Planner, Workload

        self.variant = variant
        wl = Workload(context=variant.context, batch=1, quant=variant.quant, kv_dtype=variant.kv_dtype).checked()
        self.base = Planner(variant.spec, Layout(), wl)
        self.planners: dict[Layout, Any] = {}
        self.peaks: dict[Layout, tuple[int, int]] = {}

    def planner(self, layout: Layout):
        p = self.planners.get(layout)
        if p is None:
            p = self.planners[layout] = self.base.with_layout(layout)
        return p

    def score(self, cluster: ClusterSpec, layout: Layout) -> tuple[bool, int, int, int, int, Any]:
        hit = self.peaks.get(layout)
        if hit is None:
            batch = -(-self.variant.concurrency // layout.dp)
            hit = self.peaks[layout] = self.planner(layout).peak_total(self.variant.context, batch)
        rank, total = hit
        capacity = cluster.gpu.capacity_bytes
        return total <= capacity, rank, total, capacity, capacity - total, None

    def finish(self, opt: Option) -> None:
        v, lay = self.variant, opt.layout
        planner = self.planner(lay)
        capacity = opt.cluster.gpu.capacity_bytes
        batch = -(-v.concurrency // lay.dp)
        opt.max_context = planner.largest_fitting(capacity, batch, "context", v.spec.max_position_embeddings)
        max_batch = planner.largest_fitting(capacity, v.context, "batch", MAX_BATCH)
        opt.max_concurrency = max_batch * lay.dp
        opt.kv_cache_tokens = max_batch * (-(-v.context // planner.block_size) * planner.block_size)
        if not opt.fits:
            opt.reason = (f"rank {opt.peak_rank} needs {_gib(opt.peak_bytes)} GiB of {_gib(capacity)} GiB "
                          f"at context {v.context:,} × batch {batch:,}")


@dataclass(frozen=True, slots=True)
class _VllmScore:
    report: Any
    need_blocks: int
    request_blocks: int
    per_replica: int
    refusal: str | None


class _VllmEval:
    """Engine vllm: ``predict_vllm`` per layout (one replica when experts are not spread over DP)."""

    engine = "vllm"

    def __init__(self, variant: Variant, gpu_memory_utilization: float):
        from .engines.common import kv_bytes_per_token_per_layer
        from .engines.vllm import VllmKnobs, predict_vllm, vllm_defaults
        from .plan import quant_warnings

        self.variant = variant
        self.util = gpu_memory_utilization
        self.kv_cache_dtype = "fp8" if variant.kv_dtype == "fp8" else "auto"
        self.kv_bytes = 1 if variant.kv_dtype == "fp8" else 2
        self.block = KV_BLOCK_TOKENS
        self._predict, self._knobs, self._defaults = predict_vllm, VllmKnobs, vllm_defaults
        self._kv_layer, self._quant_warnings = kv_bytes_per_token_per_layer, quant_warnings
        self.reports: dict[tuple, Any] = {}
        self.scores: dict[tuple, tuple] = {}
        self.request_blocks = -(-variant.context // self.block)

    @staticmethod
    def runs(layout: Layout) -> bool:
        """Layouts vLLM has: expert parallel off, or on over all tp × dp ranks."""
        return layout.ep == 1 or layout.ep == layout.tp * layout.dp

    def score(self, cluster: ClusterSpec, layout: Layout) -> tuple[bool, int, int, int, int, Any]:
        gpu = cluster.gpu
        key = (layout, gpu.capacity_bytes, gpu.name, gpu.compute_capability)
        hit = self.scores.get(key)
        if hit is None:
            hit = self.scores[key] = self._score(gpu, layout)
        return hit

    def _score(self, gpu, layout: Layout) -> tuple:
        v = self.variant
        spec, quant = v.spec, v.quant
        per_replica = -(-v.concurrency // layout.dp)
        seqs_default, tokens_default = self._defaults(gpu.capacity_bytes, gpu.name)
        knobs = dict(gpu_memory_utilization=self.util, max_model_len=v.context, kv_cache_dtype=self.kv_cache_dtype,
                     block_size=self.block)
        if per_replica > seqs_default:  # serve them all at once: --max-num-seqs raised to the replica's requests
            knobs.update(max_num_seqs=per_replica, max_num_batched_tokens=max(tokens_default, per_replica))
        # Every DP replica holds the same ranks unless experts are spread over the replicas (ep > tp).
        one = layout if layout.ep > layout.tp else dataclasses.replace(layout, dp=1)
        rkey = (one, gpu.capacity_bytes, gpu.name, gpu.compute_capability, tuple(sorted(knobs.items())))
        report = self.reports.get(rkey)
        if report is None:
            report = self.reports[rkey] = self._predict(spec, one, gpu.capacity_bytes, gpu.name, gpu.compute_capability,
                                                        "bf16", quant, self._knobs(**knobs))
        page = self.block * self._kv_layer(spec, layout.tp, self.kv_bytes)
        need_blocks = per_replica * self.request_blocks
        worst, headroom = 0, None
        for r in report.ranks:
            h = r.available_kv_cache_bytes - need_blocks * page * r.layers
            if headroom is None or h < headroom:
                worst, headroom = r.rank, h
        if one is not layout:  # rank of replica 0 in the full layout: tp_rank + tp × dp × pp_rank
            worst = worst % layout.tp + layout.tp * layout.dp * (worst // layout.tp)
        refusal = None
        if v.context > spec.max_position_embeddings:  # vllm/config: max_model_len beyond the model's window
            refusal = (f"User-specified max_model_len ({v.context}) is greater than the derived max_model_len "
                       f"(max_position_embeddings={spec.max_position_embeddings} in the model's config.json); "
                       "enable rope scaling (YaRN) in the config to serve longer requests")
        elif quant.method == "fp8":
            cc = gpu.compute_capability
            if cc is not None and float(cc) < 8.0:
                refusal = (f"vLLM's FP8 weights need compute capability ≥ 8.0 (Marlin fallback); "
                           f"{gpu.name} has {cc}")
            else:
                warns = self._quant_warnings(spec, layout, quant)
                refusal = warns[0] if warns else None
        budget = int(gpu.capacity_bytes * self.util)
        fits = refusal is None and report.starts and headroom >= 0
        note = _VllmScore(report, need_blocks, self.request_blocks, per_replica, refusal)
        return fits, worst, budget - headroom, budget, headroom, note

    def finish(self, opt: Option) -> None:
        v, lay, note = self.variant, opt.layout, opt.note
        report = note.report
        blocks = report.kv_cache_tokens // self.block
        opt.kv_cache_tokens = report.kv_cache_tokens
        opt.max_concurrency = blocks // note.request_blocks * lay.dp if report.starts else 0
        opt.max_context = min(blocks // note.per_replica * self.block, v.spec.max_position_embeddings) if report.starts else 0
        if opt.fits:
            return
        if note.refusal:
            opt.reason = note.refusal
        elif not report.starts:
            opt.reason = report.refusal
        else:
            opt.reason = (f"KV cache holds {report.kv_cache_tokens:,} tokens per replica = {blocks // note.request_blocks:,} "
                          f"requests of {v.context:,} tokens, {note.per_replica:,} needed (rank {opt.peak_rank} is short)")


# ---------------------------------------------------------------- review
@dataclass(slots=True)
class ModelReview:
    spec: ModelSpec
    context: int
    concurrency: int
    variants: list[Variant]
    evaluated: int
    fitting: list[Option]  # ranked, one per distinct (GPU, price, layout, variant)
    misses: list[Option]   # nearest first
    evaluators: dict = field(default_factory=dict)

    @property
    def cheapest(self) -> Option | None:
        return self.fitting[0] if self.fitting else None


@dataclass(slots=True)
class Review:
    engine: str
    by: str
    clusters: list[ClusterSpec]
    models: list[ModelReview]
    gpu_memory_utilization: float = 0.9

    @property
    def evaluated(self) -> int:
        return sum(m.evaluated for m in self.models)

    def all_at_once(self) -> dict | None:
        """The cheapest single cluster hosting every model at once, each on its fewest-GPU fitting layout there,
        by summing the GPUs they use (None: no cluster holds them all, or one model)."""
        if len(self.models) < 2:
            return None
        best = None
        for cluster in self.clusters:
            picks = []
            for m in self.models:
                here = [o for o in m.fitting if o.cluster.name == cluster.name or cluster.name in o.also_on]
                if not here:
                    break
                picks.append(min(here, key=lambda o: (o.layout.world_size, o.cost or 0, -o.headroom_bytes)))
            else:
                gpus = sum(o.layout.world_size for o in picks)
                if gpus > cluster.world_size:
                    continue
                cost = cluster_cost(cluster, gpus, self.by)
                key = (cost is None, cost or 0, gpus)
                if best is None or key < best[0]:
                    best = (key, cluster, picks, gpus, cost)
        if best is None:
            return None
        _, cluster, picks, gpus, cost = best
        return {"cluster": cluster.name, "gpus": gpus, "cluster_gpus": cluster.world_size,
                "cost": None if cost is None else round(cost, 4),
                "models": [{"model": o.variant.spec.name, "quant": o.variant.weights_label, "kv_dtype": o.variant.kv_dtype,
                            "layout": {"tp": o.layout.tp, "pp": o.layout.pp, "dp": o.layout.dp, "ep": o.layout.ep,
                                       "world_size": o.layout.world_size}} for o in picks]}

    def finish(self, top: int, misses: int) -> None:
        """Largest context / concurrency, KV tokens and the reason of every option that will be shown."""
        for m in self.models:
            for opt in m.fitting[: top if top > 0 else None] + m.misses[:misses]:
                if not opt.finished:
                    m.evaluators[id(opt.variant)].finish(opt)
                    opt.finished = True

    def to_dict(self, top: int, misses: int) -> dict:
        self.finish(top, misses)
        options, models = [], []
        for m in self.models:
            shown = m.fitting[: top if top > 0 else None] + m.misses[:misses]
            options += [o.to_dict() for o in shown]
            models.append({
                "model": m.spec.name, "context": m.context, "concurrency": m.concurrency,
                "quant": list(dict.fromkeys(v.weights_label for v in m.variants)),
                "kv_dtype": list(dict.fromkeys(v.kv_dtype for v in m.variants)),
                "evaluated": m.evaluated, "fitting": len(m.fitting),
                "cheapest": m.cheapest.to_dict() if m.cheapest else None,
            })
        return {
            "engine": self.engine, "by": self.by,
            "cost_basis": f"{'purchase price' if self.by == 'purchase' else 'price per hour'} (USD) of the GPUs a "
                          "layout uses: cluster price / cluster GPUs × layout GPUs",
            "gpu_memory_utilization": self.gpu_memory_utilization if self.engine == "vllm" else None,
            "clusters": [c.name for c in self.clusters], "evaluated": self.evaluated,
            "models": models, "options": options, "all_models": self.all_at_once(),
        }


def variants_for(spec: ModelSpec, context: int, concurrency: int, quants: Iterable[str] | None,
                 kv_dtypes: Iterable[str]) -> list[Variant]:
    from .quant import quant_from_choice

    out = []
    for q in (list(quants) if quants else ["checkpoint"]):
        quant = spec.quant if q == "checkpoint" else quant_from_choice(q)
        for kv in kv_dtypes:
            out.append(Variant(spec, context, concurrency, q, quant, kv))
    return out


def review(loads: list[tuple[ModelSpec, ModelLoad]], clusters: list[ClusterSpec], engine: str = "none",
           by: str = "purchase", gpu_memory_utilization: float = 0.9, max_gpus: int | None = None,
           progress: Callable[[int, int], None] | None = None) -> Review:
    """Score every layout of every cluster for every model variant; rank the fitting ones by cost."""
    if engine not in ENGINES:
        raise ShardsimError(f"--engine {engine!r} is not known; accepted: {', '.join(ENGINES)}")
    if by not in COST_BASES:
        raise ShardsimError(f"--by {by!r} is not known; accepted: {', '.join(COST_BASES)}")
    if not clusters:
        raise ShardsimError("no clusters to review; check --cluster / --catalog")
    layouts_of: dict[tuple, list[Layout]] = {}
    models, steps, done = [], len(loads) * len(clusters), 0
    for spec, load in loads:
        variants = variants_for(spec, load.context, load.concurrency, load.quant, load.kv_dtype)
        evaluators = {}
        for v in variants:
            evaluators[id(v)] = _PlannerEval(v) if engine == "none" else _VllmEval(v, gpu_memory_utilization)
        seen: dict[tuple, Option] = {}
        evaluated = 0
        for cluster in clusters:
            world = min(cluster.world_size, max_gpus) if max_gpus else cluster.world_size
            key = (spec, world, cluster.gpus_per_node)
            lays = layouts_of.get(key)
            if lays is None:
                lays = layouts_of[key] = enumerate_layouts(spec, world, tp_max=cluster.gpus_per_node)
                if engine == "vllm":
                    lays = layouts_of[key] = [lay for lay in lays if _VllmEval.runs(lay)]
            for v in variants:
                ev = evaluators[id(v)]
                per_gpu = cluster_cost(cluster, 1, by)
                for lay in lays:
                    evaluated += 1
                    dkey = (id(v), cluster.gpu.name, cluster.gpu.capacity_bytes, per_gpu, lay)
                    dup = seen.get(dkey)
                    if dup is not None:
                        dup.also_on.append(cluster.name)
                        continue
                    fits, rank, peak, budget, headroom, note = ev.score(cluster, lay)
                    cost = None if per_gpu is None else per_gpu * lay.world_size
                    seen[dkey] = Option(v, cluster, lay, fits, cost, rank, peak, budget, headroom, note)
            done += 1
            if progress is not None:
                progress(done, steps)
        options = list(seen.values())
        fitting = sorted((o for o in options if o.fits), key=lambda o: (
            o.cost is None, o.cost or 0.0, -o.headroom_bytes, o.layout.world_size, o.cluster.world_size, o.cluster.name))
        # Memory misses first, smallest deficit first; refusals with memory to spare (e.g. FP8 on an old GPU) last.
        misses = sorted((o for o in options if not o.fits), key=lambda o: (
            o.headroom_bytes >= 0, -o.headroom_bytes, o.cost is None, o.cost or 0.0, o.cluster.name))
        models.append(ModelReview(spec, load.context, load.concurrency, variants, evaluated, fitting, misses, evaluators))
    return Review(engine, by, clusters, models, gpu_memory_utilization)


