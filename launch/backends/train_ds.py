"""DeepSpeed ZeRO-0/1/2/3 training steps on CPU (gloo), measuring per rank what DeepSpeed holds, byte-exact.

Sources (installed deepspeed 0.19.8, read for the rules below):
deepspeed/runtime/zero/stage_1_and_2.py@0.19.8 (DeepSpeedZeroOptimizer.__init__, get_data_parallel_partitions,
flatten_dense_tensors_aligned, initialize_optimizer_states, copy_grads_in_partition, step),
deepspeed/runtime/utils.py@0.19.8 (align_dense_tensors), deepspeed/runtime/zero/stage3.py@0.19.8
(DeepSpeedZeroOptimizer_Stage3.__init__, _create_fp16_partitions_with_defragmentation,
_setup_for_real_optimizer), deepspeed/runtime/zero/partition_parameters.py@0.19.8 (_aligned_size, _padding_size,
_partition_param, _convert_to_deepspeed_param), deepspeed/runtime/zero/parameter_offload.py@0.19.8
(mark_persistent_parameters), deepspeed/runtime/engine.py@0.19.8 (get_data_types, _do_optimizer_sanity_check),
deepspeed/runtime/zero/config.py@0.19.8 (DeepSpeedZeroConfig defaults).

Notation: P = number of trainable parameter elements (tied embedding once), dp = data-parallel world size,
r = this rank, one optimizer param group (a plain ``AdamW(model.parameters())``).

ZeRO-1 and ZeRO-2 (``DeepSpeedZeroOptimizer``):
  * flat bf16 buffer: the group's params are flattened in order (``parameter_alignment`` false by default, so no
    per-param padding) and padded at the end to a multiple of ``alignment = nccl_start_alignment_factor (2) × dp``
    (``__init__``; ``align_dense_tensors``): F = ceil(P / (2·dp)) · 2·dp elements. Every model parameter becomes a
    view into it: weights = 2·F bytes on EVERY rank (parameters are not partitioned in stage 1/2).
  * dp partitions: ``get_data_parallel_partitions`` gives rank i ``F//dp + (i < F % dp)`` elements; F is a multiple
    of dp, so every rank has S = F / dp. ``partition_size = len(flat) // dp`` = S.
  * fp32 master: ``single_partition_of_fp32_groups[0]`` is a clone of this rank's bf16 partition in
    ``master_weights_and_grads_dtype`` (fp32): 4·S bytes.
  * optimizer: AdamW state for the single fp32 partition tensor: exp_avg + exp_avg_sq (4·S each) and ``step``,
    a 0-dim fp32 tensor (4 bytes, torch.optim.AdamW with capturable/fused off): 8·S + 4 bytes.
  * gradients, bf16 (``gradient_accumulation_dtype`` defaults to the model dtype, ``engine.get_data_types``), the
    same in stage 1 and 2 as measured on CPU: the backward epilogue (``independent_gradient_partition_epilogue``)
    sets ``averaged_gradients[0] = get_flat_partition(params_in_partition, ..., return_tensor_list=True)``, views
    into the WHOLE reduced ``.grad`` of every parameter overlapping [r·S, (r+1)·S), then clears ``param.grad``
    (``_clear_param_grad_only``): grads = 2·Σ numel(params overlapping the partition) — a parameter crossing a
    partition boundary is held whole by both neighbours. Stage 2's ``grads_in_partition`` buffer
    (``copy_grads_in_partition``) stayed unallocated here. The fp32 partition grad (4·S) exists only inside
    ``step`` (``single_partition_of_fp32_groups[0].grad``, set then freed).
  * buckets: ``reduce_bucket_size`` default 5e8 elements, ``allgather_bucket_size`` 5e8 (config.py); with
    ``contiguous_gradients`` (default True) stage 2 allocates ipg bucket buffers of reduce_bucket_size elements
    per comm dtype lazily (``torch.empty``: reserved, mostly untouched on CPU) — reported in details, not in grads.

ZeRO-3 (``DeepSpeedZeroOptimizer_Stage3``):
  * each parameter is padded to a multiple of dp (``_padding_size``) and split evenly: its partition is
    ceil(numel/dp) elements on every rank (``_partition_param``), kept in ``param.ds_tensor``; the optimizer then
    moves all partitions into one flat bf16 buffer ``lp_param_buffer`` (``fp16_partitioned_groups_flat`` are
    narrows of it): weights = 2·Σ ceil(numel/dp).
  * persistent parameters: numel ≤ ``stage3_param_persistence_threshold`` (default 1e5) and the model total under
    ``stage3_model_persistence_threshold`` (default sys.maxsize) get ``ds_persist``
    (``mark_persistent_parameters``): they are STILL partitioned (ds_tensor as above) but their full bf16
    ``param.data`` stays gathered after the first forward, so the rank also holds 2·numel for each of them.
  * fp32 master: ``fp32_partitioned_groups_flat`` = fp32 copy of the flat partitions: 4·Σ ceil(numel/dp).
  * gradients: ``grad_partitions_flat_buffer`` (``__init__``): zeros of Σ ceil(numel/dp) elements in
    ``gradient_accumulation_dtype`` (bf16 here) allocated at init and reused: 2·Σ ceil(numel/dp).
  * optimizer: AdamW on the fp32 flat partition: 8·Σ ceil(numel/dp) + 4 (step).
  * ``stage3_prefetch_bucket_size`` default 5e7 elements, ``stage3_max_live_parameters`` 1e9,
    ``stage3_max_reuse_distance`` 1e9, ``sub_group_size`` 1e9 (one sub-group here), ``reduce_bucket_size`` 5e8:
    the ipg bucket buffers (``torch.empty(reduce_bucket_size)`` per comm dtype) are reported in details.

ZeRO-0 (no ZeRO; bf16 with fp32 grad accumulation, ``engine._do_optimizer_sanity_check`` → BF16_Optimizer) is
accepted but measured from the model only (no byte rules asserted).

Measuring: grads are sampled right after the last ``engine.backward`` (before ``engine.step``, which frees the fp32
partition grad), the other terms after the last step; the activation peak is a ``LiveTensorTracker`` over the last
forward+backward less the storages already held and the gradient storages made in it.
"""

