"""DeepSpeed ZeRO 0–3 over the data-parallel ranks, bf16 parameters with fp32 master copies (``--zero``), with
optimizer and parameter offload; its pipeline engine with ZeRO 0/1.

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
"""

from __future__ import annotations

from shardsim.core.layout import Layout
from shardsim.core.model import ModelSpec
from shardsim.core.tensors import numel_of, zero3_partition_numel
from shardsim.core.train.choices import TrainSetup
from shardsim.core.train.frameworks.base import (STEP_BYTES, Alternative, Framework, StateBytes, StateSharding,
                                                 frozen_weight_bytes, optimizer_state_bytes, trained_elements)
from shardsim.core.train.frameworks.refusals import refuse_distributed_optimizer, refuse_model_parallel
from shardsim.core.train.params import RankParams
from shardsim.errors import ShardsimError
from shardsim.units import ceil_div

DS_REDUCE_BUCKET_ELEMENTS = 500_000_000     # zero/config.py@0.19.8 reduce_bucket_size default
DS_PREFETCH_BUCKET_ELEMENTS = 50_000_000    # zero/config.py stage3_prefetch_bucket_size default
DS_ALIGNMENT = 2                            # stage_1_and_2.py nccl_start_alignment_factor
DS_PERSISTENCE_ELEMENTS = 100_000           # zero/config.py stage3_param_persistence_threshold default
DS_MAX_LIVE_ELEMENTS = 1_000_000_000        # zero/config.py stage3_max_live_parameters default
DS_MAX_REUSE_ELEMENTS = 1_000_000_000       # zero/config.py stage3_max_reuse_distance default
DS_SUB_GROUP_ELEMENTS = 1_000_000_000       # zero/config.py sub_group_size default


def zero3_live_elements(layer: int, largest_parameter: int) -> int:
    """Elements ZeRO-3 holds gathered at once for the module being run: one decoder layer, capped by
    ``stage3_max_live_parameters`` (the coordinator releases parameters beyond it, partitioned_param_coordinator.py
    ``fetch_sub_module`` / ``__n_available_params``), but never below the largest single parameter, which is
    gathered whole."""
    return max(largest_parameter, min(layer, DS_MAX_LIVE_ELEMENTS))


def deepspeed_states(p: RankParams, s: TrainSetup, sharding: StateSharding) -> StateBytes:
    """ZeRO's states: parameter by parameter for full fine-tuning of the transformers model, else in aggregate."""
    if not s.lora and p.hf_shapes:
        return _deepspeed_exact(p, s, sharding.dp, sharding.rank)
    return _deepspeed(p, s, trained_elements(p, s), frozen_weight_bytes(p, s), sharding.dp)


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


def _deepspeed_exact(p: RankParams, s: TrainSetup, dp: int, r: int) -> StateBytes:
    """Full fine-tuning under ZeRO, parameter by parameter (rules in the module docstring)."""
    sizes = [numel_of(shape) for shape in p.hf_shapes]
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


def check(spec: ModelSpec, layout: Layout, s: TrainSetup) -> None:
    if s.zero >= 2 and layout.pp > 1:
        raise ShardsimError(f"DeepSpeed's pipeline engine runs with ZeRO stage 0 or 1 only, not --zero {s.zero} with "
                            f"--pp {layout.pp} (deepspeed/runtime/pipe/engine.py asserts zero_stage < 2)")
    refuse_model_parallel(s, layout)
    refuse_distributed_optimizer(s)


def check_offload(s: TrainSetup) -> None:
    if s.offload_params and s.zero != 3:
        raise ShardsimError("--offload-params needs --zero 3 (DeepSpeed offloads parameters only in stage 3)")
    if s.offload_optimizer and s.zero == 0:
        raise ShardsimError("--offload-optimizer needs --zero 1, 2 or 3")


def strategy_text(s: TrainSetup, layout: Layout) -> str:
    return f"DeepSpeed ZeRO-{s.zero}" + (" + offload optimizer" if s.offload_optimizer else "") + (
        " + offload params" if s.offload_params else "")


def alternatives(s: TrainSetup, layout: Layout) -> list[Alternative]:
    """The higher ZeRO stages (not under the pipeline engine, which runs ZeRO 0/1 only)."""
    if layout.pp > 1:
        return []
    return [Alternative(f"ZeRO-{z}", s.model_copy(update={"zero": z})) for z in range(s.zero + 1, 4)]


def retains_released_experts(s: TrainSetup) -> bool:
    """ZeRO-3 releases a gathered parameter by ``param.data = torch.empty(0)`` (partition_parameters.py
    ``free_param``), which frees nothing while autograd keeps a view (``activations.zero3_retained_expert_bytes``)."""
    return s.zero == 3


DEEPSPEED = Framework("deepspeed", deepspeed_states, strategy_text, check=check, check_offload=check_offload,
                      alternatives=alternatives, retains_released_experts=retains_released_experts,
                      offloads_optimizer=True, offloads_params=True)
