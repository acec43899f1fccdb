"""What every training framework is made of (``Framework``, the record the registry holds) and the terms the
frameworks share: the states of a rank (``StateBytes``), how they are spread over the data-parallel ranks
(``StateSharding``), optimizer state per trained element, the frozen base of LoRA / QLoRA.

Optimizer states per trained element (``OPTIMIZER_STATE_BYTES``): AdamW fp32 exp_avg and exp_avg_sq, 8 B
(torch/optim/adamw.py); 8-bit AdamW two uint8 states plus an fp32 absmax per 2,048-element block each
(bitsandbytes optim/optimizer.py ``Optimizer2State``, block_wise, blocksize 2048); SGD with momentum one fp32
buffer, 4 B (torch/optim/sgd.py ``momentum_buffer``); AdamW with bf16 moments, 4 B (Megatron's precision-aware
optimizer, ``--use-precision-aware-optimizer --exp-avg-dtype bf16 --exp-avg-sq-dtype bf16``,
megatron/core/optimizer/optimizer_config.py; fp32 master weights kept).

LoRA / QLoRA: the frozen base is bf16, or NF4 for the LoRA-wrapped Linears (bitsandbytes ``quantize_4bit``:
4 bits per element, an 8-bit absmax per 64-element block and an fp32 absmax per 256 blocks with double
quantization); only adapters get gradients, master copies and optimizer state.

The optimizer step allocates beside the states, once activations are freed: torch AdamW's multi-tensor path keeps
the square root of exp_avg_sq as a new fp32 list (torch/optim/adamw.py ``_multi_tensor_adamw``:
``exp_avg_sq_sqrt = torch._foreach_sqrt(...)``), 4 B per optimized element, and DeepSpeed ZeRO flattens the fp32
gradient of its partition for the step (stage_1_and_2.py ``step``: ``single_partition_of_fp32_groups[i].grad``;
stage3.py ``_prepare_fp32_grad_for_sub_group``), 4 B more; ``StateBytes.step``. Megatron's fused Adam
(megatron/core/optimizer: TE / apex FusedAdam) updates in place: no step transient.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from shardsim.core.layout import Layout
from shardsim.core.model import ModelSpec
from shardsim.core.train.choices import TrainSetup
from shardsim.core.train.params import RankParams
from shardsim.units import ceil_div

STEP_BYTES = 4                              # torch AdamW's fp32 ``step`` tensor per parameter (group)


@dataclass(frozen=True, slots=True)
class StateBytes:
    """One rank's training states (GPU), its framework buffers, and what it keeps in host memory."""

    weights: int
    master_weights: int
    grads: int
    optimizer: int
    buffers: int          # DeepSpeed's reduction bucket, FSDP's all-gathered units (allocated beside the states)
    host: int             # offloaded to CPU memory (this rank's share)
    step: int = 0         # transient of the optimizer step, after backward (activations freed by then)

    @property
    def total(self) -> int:
        return self.weights + self.master_weights + self.grads + self.optimizer + self.buffers


@dataclass(frozen=True, slots=True)
class StateSharding:
    """How one rank's states are spread: data parallel over ``dp`` ranks, sharded over ``degree`` of them (FSDP
    hybrid shards inside a node), ``rank`` its place among those; ``expert_dp`` the data-parallel group of the
    routed experts (Megatron's expert data parallel, tp·dp / (ep·etp))."""

    dp: int
    degree: int
    rank: int
    expert_dp: int


@dataclass(frozen=True, slots=True)
class Alternative:
    """A strategy of the same framework on the same GPUs, and how a verdict names it ("ZeRO-3")."""

    label: str
    setup: TrainSetup


def optimizer_state_bytes(optimizer: str, elements: int) -> int:
    """Bytes of optimizer state for ``elements`` trained elements (sources in the module docstring)."""
    if optimizer == "adamw":
        return 8 * elements
    if optimizer == "adamw-bf16":
        return 4 * elements
    if optimizer == "adamw-8bit":
        return 2 * elements + 2 * 4 * ceil_div(elements, 2048)
    return 4 * elements


def nf4_bytes(elements: int) -> int:
    """NF4 with double quantization: 0.5 B per element, 1 B per 64-element block, 4 B per 256 blocks."""
    blocks = ceil_div(elements, 64)
    return ceil_div(elements, 2) + blocks + 4 * ceil_div(blocks, 256)


def trained_elements(p: RankParams, s: TrainSetup) -> int:
    """The elements that get gradients, master copies and optimizer state: the adapters under LoRA, else all."""
    return p.lora if s.lora else p.total


def frozen_weight_bytes(p: RankParams, s: TrainSetup) -> int:
    """The frozen base of a LoRA run: bf16, with the wrapped Linears in NF4 under QLoRA."""
    if not s.lora:
        return 0
    if s.qlora:
        return nf4_bytes(p.lora_targets_numel) + 2 * (p.total - p.lora_targets_numel)
    return 2 * p.total


def no_refusals(spec: ModelSpec, layout: Layout, setup: TrainSetup) -> None:
    """A framework that refuses nothing beyond the generic rules."""


def no_offload_refusals(setup: TrainSetup) -> None:
    """A framework whose offload needs nothing beyond the generic rules."""


def no_alternatives(setup: TrainSetup, layout: Layout) -> list[Alternative]:
    return []


def data_parallel_degree(setup: TrainSetup, layout: Layout, gpus_per_node: int) -> int:
    """States sharded (if at all) over every data-parallel rank."""
    return layout.dp


def never(setup: TrainSetup) -> bool:
    return False


@dataclass(frozen=True, slots=True)
class Framework:
    """One training framework: the states it keeps, its own refusals, how its strategy reads, and the facts the
    generic rules (``setup.check_setup``, ``activations``, ``plan``) ask of it. ``frameworks.FRAMEWORKS`` holds
    one under each ``--framework`` name."""

    name: str
    state_bytes: Callable[[RankParams, TrainSetup, StateSharding], StateBytes]
    strategy_text: Callable[[TrainSetup, Layout], str]   # the printed strategy ("DeepSpeed ZeRO-3"), LoRA aside
    # its refusals of degrees and of other frameworks' options, right after the accepted names and ZeRO stages
    check: Callable[[ModelSpec, Layout, TrainSetup], None] = no_refusals
    # its own offload rules, after the generic ones (offloads_params / offloads_optimizer)
    check_offload: Callable[[TrainSetup], None] = no_offload_refusals
    # more sharding on the same GPUs, cheapest first (the verdict's alternatives; recompute is added generically)
    alternatives: Callable[[TrainSetup, Layout], list[Alternative]] = no_alternatives
    # the ranks the states are sharded over (``StateSharding.degree``), given the GPUs per node
    shard_degree: Callable[[TrainSetup, Layout, int], int] = data_parallel_degree
    # trains the transformers model as it is (``activations.hf_layer_bytes``); False: Megatron's fused layers
    runs_transformers_model: bool = True
    # the loss sees the whole vocabulary on every TP rank (lm_head with replicated output), not V / tp columns
    gathers_logits: bool = False
    # releases gathered parameters by swapping ``param.data`` (ZeRO-3), which frees nothing autograd still views
    retains_released_experts: Callable[[TrainSetup], bool] = never
    context_parallel: bool = False        # --cp
    interleaved_schedule: bool = False    # --schedule interleaved (virtual pipeline stages)
    offloads_optimizer: bool = False      # --offload-optimizer
    offloads_params: bool = False         # --offload-params
    trains_lora: bool = True              # --lora-rank / --qlora
