"""Training states of one rank: the compute weights, fp32 master weights, gradients, optimizer states, and the
framework's own buffers, by framework and sharding strategy (``setup.TrainSetup``).

Optimizer states per trained element (``OPTIMIZER_STATE_BYTES``): AdamW fp32 exp_avg and exp_avg_sq, 8 B
(torch/optim/adamw.py); 8-bit AdamW two uint8 states plus an fp32 absmax per 2,048-element block each
(bitsandbytes optim/optimizer.py ``Optimizer2State``, block_wise, blocksize 2048); SGD with momentum one fp32
buffer, 4 B (torch/optim/sgd.py ``momentum_buffer``); AdamW with bf16 moments, 4 B (Megatron's precision-aware
optimizer, ``--use-precision-aware-optimizer --exp-avg-dtype bf16 --exp-avg-sq-dtype bf16``,
megatron/core/optimizer/optimizer_config.py; fp32 master weights kept).

- DeepSpeed ZeRO 1/2 (deepspeed/runtime/zero/stage_1_and_2.py@0.19.8): the bf16 parameters (in registration
  order, ``params.hf_parameter_shapes``) live in one flat buffer padded to F = a multiple of 2 × dp elements
  (``align_dense_tensors``, nccl_start_alignment_factor 2), every rank holding all of it; rank r owns
  [r·F/dp, (r+1)·F/dp): the fp32 master copy of it (``single_partition_of_fp32_groups``), its AdamW state plus a
  4-byte ``step`` tensor, and the bf16 ``.grad`` of every parameter overlapping it, whole (the last rank also the
  gradient of the buffer's padding)
  (``independent_gradient_partition_epilogue``; measured the same for ZeRO-1 and ZeRO-2 on the CPU accelerator,
  ``launch/backends/train_ds.py``). The reduction bucket holds ``reduce_bucket_size`` (5e8) elements.
- DeepSpeed ZeRO-3 (stage3.py, partition_parameters.py ``_partition_param``, parameter_offload.py
  ``mark_persistent_parameters``): every parameter on its own is padded to a multiple of dp and split
  (``zero3_partition_numel``); parameters of at most ``stage3_param_persistence_threshold`` (1e5) elements also
  stay gathered whole, in their padded size (measured: dp 3); fp32 master and optimizer state follow the
  partitions (one 4-byte ``step`` per ``sub_group_size``, 1e9, elements), bf16 gradient partitions, a bf16 bucket of reduce_bucket_size elements, the
  prefetch bucket and the gathered decoder layer, up to ``stage3_max_live_parameters`` (``zero3_live_elements``).
- ZeRO-0 with bf16 (runtime/bf16_optimizer.py): full fp32 master weights and fp32 gradient accumulators.
- FSDP2 (torch/distributed/fsdp/_fully_shard/_fsdp_param.py@2.13 ``_init_sharded_param``): every fp32 parameter
  sharded on dim 0, each rank allocating c = ceil(d0 / W) rows (padded), gradients alike (fp32: reduced in
  accelerate's bf16 ``reduce_dtype``, cast back to the parameter dtype);
  AdamW state only for the rows a rank really holds, clamp(d0 − r·c, 0, c), plus a 4-byte ``step`` per
  parameter; bf16 all-gathered one unit (a decoder layer) at a time.
- Megatron-LM (megatron/training/theoretical_memory_usage.py): bf16 weights 2 B, fp32 gradient buffer 4 B, fp32
  master 4 B and Adam 8 B per parameter, the last two divided by dp with the distributed optimizer — by the expert
  data-parallel size tp·dp / (ep·etp) for routed experts (megatron/core/parallel_state.py
  ``get_expert_data_parallel_world_size``; the distributed optimizer shards each over its own group). With
  ``--optimizer-cpu-offload`` (offload fraction 1, the precision-aware optimizer) the master copies and the Adam
  states of the rank's shard live in host memory and the step runs on the CPU; the GPU keeps the bf16 weights and
  the fp32 gradient buffer (megatron/core/optimizer/cpu_offloading/hybrid_optimizer.py ``HybridDeviceOptimizer``,
  docs/user-guide/features/optimizer_cpu_offload.md).
- DDP with AMP: fp32 parameters and gradients, the optimizer on every rank (torch/nn/parallel/distributed.py).
- torch-native TP (DTensor): bf16 local shards of parameters and gradients; torch AdamW keeps its states in the
  parameters' dtype, 2 × 2 B, plus a 4-byte ``step`` per parameter (torch/optim/adamw.py ``_init_group``). The
  vocab-parallel embedding's gradient comes back replicated, whole (measured, torch 2.13 ``RowwiseParallel``
  on nn.Embedding: the gradient's placement is Replicate), ``RankParams.replicated_grad_extra``.

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

from dataclasses import dataclass

from shardsim.core.tensors import zero3_partition_numel
from shardsim.core.train.params import RankParams
from shardsim.core.train.setup import TrainSetup
from shardsim.units import ceil_div

DS_REDUCE_BUCKET_ELEMENTS = 500_000_000     # zero/config.py@0.19.8 reduce_bucket_size default
DS_PREFETCH_BUCKET_ELEMENTS = 50_000_000    # zero/config.py stage3_prefetch_bucket_size default
DS_ALIGNMENT = 2                            # stage_1_and_2.py nccl_start_alignment_factor
DS_PERSISTENCE_ELEMENTS = 100_000           # zero/config.py stage3_param_persistence_threshold default
DS_MAX_LIVE_ELEMENTS = 1_000_000_000        # zero/config.py stage3_max_live_parameters default
DS_MAX_REUSE_ELEMENTS = 1_000_000_000       # zero/config.py stage3_max_reuse_distance default
DS_SUB_GROUP_ELEMENTS = 1_000_000_000       # zero/config.py sub_group_size default
STEP_BYTES = 4                              # torch AdamW's fp32 ``step`` tensor per parameter (group)


def optimizer_state_bytes(optimizer: str, elements: int) -> int:
    """Bytes of optimizer state for ``elements`` trained elements (sources in the module docstring)."""
    if optimizer == "adamw":
        return 8 * elements
    if optimizer == "adamw-bf16":
        return 4 * elements
    if optimizer == "adamw-8bit":
        return 2 * elements + 2 * 4 * ceil_div(elements, 2048)
    return 4 * elements


def zero3_live_elements(layer: int, largest_parameter: int) -> int:
    """Elements ZeRO-3 holds gathered at once for the module being run: one decoder layer, capped by
    ``stage3_max_live_parameters`` (the coordinator releases parameters beyond it, partitioned_param_coordinator.py
    ``fetch_sub_module`` / ``__n_available_params``), but never below the largest single parameter, which is
    gathered whole."""
    return max(largest_parameter, min(layer, DS_MAX_LIVE_ELEMENTS))


def nf4_bytes(elements: int) -> int:
    """NF4 with double quantization: 0.5 B per element, 1 B per 64-element block, 4 B per 256 blocks."""
    blocks = ceil_div(elements, 64)
    return ceil_div(elements, 2) + blocks + 4 * ceil_div(blocks, 256)


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


def _frozen_weight_bytes(p: RankParams, s: TrainSetup) -> int:
    """The frozen base of a LoRA run: bf16, with the wrapped Linears in NF4 under QLoRA."""
    if not s.lora:
        return 0
    if s.qlora:
        return nf4_bytes(p.lora_targets_numel) + 2 * (p.total - p.lora_targets_numel)
    return 2 * p.total


def state_bytes(p: RankParams, s: TrainSetup, dp: int, shard_degree: int, shard_rank: int = 0,
                expert_dp: int | None = None) -> StateBytes:
    """The states of a rank holding ``p``, data parallel over ``dp`` ranks, states sharded over ``shard_degree``
    of them (FSDP hybrid shards inside a node); ``shard_rank`` is its place among them; ``expert_dp``: the
    data-parallel group of the routed experts (Megatron's expert data parallel, tp·dp / (ep·etp); ``dp`` if None)."""
    trained = p.lora if s.lora else p.total
    frozen = _frozen_weight_bytes(p, s)
    if s.framework == "deepspeed":
        if not s.lora and p.hf_shapes:
            return _deepspeed_exact(p, s, dp, shard_rank)
        return _deepspeed(p, s, trained, frozen, dp)
    if s.framework == "fsdp":
        if not s.lora and p.hf_shapes:
            return _fsdp_exact(p, s, shard_degree, shard_rank)
        return _fsdp(p, s, trained, frozen, shard_degree)
    if s.framework == "megatron":
        # the distributed optimizer shards dense parameters over dp, routed experts over the expert dp group
        expert = 0 if s.lora else p.experts
        shard = dp if s.distributed_optimizer else 1
        expert_shard = (expert_dp or dp) if s.distributed_optimizer else 1
        owned = ceil_div(trained - expert, shard) + ceil_div(expert, expert_shard)
        master = 4 * owned
        optim = optimizer_state_bytes(s.optimizer, ceil_div(trained - expert, shard)) \
            + optimizer_state_bytes(s.optimizer, ceil_div(expert, expert_shard))
        host = 0
        if s.offload_optimizer:   # --optimizer-cpu-offload, fraction 1: master copies and states on the host
            host, master, optim = master + optim, 0, 0
        return StateBytes(2 * trained + frozen, master, 4 * trained, optim, 0, host, 0)
    if s.framework == "torch":   # bf16 parameters, gradients and AdamW states (2 × 2 B) plus a 4-byte step each
        states = 4 * trained if s.optimizer == "adamw" else optimizer_state_bytes(s.optimizer, trained) // 2
        return StateBytes(2 * trained + frozen, 0, 2 * trained + 2 * p.replicated_grad_extra,
                          states + STEP_BYTES * len(p.tensors), 0, 0, 2 * trained)
    # DDP with AMP: the trained parameters stay fp32; gradients fp32
    return StateBytes(4 * trained + frozen, 0, 4 * trained, optimizer_state_bytes(s.optimizer, trained), 0, 0,
                      4 * trained)


def _deepspeed(p: RankParams, s: TrainSetup, trained: int, frozen: int, dp: int) -> StateBytes:
    if s.zero == 3:
        parts = sum(zero3_partition_numel(n, dp) for n in p.tensors) if not s.lora else ceil_div(trained, dp)
        weights = 2 * parts + (frozen // dp if s.lora else 0)
        master, grads = 4 * parts, 4 * parts
        gather = 2 * min(DS_PREFETCH_BUCKET_ELEMENTS, p.total) + 2 * zero3_live_elements(p.largest_layer,
                                                                                       max(p.tensors, default=0))
        optim = optimizer_state_bytes(s.optimizer, parts)
        host = 0
        if s.offload_optimizer:
            host += master + optim + grads
            master = optim = grads = 0
        if s.offload_params:
            host += weights
            weights = 0
        return StateBytes(weights, master, grads, optim, gather, host)
    flat = ceil_div(trained, DS_ALIGNMENT * dp) * DS_ALIGNMENT * dp
    if s.zero == 0:
        return StateBytes(2 * flat + frozen, 4 * trained, 4 * trained,
                          optimizer_state_bytes(s.optimizer, trained), 0, 0)
    part = flat // dp
    master = 4 * part
    optim = optimizer_state_bytes(s.optimizer, part)
    grads = 4 * part if s.zero == 2 else 2 * flat
    bucket = min(DS_REDUCE_BUCKET_ELEMENTS, flat) * (2 if s.zero == 2 else 4)
    host = 0
    if s.offload_optimizer:
        host, master, optim = master + optim, 0, 0
    return StateBytes(2 * flat + frozen, master, grads, optim, bucket, host)


def _fsdp(p: RankParams, s: TrainSetup, trained: int, frozen: int, shard: int) -> StateBytes:
    """FSDP2: fp32 sharded parameters (they are the master copy), fp32 sharded gradients."""
    local = ceil_div(trained, shard)
    unit = 2 * p.largest_layer * (2 if s.fsdp != "grad-op" else 1)   # the gathered unit and the prefetched next one
    if s.fsdp == "grad-op":    # parameters stay unsharded from forward to backward
        unit += 2 * trained
    return StateBytes(4 * local + ceil_div(frozen, shard), 0, 4 * local, optimizer_state_bytes(s.optimizer, local),
                      unit, 0)


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _deepspeed_exact(p: RankParams, s: TrainSetup, dp: int, r: int) -> StateBytes:
    """Full fine-tuning under ZeRO, parameter by parameter (rules in the module docstring)."""
    sizes = [_numel(shape) for shape in p.hf_shapes]
    total = sum(sizes)
    if s.zero == 3:
        parts = sum(zero3_partition_numel(n, dp) for n in sizes)
        # a persistent parameter stays gathered in its padded size (ds_numel + _padding_size)
        persistent = sum(zero3_partition_numel(n, dp) * dp for n in sizes if n <= DS_PERSISTENCE_ELEMENTS)
        weights, master, grads = 2 * parts + 2 * persistent, 4 * parts, 2 * parts
        optim = optimizer_state_bytes(s.optimizer, parts) + STEP_BYTES * ceil_div(parts, DS_SUB_GROUP_ELEMENTS)
        buffers = 2 * DS_REDUCE_BUCKET_ELEMENTS + 2 * min(DS_PREFETCH_BUCKET_ELEMENTS, total) \
            + 2 * zero3_live_elements(p.largest_layer, max(sizes))
        host = 0
        if s.offload_optimizer:
            host, master, optim = master + optim, 0, 0
        if s.offload_params:
            host, weights = host + weights, 0
        return StateBytes(weights, master, grads, optim, buffers, host, 0 if s.offload_optimizer else 8 * parts)
    flat = ceil_div(total, DS_ALIGNMENT * dp) * DS_ALIGNMENT * dp
    if s.zero == 0:
        return StateBytes(2 * flat, 4 * total, 4 * total, optimizer_state_bytes(s.optimizer, total) + STEP_BYTES, 0, 0,
                          4 * total)
    part = flat // dp
    lo, hi = r * part, (r + 1) * part
    start, grads = 0, 0
    for n in sizes:   # the whole .grad of every parameter overlapping this rank's partition
        if start < hi and start + n > lo:
            grads += 2 * n
        start += n
    grads += 2 * max(0, min(hi, flat) - max(lo, total))   # the flat buffer's padding, in the last partition
    master, optim = 4 * part, optimizer_state_bytes(s.optimizer, part) + STEP_BYTES
    host = 0
    if s.offload_optimizer:
        host, master, optim = master + optim, 0, 0
    return StateBytes(2 * flat, master, grads, optim, 2 * min(DS_REDUCE_BUCKET_ELEMENTS, flat), host,
                      0 if s.offload_optimizer else 8 * part)


def _fsdp_exact(p: RankParams, s: TrainSetup, w: int, r: int) -> StateBytes:
    """FSDP2 full fine-tuning, parameter by parameter (rules in the module docstring)."""
    weights = optim = 0
    for shape in p.hf_shapes:
        d0, rest = shape[0], _numel(shape[1:])
        c = ceil_div(d0, w)
        weights += 4 * c * rest
        rows = max(0, min(d0 - r * c, c))
        optim += optimizer_state_bytes(s.optimizer, rows * rest) + STEP_BYTES
    unit = 2 * p.largest_layer * (2 if s.fsdp != "grad-op" else 1)
    if s.fsdp == "grad-op":
        unit += 2 * p.total
    return StateBytes(weights, 0, weights, optim, unit, 0, weights)
