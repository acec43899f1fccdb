"""The records of a capacity review: the request, a model variant, one scored layout option, and how a score
reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shardsim.core.layout import Layout
from shardsim.core.model import ModelSpec, QuantConfig
from shardsim.hardware import ClusterSpec


@dataclass(frozen=True, slots=True)
class ReviewRequest:
    """A serving review: the models (each with its workload), the clusters, the engine scoring each layout (an
    ``evaluators.EVALUATORS`` name), the cost basis, vLLM's memory fraction and release, and a GPU cap."""

    loads: tuple  # (ModelSpec, capacity.workload.ModelLoad) per model
    clusters: tuple[ClusterSpec, ...]
    engine: str = "none"
    by: str = "purchase"
    gpu_memory_utilization: float = 0.9
    max_gpus: int | None = None
    engine_version: str | None = None
    min_headroom: float = 0.05   # an option is ranked only with this share of its budget left on the worst GPU


@dataclass(frozen=True, slots=True)
class TrainReviewRequest:
    """A training review (a ``task: train`` workload): the models with their training load, the clusters, the cost
    basis."""

    loads: tuple  # (ModelSpec, capacity.train_workload.TrainLoad) per model
    clusters: tuple[ClusterSpec, ...]
    by: str = "purchase"


@dataclass(frozen=True, slots=True)
class Score:
    """One layout on one GPU scored: whether it fits, the worst rank and what it needs of which budget."""

    fits: bool
    peak_rank: int
    peak_bytes: int
    budget_bytes: int  # what peak_bytes is compared with: the capacity (planner) or util × capacity (vLLM)
    headroom_bytes: int
    note: Any = None  # engine-specific detail kept for ``finish`` (vLLM: the EngineReport and its blocks)


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
    speed: Any = None               # capacity.speed_rank.OptionSpeed when the load names its tokens
    held_back: str | None = None    # why an option that fits is not ranked (headroom under the minimum, a target)

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
            "kv_cache_tokens": self.kv_cache_tokens, "replicas": lay.dp, "gpus_per_replica": lay.tp * lay.pp,
            "reason": self.reason, "ranked": self.fits and self.held_back is None, "held_back": self.held_back,
            "speed": self.speed.to_dict() if self.speed is not None else None,
        }


def layout_text(layout: Layout) -> str:
    return layout.short()

