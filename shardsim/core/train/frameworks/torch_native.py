"""torch-native tensor parallel (DTensor ``parallelize_module``) and pipeline parallel
(``torch.distributed.pipelining``, 1F1B) of the transformers model: bf16 parameters, gradients and AdamW states
(what ``validate --train --backend torch`` runs).

torch-native TP (DTensor): bf16 local shards of parameters and gradients; torch AdamW keeps its states in the
parameters' dtype, 2 × 2 B, plus a 4-byte ``step`` per parameter (torch/optim/adamw.py ``_init_group``). The
vocab-parallel embedding's gradient comes back replicated, whole (measured, torch 2.13 ``RowwiseParallel``
on nn.Embedding: the gradient's placement is Replicate), ``RankParams.replicated_grad_extra``. The lm_head is
ColwiseParallel with a replicated output: the loss sees the whole vocabulary on every TP rank.
"""

from __future__ import annotations

from shardsim.core.layout import Layout
from shardsim.core.model import ModelSpec
from shardsim.core.train.choices import TrainSetup
from shardsim.core.train.frameworks.base import (STEP_BYTES, Framework, StateBytes, StateSharding,
                                                 frozen_weight_bytes, optimizer_state_bytes, trained_elements)
from shardsim.core.train.frameworks.refusals import refuse_distributed_optimizer, refuse_zero
from shardsim.core.train.params import RankParams
from shardsim.errors import ShardsimError


def torch_states(p: RankParams, s: TrainSetup, sharding: StateSharding) -> StateBytes:
    """bf16 parameters, gradients and AdamW states (2 × 2 B) plus a 4-byte step each."""
    trained = trained_elements(p, s)
    states = 4 * trained if s.optimizer == "adamw" else optimizer_state_bytes(s.optimizer, trained) // 2
    return StateBytes(2 * trained + frozen_weight_bytes(p, s), 0, 2 * trained + 2 * p.replicated_grad_extra,
                      states + STEP_BYTES * len(p.tensors), 0, 0, 2 * trained)


def check(spec: ModelSpec, layout: Layout, s: TrainSetup) -> None:
    refuse_zero(s, "--framework deepspeed")
    if layout.cp > 1 or s.sequence_parallel or layout.ep > 1:
        raise ShardsimError("--framework torch runs tensor parallel (DTensor) and pipeline parallel "
                            "(torch.distributed.pipelining); use --framework megatron for "
                            "--cp/--ep/--sequence-parallel")
    if layout.tp > spec.num_kv_heads:
        raise ShardsimError(f"--framework torch splits k/v_proj by rows: --tp {layout.tp} is above the "
                            f"{spec.num_kv_heads} KV heads of {spec.name}")
    refuse_distributed_optimizer(s)


def strategy_text(s: TrainSetup, layout: Layout) -> str:
    return "torch-native " + (" + ".join(part for part, on in (("TP (DTensor)", layout.tp > 1),
                                                               ("pipelining (1F1B)", layout.pp > 1)) if on)
                              or "single rank")


TORCH = Framework("torch", torch_states, strategy_text, check=check, gathers_logits=True)
