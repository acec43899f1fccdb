"""plan_train(model, layout, setup, capacity) → TrainReport: every rank's training memory, the fit verdict, the
largest micro-batch and sequence length that fit, host memory when offloading, and the cheapest strategy that
fits when the asked one does not. Pure: no I/O, no torch.

Per rank: states (``states.py``), the activation peak (``activations.py``), runtime (CUDA context, cuBLAS, NCCL
for the TP, PP, EP and data-parallel groups: ``core.memory.runtime``). ``peak_allocated`` is what
``torch.cuda.max_memory_allocated`` would report; ``total`` adds the caching allocator's rounding (each large
block rounded to 2 MiB, c10/cuda/CUDACachingAllocator.cpp kRoundLarge) and the runtime outside it: what
nvidia-smi shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from shardsim.constants import ALLOC_ROUND_LARGE
from shardsim.core.layout import Layout, rank_coords, rank_groups, validate_layout
from shardsim.core.memory.runtime import DEFAULT_FABRIC, Fabric, nccl_communicator_bytes, runtime_bytes
from shardsim.core.memory.weights import weight_model
from shardsim.core.model import ModelSpec
from shardsim.core.search import largest_that_fits
from shardsim.core.train.activations import train_activations
from shardsim.core.train.frameworks import FRAMEWORKS
from shardsim.core.train.frameworks.base import Alternative
from shardsim.core.train.params import RankParams, rank_params, trained_model
from shardsim.core.train.setup import TrainSetup, check_setup
from shardsim.core.train.states import StateBytes, state_bytes
from shardsim.units import round_up


@dataclass(frozen=True, slots=True)
class TrainRankBytes:
    weights: int
    master_weights: int
    grads: int
    optimizer: int
    buffers: int
    activations: int
    runtime: int
    peak_allocated: int
    total: int

    def to_dict(self) -> dict:
        return {f: getattr(self, f) for f in self.__slots__}


@dataclass(frozen=True, slots=True)
class TrainRankReport:
    rank: int
    node: int
    local_gpu: int
    pp_rank: int
    layers: tuple[int, int]
    bytes: TrainRankBytes
    capacity_bytes: int
    host_bytes: int

    @property
    def free_bytes(self) -> int:
        return self.capacity_bytes - self.bytes.total


@dataclass(slots=True)
class TrainReport:
    model: ModelSpec
    layout: Layout
    setup: TrainSetup
    capacity_bytes: int
    ranks: list[TrainRankReport]
    peak_rank: int
    max_micro_batch: int
    max_seq_len: int
    host_bytes_per_node: int
    alternative: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return all(r.free_bytes >= 0 for r in self.ranks)

    def to_dict(self) -> dict:
        lay, s = self.layout, self.setup
        return {
            "mode": "train",
            "model": {"name": self.model.name, "architecture": self.model.architecture},
            "layout": {"tp": lay.tp, "pp": lay.pp, "dp": lay.dp, "ep": lay.ep, "cp": lay.cp,
                       "world_size": lay.world_size, "pp_split": list(lay.pp_split)},
            "setup": s.model_dump(mode="json"),
            "capacity_bytes": self.capacity_bytes,
            "fits": self.fits, "peak_rank": self.peak_rank,
            "max_micro_batch": self.max_micro_batch, "max_seq_len": self.max_seq_len,
            "host_bytes_per_node": self.host_bytes_per_node, "alternative": self.alternative,
            "warnings": list(self.warnings),
            "ranks": [{"rank": r.rank, "node": r.node, "local_gpu": r.local_gpu, "pp_rank": r.pp_rank,
                       "layers": list(r.layers), "bytes": r.bytes.to_dict(), "free_bytes": r.free_bytes,
                       "host_bytes": r.host_bytes} for r in self.ranks],
        }


class TrainPlanner:
    """One model × layout × setup on one fabric: any rank's bytes, cheaply re-evaluated for other batch shapes."""

    def __init__(self, spec: ModelSpec, layout: Layout, setup: TrainSetup, fabric: Fabric = DEFAULT_FABRIC):
        self.spec = spec = trained_model(spec)   # the language model: no vision tower, no MTP head
        self.layout = validate_layout(spec, layout)
        self.setup = check_setup(spec, self.layout, setup)
        self.fabric = fabric
        self.moe_prefix = weight_model(spec, "bf16", spec.quant).moe_prefix
        self._params: dict[tuple, RankParams] = {}
        self._statics: dict[TrainSetup, dict[int, int]] = {}
        self._states: dict[tuple, StateBytes] = {}
        self._runtime: dict[int, int] = {}

    def params(self, rank: int) -> RankParams:
        c = rank_coords(rank, self.layout)
        key = (c.pp_rank, c.tp_rank, c.ep_rank, c.etp_rank)
        hit = self._params.get(key)
        if hit is None:
            s = self.setup
            hit = self._params[key] = rank_params(self.spec, self.layout, rank, s.lora_rank, s.lora_targets)
        return hit

    def shard_degree(self) -> int:
        """The data-parallel ranks the states are sharded over (the framework's rule: FSDP hybrid, one node)."""
        return FRAMEWORKS[self.setup.framework].shard_degree(self.setup, self.layout, self.fabric.gpus_per_node)

    def runtime(self, rank: int) -> int:
        hit = self._runtime.get(rank)
        if hit is None:
            hit = self._runtime[rank] = self._runtime_bytes(rank)
        return hit

    def _runtime_bytes(self, rank: int) -> int:
        lay = self.layout
        rt = runtime_bytes(rank, lay, self.spec.is_moe, self.fabric)
        extra = 0
        if lay.dp > 1 and not any(name.startswith("dp") for name in rt.communicators):
            extra = nccl_communicator_bytes(rank_groups(rank, lay).dp, self.fabric)   # gradient reduction
        return rt.total + extra

    def rank_bytes(self, rank: int, setup: TrainSetup | None = None) -> tuple[TrainRankBytes, StateBytes]:
        s = setup or self.setup
        lay = self.layout
        p = self.params(rank)
        c = rank_coords(rank, lay)
        degree = self.shard_degree()
        # the states do not depend on the batch shape, recompute or attention: memoised across the searches
        key = (c.pp_rank, c.tp_rank, c.ep_rank, c.etp_rank, c.dp_rank % degree, s.framework, s.zero, s.fsdp,
               s.optimizer, s.lora_rank, s.lora_targets, s.qlora, s.offload_optimizer, s.offload_params,
               s.distributed_optimizer)
        states = self._states.get(key)
        if states is None:
            expert_dp = max(1, lay.tp * lay.dp // (lay.ep * lay.etp))
            states = self._states[key] = state_bytes(p, s, lay.dp, degree, c.dp_rank % degree, expert_dp)
        moe_layers = self.moe_prefix[p.last_layer + 1] - self.moe_prefix[p.first_layer]
        act = train_activations(self.spec, s, lay.tp, lay.ep, lay.pp, c.pp_rank, p.layers, moe_layers,
                                c.pp_rank == lay.pp - 1, lay.cp, p.first_layer).peak
        peak = states.total + max(act, states.step)   # the step runs after backward has freed the activations
        reserved = sum(round_up(x, ALLOC_ROUND_LARGE) for x in (states.weights, states.master_weights, states.grads,
                                                                 states.optimizer, states.buffers,
                                                                 max(act, states.step)))
        runtime = self.runtime(rank)
        return TrainRankBytes(states.weights, states.master_weights, states.grads, states.optimizer, states.buffers,
                              act, runtime, peak, reserved + runtime), states

    def stage_ranks(self, stage: int) -> list[int]:
        """The ranks of TP rank 0 in ``stage``, one per data-parallel replica: ZeRO-1/2 gradients and FSDP's
        optimizer rows differ between them (balanced TP splits give TP rank 0 the most)."""
        lay = self.layout
        per_stage = lay.tp * lay.dp
        return [stage * per_stage + d * lay.tp for d in range(lay.dp)]

    def peak_total(self, setup: TrainSetup) -> int:
        """The largest ``total`` over the ranks at ``setup``: the states and runtime of every replica (memoised:
        they do not depend on the batch shape), plus the stage's activations."""
        key = setup.model_copy(update={"micro_batch": 1, "seq_len": 1})
        statics = self._statics.get(key)
        if statics is None:
            statics = self._statics[key] = {
                stage: max(self._static_total(r, setup) for r in self.stage_ranks(stage))
                for stage in range(self.layout.pp)}
        out = 0
        for stage, static in statics.items():
            rb, states = self.rank_bytes(self.stage_ranks(stage)[0], setup)
            out = max(out, static + round_up(max(rb.activations, states.step), ALLOC_ROUND_LARGE))
        return out

    def _static_total(self, rank: int, setup: TrainSetup) -> int:
        """A rank's total without the activation/step transient (that part is added per stage)."""
        rb, states = self.rank_bytes(rank, setup)
        return rb.total - round_up(max(rb.activations, states.step), ALLOC_ROUND_LARGE)

    def largest(self, capacity: int, field_name: str, upper: int, step: int = 1) -> int:
        """The largest micro_batch or seq_len (a multiple of ``step``) whose peak fits; 0 if none."""
        def fits(n: int) -> bool:
            return self.peak_total(self.setup.model_copy(update={field_name: n * step})) <= capacity
        return largest_that_fits(fits, upper // step) * step


def plan_train(spec: ModelSpec, layout: Layout, setup: TrainSetup, capacity_bytes: int, *,
               fabric: Fabric = DEFAULT_FABRIC) -> TrainReport:
    """Every rank's training memory for ``spec`` on ``layout`` with ``setup`` on GPUs of ``capacity_bytes``."""
    planner = TrainPlanner(spec, layout, setup, fabric)
    lay, s = planner.layout, planner.setup
    ranks = []
    for rank in range(lay.world_size):
        rb, states = planner.rank_bytes(rank)
        p = planner.params(rank)
        slot = fabric.placement.slot(rank)
        ranks.append(TrainRankReport(rank, slot.node, slot.local_gpu,
                                     rank_coords(rank, lay).pp_rank, (p.first_layer, p.last_layer), rb,
                                     capacity_bytes, states.host))
    peak = max(ranks, key=lambda r: (r.bytes.total, -r.rank)).rank
    host_per_node = sum(r.host_bytes for r in ranks if r.node == 0)
    report = TrainReport(spec, lay, s, capacity_bytes, ranks, peak,
                         planner.largest(capacity_bytes, "micro_batch", 4096),
                         planner.largest(capacity_bytes, "seq_len", 1 << 20, lay.cp),
                         host_per_node)
    if s.host_memory_bytes is not None and host_per_node > s.host_memory_bytes:
        report.warnings.append(f"offloaded states need {host_per_node / 2**30:.2f} GiB of host memory per node; "
                               f"the node has {s.host_memory_bytes / 2**30:.2f} GiB (--host-memory, else the cluster "
                               "spec's host_memory)")
    if not report.fits:
        report.alternative = cheapest_alternative(planner, capacity_bytes)
    return report


def _candidates(planner: TrainPlanner) -> list[Alternative]:
    """Strategies on the same GPUs, cheapest first: more sharding (the framework's own), then recompute (more
    compute)."""
    s = planner.setup
    out = list(FRAMEWORKS[s.framework].alternatives(s, planner.layout))
    base_label, base = (out[-1].label, out[-1].setup) if out else ("", s)
    order = ("none", "selective", "full")
    for recompute in order[order.index(s.recompute) + 1:]:
        out.append(Alternative(f"{recompute} recompute" + (f" with {base_label}" if base_label else ""),
                               base.model_copy(update={"recompute": recompute})))
    return out


def cheapest_alternative(planner: TrainPlanner, capacity: int) -> str | None:
    """The first candidate that fits, as a verdict fragment ("ZeRO-3 fits with 9.8 GiB free"), or None."""
    for candidate in _candidates(planner):
        try:
            total = planner.peak_total(candidate.setup)
        except Exception:  # a candidate the setup rules refuse is simply not offered
            continue
        if total <= capacity:
            return f"{candidate.label} fits with {(capacity - total) / 2**30:.1f} GiB free"
    return None


__all__ = ["TrainPlanner", "TrainReport", "plan_train", "replace"]
