"""Megatron-LM style TP / PP / SP / CP / EP with fp32 master weights and, with ``--distributed-optimizer``,
optimizer state and master weights sharded over data parallel; interleaved pipeline schedules.

Megatron-LM (megatron/training/theoretical_memory_usage.py): bf16 weights 2 B, fp32 gradient buffer 4 B, fp32
master 4 B and Adam 8 B per parameter, the last two divided by dp with the distributed optimizer — by the expert
data-parallel size tp·dp / (ep·etp) for routed experts (megatron/core/parallel_state.py
``get_expert_data_parallel_world_size``; the distributed optimizer shards each over its own group). With
``--optimizer-cpu-offload`` (offload fraction 1, the precision-aware optimizer) the master copies and the Adam
states of the rank's shard live in host memory and the step runs on the CPU; the GPU keeps the bf16 weights and
the fp32 gradient buffer (megatron/core/optimizer/cpu_offloading/hybrid_optimizer.py ``HybridDeviceOptimizer``,
docs/user-guide/features/optimizer_cpu_offload.md). Its fused Adam updates in place: no step transient.
"""

from __future__ import annotations

from shardsim.core.layout import Layout
from shardsim.core.model import ModelSpec
from shardsim.core.train.choices import TrainSetup
from shardsim.core.train.frameworks.base import (Alternative, Framework, StateBytes, StateSharding,
                                                 frozen_weight_bytes, optimizer_state_bytes, trained_elements)
from shardsim.core.train.frameworks.refusals import refuse_zero
from shardsim.core.train.params import RankParams
from shardsim.units import ceil_div


def megatron_states(p: RankParams, s: TrainSetup, sharding: StateSharding) -> StateBytes:
    """The distributed optimizer shards dense parameters over dp, routed experts over the expert dp group."""
    trained = trained_elements(p, s)
    expert = 0 if s.lora else p.experts
    shard = sharding.dp if s.distributed_optimizer else 1
    expert_shard = sharding.expert_dp if s.distributed_optimizer else 1
    owned = ceil_div(trained - expert, shard) + ceil_div(expert, expert_shard)
    master = 4 * owned
    optim = optimizer_state_bytes(s.optimizer, ceil_div(trained - expert, shard)) \
        + optimizer_state_bytes(s.optimizer, ceil_div(expert, expert_shard))
    host = 0
    if s.offload_optimizer:   # --optimizer-cpu-offload, fraction 1: master copies and states on the host
        host, master, optim = master + optim, 0, 0
    return StateBytes(2 * trained + frozen_weight_bytes(p, s), master, 4 * trained, optim, 0, host, 0)


def check(spec: ModelSpec, layout: Layout, s: TrainSetup) -> None:
    refuse_zero(s, "--distributed-optimizer")


def strategy_text(s: TrainSetup, layout: Layout) -> str:
    return "Megatron" + (" + distributed optimizer" if s.distributed_optimizer else "") + (
        " + SP" if s.sequence_parallel else "") + (" + offload optimizer" if s.offload_optimizer else "")


def alternatives(s: TrainSetup, layout: Layout) -> list[Alternative]:
    if s.distributed_optimizer:
        return []
    return [Alternative("the distributed optimizer", s.model_copy(update={"distributed_optimizer": True}))]


MEGATRON = Framework("megatron", megatron_states, strategy_text, check=check, alternatives=alternatives,
                     runs_transformers_model=False, context_parallel=True, interleaved_schedule=True,
                     offloads_optimizer=True, trains_lora=False)
