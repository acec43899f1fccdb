"""Plain PyTorch DDP with AMP: fp32 parameters, fp32 gradients, bf16 compute, the optimizer on every rank
(torch/nn/parallel/distributed.py)."""

from __future__ import annotations

from shardsim.core.layout import Layout
from shardsim.core.model import ModelSpec
from shardsim.core.train.choices import TrainSetup
from shardsim.core.train.frameworks.base import (Framework, StateBytes, StateSharding, frozen_weight_bytes,
                                                 optimizer_state_bytes, trained_elements)
from shardsim.core.train.frameworks.refusals import (refuse_distributed_optimizer, refuse_model_parallel,
                                                     refuse_pipeline, refuse_zero)
from shardsim.core.train.params import RankParams


def ddp_states(p: RankParams, s: TrainSetup, sharding: StateSharding) -> StateBytes:
    """DDP with AMP: the trained parameters stay fp32; gradients fp32; nothing sharded."""
    trained = trained_elements(p, s)
    return StateBytes(4 * trained + frozen_weight_bytes(p, s), 0, 4 * trained,
                      optimizer_state_bytes(s.optimizer, trained), 0, 0, 4 * trained)


def check(spec: ModelSpec, layout: Layout, s: TrainSetup) -> None:
    refuse_zero(s, "--framework deepspeed")
    refuse_model_parallel(s, layout)
    refuse_pipeline(s, layout)
    refuse_distributed_optimizer(s)


def strategy_text(s: TrainSetup, layout: Layout) -> str:
    return "DDP (AMP)"


DDP = Framework("ddp", ddp_states, strategy_text, check=check)
