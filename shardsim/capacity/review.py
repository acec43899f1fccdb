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
  (``engines.refusals``); a context beyond the model's max_position_embeddings is refused as vLLM does. When a replica's requests exceed vLLM's default ``max_num_seqs`` the review raises
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

from dataclasses import dataclass, field
from typing import Callable, Iterable

from shardsim.capacity.evaluators import EVALUATORS
from shardsim.capacity.records import Option, ReviewRequest, Variant
from shardsim.capacity.speed_rank import has_speed_load, rank_by_speed
from shardsim.capacity.workload import COST_BASES, cluster_cost
from shardsim.constants import MAX_REVIEW_LAYOUTS
from shardsim.core.layout import Layout, enumerate_layouts
from shardsim.core.model import ModelSpec
from shardsim.errors import ShardsimError
from shardsim.hardware import ClusterSpec


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
    held_back: list[Option] = field(default_factory=list)  # fit, but under the minimum headroom or missing a target
    speed: bool = False    # whether the options carry speed figures (the load names its tokens)
    kept: tuple[int, int] | None = None  # (top, misses): the options whose details were kept (``keep_shown``)

    @property
    def cheapest(self) -> Option | None:
        return self.fitting[0] if self.fitting else None

    def shown(self, top: int, misses: int) -> list[Option]:
        """The options a review shows: the ``top`` ranked (0: all), the first ``misses`` held back and missed."""
        return self.fitting[: top if top > 0 else None] + self.held_back[:misses] + self.misses[:misses]

    def finish(self, top: int, misses: int) -> None:
        """Largest context / concurrency, KV tokens and the reason of every option that will be shown."""
        if self.kept is not None:
            kept_top, kept_misses = self.kept
            if misses > kept_misses or (kept_top > 0 and not 0 < top <= kept_top):
                raise ValueError(f"this review kept the details of its top {kept_top} and {kept_misses} misses only")
        for opt in self.shown(top, misses):
            if not opt.finished:
                self.evaluators[id(opt.variant)].finish(opt)
                opt.finished = True

    def keep_shown(self, top: int, misses: int) -> None:
        """Finish the options ``shown(top, misses)`` and drop the engine detail (``Option.note``) of the others:
        what a model's review sends back from a worker process is then its ranking, not every layout's engine
        report (tens of MB for a MoE over four variants, longer to pickle than to compute)."""
        self.finish(top, misses)
        shown = {id(o) for o in self.shown(top, misses)}
        for opt in self.fitting + self.held_back + self.misses:
            if id(opt) not in shown:
                opt.note = None
        self.kept = (top, misses)


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
            m.finish(top, misses)

    def to_dict(self, top: int, misses: int) -> dict:
        self.finish(top, misses)
        options, models = [], []
        for m in self.models:
            options += [o.to_dict() for o in m.shown(top, misses)]
            models.append({
                "model": m.spec.name, "context": m.context, "concurrency": m.concurrency,
                "quant": list(dict.fromkeys(v.weights_label for v in m.variants)),
                "kv_dtype": list(dict.fromkeys(v.kv_dtype for v in m.variants)),
                "evaluated": m.evaluated, "fitting": len(m.fitting), "held_back": len(m.held_back),
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


def hold_back_tight(fitting: list[Option], min_headroom: float) -> tuple[list[Option], list[Option]]:
    """(options with at least ``min_headroom`` of their budget left, the rest with the reason): an estimate with a few
    hundred MiB to spare is not a recommendation, nor one the engine starts only inside a band (``start_risk``)."""
    from shardsim.units import gib_text

    ranked, tight = [], []
    for o in fitting:
        report = getattr(o.note, "report", None)  # an engine's report (VllmNote); the planner's notes have none
        if report is not None and report.start_risk:
            o.held_back = f"BORDERLINE: {report.start_risk}"
            tight.append(o)
        elif o.headroom_bytes < min_headroom * o.budget_bytes:
            o.held_back = (f"headroom {gib_text(o.headroom_bytes)} GiB is under --min-headroom "
                           f"{100 * min_headroom:g} % of {gib_text(o.budget_bytes)} GiB")
            tight.append(o)
        else:
            ranked.append(o)
    return ranked, tight


def variants_for(spec: ModelSpec, context: int, concurrency: int, quants: Iterable[str] | None,
                 kv_dtypes: Iterable[str]) -> list[Variant]:
    from shardsim.core.quant import quant_from_choice

    out = []
    for q in (list(quants) if quants else ["checkpoint"]):
        quant = spec.quant if q == "checkpoint" else quant_from_choice(q)
        for kv in kv_dtypes:
            out.append(Variant(spec, context, concurrency, q, quant, kv))
    return out


def review(request: ReviewRequest, progress: Callable[[int, int], None] | None = None,
           keep: tuple[int, int] | None = None) -> Review:
    """Score every layout of every cluster for every model variant; rank the fitting ones by cost (the request's
    ``engine_version``: the vLLM release whose rules the vLLM evaluator applies; None: the newest). The models are
    reviewed side by side on the machine's cores (``fanout``): they share nothing but the request. ``keep`` =
    (top, misses): the caller shows no more than these per model (``ModelReview.keep_shown``); None: all kept."""
    from shardsim.capacity.fanout import fan_out

    loads, clusters, engine, by = list(request.loads), list(request.clusters), request.engine, request.by
    if engine not in EVALUATORS:
        raise ShardsimError(f"--engine {engine!r} is not known; accepted: {', '.join(EVALUATORS)}")
    if by not in COST_BASES:
        raise ShardsimError(f"--by {by!r} is not known; accepted: {', '.join(COST_BASES)}")
    if not clusters:
        raise ShardsimError("no clusters to review; check --cluster / --catalog")
    steps, finished = len(loads) * len(clusters), [0]
    layouts_of: dict[tuple, list[Layout]] = {}

    def one_model(index: int) -> ModelReview:
        spec, load = loads[index]
        m = _review_model(spec, load, request, clusters, layouts_of,
                          None if len(loads) > 1 or progress is None else (lambda done: progress(done, steps)))
        if keep is not None:
            m.keep_shown(*keep)
        return m

    def model_done(index: int) -> None:
        finished[0] += 1
        if progress is not None and len(loads) > 1:
            progress(finished[0] * len(clusters), steps)

    # the longest first: a MoE has its expert-parallel layouts too, a vision tower or linear attention more per rank
    first = sorted(range(len(loads)), key=lambda i: _review_weight(loads[i][0]), reverse=True)
    models = fan_out(one_model, len(loads), model_done, first)
    for m in models:  # a worker's result is a copy: its evaluators are keyed anew by their variants' identities
        m.evaluators = {id(ev.variant): ev for ev in m.evaluators.values()}
    return Review(engine, by, clusters, models, request.gpu_memory_utilization)


def _review_weight(spec: ModelSpec) -> tuple:
    """How long a model's review takes, roughly, for the order the models are started in (nothing else)."""
    return (spec.is_moe, spec.vision is not None or spec.is_hybrid, spec.num_layers)


def _review_model(spec: ModelSpec, load, request: ReviewRequest, clusters: list[ClusterSpec],
                  layouts_of: dict, progress: Callable[[int], None] | None) -> ModelReview:
    """One model's review (``review``); ``progress(clusters done)`` after each cluster."""
    engine, by, gpu_memory_utilization, max_gpus, engine_version = (
        request.engine, request.by, request.gpu_memory_utilization, request.max_gpus, request.engine_version)
    variants = variants_for(spec, load.context, load.concurrency, load.quant, load.kv_dtype)
    evaluators = {}
    for v in variants:
        evaluators[id(v)] = EVALUATORS[engine](v, gpu_memory_utilization, engine_version)
    seen: dict[tuple, Option] = {}
    evaluated = 0
    for done, cluster in enumerate(clusters, 1):
        world = min(cluster.world_size, max_gpus) if max_gpus else cluster.world_size
        key = (spec, world, cluster.gpus_per_node)
        lays = layouts_of.get(key)
        if lays is None:
            lays = layouts_of[key] = enumerate_layouts(spec, world, tp_max=cluster.gpus_per_node, limit=MAX_REVIEW_LAYOUTS)
            # the layouts the engine has (vLLM: expert parallel off, or over all tp × dp ranks)
            lays = layouts_of[key] = [lay for lay in lays if evaluators[id(variants[0])].runs(lay)]
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
                sc = ev.score(cluster, lay)
                cost = None if per_gpu is None else per_gpu * lay.world_size
                seen[dkey] = Option(v, cluster, lay, sc.fits, cost, sc.peak_rank, sc.peak_bytes, sc.budget_bytes,
                                    sc.headroom_bytes, sc.note)
        if progress is not None:
            progress(done)
    options = list(seen.values())
    fitting = sorted((o for o in options if o.fits), key=lambda o: (
        o.cost is None, o.cost or 0.0, -o.headroom_bytes, o.layout.world_size, o.cluster.world_size, o.cluster.name))
    fitting, held_back = hold_back_tight(fitting, request.min_headroom)
    if has_speed_load(load):
        fitting, slow = rank_by_speed(fitting, spec, load, engine, gpu_memory_utilization, engine_version)
        for o in slow:
            o.held_back = o.speed.missed if o.speed is not None else f"no speed estimate: {o.held_back}"
        # (the minimum-headroom ones stay behind the slow ones: they may not even start)
        held_back = slow + held_back
    # Memory misses first, smallest deficit first; refusals with memory to spare (e.g. FP8 on an old GPU) last.
    misses = sorted((o for o in options if not o.fits), key=lambda o: (
        o.headroom_bytes >= 0, -o.headroom_bytes, o.cost is None, o.cost or 0.0, o.cluster.name))
    return ModelReview(spec, load.context, load.concurrency, variants, evaluated, fitting, misses, evaluators,
                       held_back, has_speed_load(load))
