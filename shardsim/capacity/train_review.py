"""Capacity review for training: for every priced cluster and every strategy a workload allows, the fewest GPUs
of that cluster on which the strategy fits (``core.train.plan``), ranked by cost.

A training workload file has ``task: train`` and, per model, ``seq_len``, ``micro_batch`` and the strategies to
consider: ``ddp``, ``zero0`` … ``zero3``, ``zero3-offload``, ``fsdp``, ``fsdp-hybrid``, ``megatron-tpN``
(Megatron with TP N, sequence parallel and the distributed optimizer), ``lora``, ``qlora`` (rank 16 on
DeepSpeed ZeRO-0 / DDP-like replicas), and the recompute policy.
"""

from __future__ import annotations

from dataclasses import dataclass

from shardsim.capacity.train_workload import TrainLoad, TrainWorkload
from shardsim.capacity.workload import cluster_cost
from shardsim.core.layout import Layout
from shardsim.core.model import ModelSpec
from shardsim.core.train.plan import TrainPlanner
from shardsim.core.train.setup import RECOMPUTE, TrainSetup
from shardsim.errors import ShardsimError
from shardsim.hardware import ClusterSpec
from shardsim.hardware.topology import fabric_of


def strategy_setup(name: str, load: TrainLoad) -> tuple[TrainSetup, int]:
    """The TrainSetup and TP degree a strategy name stands for."""
    base = dict(seq_len=load.seq_len, micro_batch=load.micro_batch, recompute=load.recompute)
    if name.startswith("zero"):
        stage = int(name[4])
        offload = name.endswith("offload")
        return TrainSetup(**base, zero=stage, offload_optimizer=offload, offload_params=offload,
                          host_memory_bytes=(1 << 50) if offload else None), 1
    if name.startswith("fsdp"):
        return TrainSetup(**base, framework="fsdp", fsdp="hybrid" if name.endswith("hybrid") else "full"), 1
    if name.startswith("megatron"):
        tp = int(name.rsplit("tp", 1)[1])
        return TrainSetup(**base, framework="megatron", sequence_parallel=tp > 1, distributed_optimizer=True), tp
    if name in ("lora", "qlora"):
        return TrainSetup(**base, lora_rank=16, qlora=name == "qlora"), 1
    return TrainSetup(**base, framework="ddp"), 1


@dataclass(frozen=True, slots=True)
class TrainOption:
    model: str
    strategy: str
    cluster: ClusterSpec
    gpus: int
    layout: Layout
    peak_bytes: int
    cost: float | None


def smallest_fit(spec: ModelSpec, name: str, load: TrainLoad, cluster: ClusterSpec) -> TrainOption | None:
    """The fewest GPUs of ``cluster`` (TP inside a node, data parallel over the rest) on which ``name`` fits."""
    setup, tp = strategy_setup(name, load)
    if tp > cluster.gpus_per_node or spec.num_heads % tp:
        return None
    fabric = fabric_of(cluster)
    capacity = cluster.gpu.capacity_bytes
    for gpus in range(tp, cluster.world_size + 1, tp):
        layout = Layout(tp=tp, dp=gpus // tp)
        try:
            planner = TrainPlanner(spec, layout, setup, fabric)
        except ShardsimError:
            continue
        peak = planner.peak_total(planner.setup)
        if peak <= capacity:
            return TrainOption(spec.name, name, cluster, gpus, planner.layout, peak, None)
    return None


def review_training(loads: list[tuple[ModelSpec, TrainLoad]], clusters: list[ClusterSpec],
                    by: str = "purchase") -> list[TrainOption]:
    """Every (model, strategy, cluster) that fits somewhere, cheapest first (unpriced last)."""
    if by not in ("purchase", "hourly"):
        raise ShardsimError(f"--by {by!r:.40} is not known; accepted: purchase, hourly")
    out = []
    for spec, load in loads:
        for name in load.strategies:
            for cluster in clusters:
                option = smallest_fit(spec, name, load, cluster)
                if option is not None:
                    cost = cluster_cost(cluster, option.gpus, by)
                    out.append(TrainOption(option.model, name, cluster, option.gpus, option.layout, option.peak_bytes,
                                           cost))
    return sorted(out, key=lambda o: (o.model, o.cost is None, o.cost or 0, o.gpus))


__all__ = ["RECOMPUTE", "TrainLoad", "TrainOption", "TrainWorkload", "review_training"]
