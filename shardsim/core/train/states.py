"""Training states of one rank: the compute weights, fp32 master weights, gradients, optimizer states, and the
framework's own buffers, by framework and sharding strategy (``setup.TrainSetup``), dispatched through the
registry of frameworks (``frameworks.FRAMEWORKS``): each framework's rules and their sources live in its module
(``frameworks/deepspeed.py``, ``fsdp.py``, ``megatron.py``, ``ddp.py``, ``torch_native.py``); what they share —
optimizer state per element, the frozen LoRA / QLoRA base, the optimizer step's transient — in
``frameworks/base.py``.
"""

from __future__ import annotations

from shardsim.core.train.choices import TrainSetup
from shardsim.core.train.frameworks import FRAMEWORKS
from shardsim.core.train.frameworks.base import StateBytes, StateSharding, nf4_bytes, optimizer_state_bytes
from shardsim.core.train.params import RankParams


def state_bytes(p: RankParams, s: TrainSetup, dp: int, shard_degree: int, shard_rank: int = 0,
                expert_dp: int | None = None) -> StateBytes:
    """The states of a rank holding ``p``, data parallel over ``dp`` ranks, states sharded over ``shard_degree``
    of them (FSDP hybrid shards inside a node); ``shard_rank`` is its place among them; ``expert_dp``: the
    data-parallel group of the routed experts (Megatron's expert data parallel, tp·dp / (ep·etp); ``dp`` if None)."""
    sharding = StateSharding(dp, shard_degree, shard_rank, expert_dp or dp)
    return FRAMEWORKS[s.framework].state_bytes(p, s, sharding)


__all__ = ["StateBytes", "nf4_bytes", "optimizer_state_bytes", "state_bytes"]
