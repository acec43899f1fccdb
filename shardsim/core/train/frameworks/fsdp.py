"""FSDP2 through accelerate: fp32 sharded parameters computed in bf16 (``--fsdp full``: shard everything,
``grad-op``: keep parameters whole between forward and backward, ``hybrid``: shard inside a node, replicate across
nodes).

FSDP2 (torch/distributed/fsdp/_fully_shard/_fsdp_param.py@2.13 ``_init_sharded_param``): every fp32 parameter
sharded on dim 0, each rank allocating c = ceil(d0 / W) rows (padded), gradients alike (fp32: reduced in
accelerate's bf16 ``reduce_dtype``, cast back to the parameter dtype); AdamW state only for the rows a rank really
holds, clamp(d0 − r·c, 0, c), plus a 4-byte ``step`` per parameter; bf16 all-gathered one unit (a decoder layer) at
a time.
"""

from __future__ import annotations

from shardsim.core.layout import Layout
from shardsim.core.model import ModelSpec
from shardsim.core.tensors import numel_of
from shardsim.core.train.choices import TrainSetup
from shardsim.core.train.frameworks.base import (STEP_BYTES, Framework, StateBytes, StateSharding,
                                                 frozen_weight_bytes, optimizer_state_bytes, trained_elements)
from shardsim.core.train.frameworks.refusals import (refuse_distributed_optimizer, refuse_model_parallel,
                                                     refuse_pipeline, refuse_zero)
from shardsim.core.train.params import RankParams
from shardsim.units import ceil_div


def fsdp_states(p: RankParams, s: TrainSetup, sharding: StateSharding) -> StateBytes:
    """FSDP2's states: parameter by parameter for full fine-tuning of the transformers model, else in aggregate."""
    if not s.lora and p.hf_shapes:
        return _fsdp_exact(p, s, sharding.degree, sharding.rank)
    return _fsdp(p, s, trained_elements(p, s), frozen_weight_bytes(p, s), sharding.degree)


def _fsdp(p: RankParams, s: TrainSetup, trained: int, frozen: int, shard: int) -> StateBytes:
    """FSDP2: fp32 sharded parameters (they are the master copy), fp32 sharded gradients."""
    local = ceil_div(trained, shard)
    unit = 2 * p.largest_layer * (2 if s.fsdp != "grad-op" else 1)   # the gathered unit and the prefetched next one
    if s.fsdp == "grad-op":    # parameters stay unsharded from forward to backward
        unit += 2 * trained
    return StateBytes(4 * local + ceil_div(frozen, shard), 0, 4 * local, optimizer_state_bytes(s.optimizer, local),
                      unit, 0)


def _fsdp_exact(p: RankParams, s: TrainSetup, w: int, r: int) -> StateBytes:
    """FSDP2 full fine-tuning, parameter by parameter (rules in the module docstring)."""
    weights = optim = 0
    for shape in p.hf_shapes:
        d0, rest = shape[0], numel_of(shape[1:])
        c = ceil_div(d0, w)
        weights += 4 * c * rest
        rows = max(0, min(d0 - r * c, c))
        optim += optimizer_state_bytes(s.optimizer, rows * rest) + STEP_BYTES
    unit = 2 * p.largest_layer * (2 if s.fsdp != "grad-op" else 1)
    if s.fsdp == "grad-op":
        unit += 2 * p.total
    return StateBytes(weights, 0, weights, optim, unit, 0, weights)


def shard_degree(s: TrainSetup, layout: Layout, gpus_per_node: int) -> int:
    """Hybrid shards over the data-parallel ranks of one node and replicates across nodes."""
    if s.fsdp == "hybrid":
        return max(1, min(layout.dp, gpus_per_node // layout.tp))
    return layout.dp


def check(spec: ModelSpec, layout: Layout, s: TrainSetup) -> None:
    refuse_zero(s, "--fsdp full|grad-op|hybrid")
    refuse_model_parallel(s, layout)
    refuse_pipeline(s, layout)
    refuse_distributed_optimizer(s)


def strategy_text(s: TrainSetup, layout: Layout) -> str:
    return f"FSDP2 ({s.fsdp} shard)"


FSDP = Framework("fsdp", fsdp_states, strategy_text, check=check, shard_degree=shard_degree)
