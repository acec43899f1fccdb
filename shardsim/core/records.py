"""The plan's records: per-rank bytes, per-rank report, whole-plan report (dataclasses; ``to_dict`` for JSON)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from shardsim.constants import ACTIVATION_UNCERTAINTY, RUNTIME_UNCERTAINTY
from shardsim.core.layout import Layout, RankCoords
from shardsim.core.model import ModelSpec, QuantConfig
from shardsim.core.workload import Workload


@dataclass(slots=True)
class RankBytes:
    weights: int
    zero_gather: int
    kv_cache: int
    activations: int
    runtime: int
    allocated: int
    reserved: int
    state: int = 0  # the recurrent state of the stage's linear-attention layers (hybrids), every sequence

    @property
    def total(self) -> int:
        return self.weights + self.zero_gather + self.kv_cache + self.state + self.activations + self.runtime

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
    runtime_components: dict[str, int] | None = None  # runtime by component (core/memory/runtime.py)
    kv_bytes_per_token: int = 0  # K + V of one token over the stage's full-attention layers, this rank's heads
    state_bytes_per_sequence: int = 0  # the recurrent state of one sequence over the stage's linear layers

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
            "runtime_components": self.runtime_components, "kv_bytes_per_token": self.kv_bytes_per_token,
            "state_bytes_per_sequence": self.state_bytes_per_sequence,
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
    interconnect: str = ""

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
                         "prefill_chunk": self.workload.prefill_chunk, "step_tokens": self.workload.step_tokens,
                         "block_size": self.workload.block_size},
            "cluster": {"name": self.cluster_name, "gpu": self.gpu_name, "capacity_bytes": self.capacity_bytes,
                        "interconnect": self.interconnect},
            "ranks": [r.to_dict() for r in self.ranks],
            "peak_rank": self.peak_rank,
            "peak_bytes": self.peak.bytes.total,
            "fits": self.fits,
            "headroom_bytes": self.headroom_bytes,
            "max_context": self.max_context,
            "max_context_limited_by": self.max_context_limited_by,
            "max_batch": self.max_batch,
            # a hybrid's activations include the Gated-DeltaNet prefill transient (memory/deltanet_activations.py)
            "uncertainty": {"weights": 0.0, "kv_cache": 0.0, "activations": ACTIVATION_UNCERTAINTY,
                            "runtime": RUNTIME_UNCERTAINTY} | ({"state": 0.0} if self.model.is_hybrid else {}),
            "warnings": list(self.warnings),
        }