from __future__ import annotations

import torch
from shardsim.launch.backends.zero3 import prepare_env
from shardsim.launch.train.states import (
    SavedTensorBytes,
    StorageLedger,
    TrainStates,
    activation_tracker,
    flat_tensors,
    load_for_training,
    optimizer_state_tensors,
    random_batch,
    storage_bytes,
    view_bytes,
)


def _config(stage: int, micro_batch: int, zero_overrides: dict | None = None) -> dict:
    return {
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": 1,
        "bf16": {"enabled": True},
        "zero_optimization": {"stage": stage, **(zero_overrides or {})},
        "zero_allow_untested_optimizer": True,
        "gradient_clipping": 0.0,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }




def _grad_tensors(engine, stage: int) -> dict[str, list]:
    """Every gradient storage DeepSpeed keeps after backward, by where it lives."""
    opt = engine.optimizer
    params = list(engine.module.parameters())
    out = {"param.grad": [p.grad for p in params],
           "param.grad_accum": [getattr(p, "grad_accum", None) for p in params]}
    if stage in (1, 2):
        out["grads_in_partition"] = [getattr(opt, "grads_in_partition", None)]
        out["averaged_gradients"] = list((getattr(opt, "averaged_gradients", None) or {}).values())
        out["fp32_partition.grad"] = [t.grad for t in opt.single_partition_of_fp32_groups]
    elif stage == 3:
        out["grad_partitions_flat_buffer"] = [opt.grad_partitions_flat_buffer]
        out["fp32_partition.grad"] = [t.grad for t in opt.fp32_partitioned_groups_flat]
    elif hasattr(opt, "fp32_groups_gradients_flat"):
        out["fp32_groups_gradients_flat"] = list(opt.fp32_groups_gradients_flat)
    return out


def _weights_master_opt(engine, stage: int) -> dict[str, list]:
    opt = engine.optimizer
    params = list(engine.module.parameters())
    if stage in (1, 2):
        weights = list(opt.bit16_groups_flat) + params
        master = list(opt.single_partition_of_fp32_groups)
    elif stage == 3:
        persistent = [p.data for p in params if getattr(p, "ds_persist", False) and p.data.numel()]
        weights = list(opt.fp16_partitioned_groups_flat) + [p.ds_tensor for p in params] + persistent
        master = list(opt.fp32_partitioned_groups_flat)
    else:
        weights = params
        master = list(getattr(opt, "fp32_groups_flat_partition", []) or [])
    inner = getattr(opt, "optimizer", opt)
    return {"weights": weights, "master_weights": master, "optimizer": optimizer_state_tensors(inner.state)}


def _bucket_details(engine) -> dict:
    buckets = getattr(engine.optimizer, "ipg_buckets", {}) or {}
    out = {}
    for dtype, bucket in buckets.items():
        buf = getattr(bucket, "buffer", None)
        bufs = buf if isinstance(buf, list) else [buf]
        out[str(dtype)] = storage_bytes(bufs)
    return out


def _step_inputs(model, micro_batch: int, seq_len: int, seed: int, step: int):
    ids = random_batch(model.config.vocab_size, micro_batch, seq_len, seed, step)
    return ids, ids.clone()


def _train(engine, steps: int, micro_batch: int, seq_len: int, seed: int, stage: int):
    """Runs the steps; returns (grad tensors after the last backward, the last pass's tracker, losses)."""
    from shardsim.launch.measure import peak_without

    losses, grads, peak = [], {}, 0
    for step in range(steps):
        ids, labels = _step_inputs(engine.module, micro_batch, seq_len, seed, step)
        last = step == steps - 1
        if last:
            held = _weights_master_opt(engine, stage)
            tracker = activation_tracker(held.values())
            with tracker:
                with SavedTensorBytes(engine.module) as saved:
                    loss = engine(input_ids=ids, labels=labels).loss
                SAVED[0] = saved.total
                engine.backward(loss)
            grads = _grad_tensors(engine, stage)
            peak = peak_without(tracker, list(flat_tensors(grads.values())))
        else:
            loss = engine(input_ids=ids, labels=labels).loss
            engine.backward(loss)
        losses.append(float(loss.detach().float()))
        engine.step()
    return grads, peak, losses


def run_deepspeed(checkpoint_dir: str, stage: int, steps: int, micro_batch: int, seq_len: int, lr: float = 1e-4,
                  seed: int = 0, zero_overrides: dict | None = None) -> TrainStates:
    """``steps`` AdamW steps with DeepSpeed ZeRO ``stage`` (0–3), bf16, on this rank; returns what it holds
    (``zero_overrides``: zero_optimization keys beside the defaults, e.g. ``stage3_max_reuse_distance``).

    The caller has set RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT (and TORCH_EXTENSIONS_DIR) and called
    ``torch.distributed.init_process_group("gloo")``; LOCAL_SIZE / LOCAL_RANK are set here as ``zero3.py`` does.
    """
    if stage not in (0, 1, 2, 3):
        raise ValueError(f"ZeRO stage {stage} is not one of 0, 1, 2, 3")
    if steps < 1:
        raise ValueError("steps must be at least 1")
    prepare_env()
    import deepspeed
    import torch.distributed as tdist

    if tdist.is_initialized():
        deepspeed.init_distributed(dist_backend=tdist.get_backend(), verbose=False)
    torch.manual_seed(seed)
    model = load_for_training(checkpoint_dir)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    config = _config(stage, micro_batch, zero_overrides)
    engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=config)
    grads, peak, losses = _train(engine, steps, micro_batch, seq_len, seed, stage)
    held = _weights_master_opt(engine, stage)
    ledger = StorageLedger()
    states = TrainStates(
        weights=ledger.claim("weights", held["weights"]),
        master_weights=ledger.claim("master_weights", held["master_weights"]),
        optimizer=ledger.claim("optimizer", held["optimizer"]),
        activations_peak=peak, activations_saved=SAVED[0],
    )
    grad_ledger = StorageLedger()
    by_kind = {kind: grad_ledger.claim(kind, ts) for kind, ts in grads.items()}
    states.grads = sum(by_kind.values())
    states.details = {
        "framework": "deepspeed", "stage": stage, "world_size": tdist.get_world_size() if tdist.is_initialized()
        else 1, "losses": losses, "grads_by_kind": by_kind,
        "weights_views": view_bytes(p.ds_tensor if stage == 3 else p for p in engine.module.parameters()),
        "ipg_bucket_bytes": _bucket_details(engine),
        "persistent_params": sum(1 for p in engine.module.parameters() if getattr(p, "ds_persist", False)),
        "optimizer_class": type(engine.optimizer).__name__,
    }
    return states


SAVED = [0]
"""Bytes the last forward saved for backward (``SavedTensorBytes``), read into ``TrainStates.activations_saved``."""


def run_rank(job, layout, coords) -> TrainStates:
    """The runner protocol of ``shardsim.launch.train.registry``: ``job`` (a ``TrainJob``) with ZeRO ``job.zero``."""
    return run_deepspeed(job.checkpoint_dir, job.zero, job.steps, job.micro_batch, job.seq_len, seed=job.seed)
