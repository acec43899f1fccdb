"""FSDP2 training steps through accelerate on CPU (gloo), measuring per rank what FSDP2 holds, byte-exact.

Sources: accelerate/utils/fsdp_utils.py@1.15.0 (fsdp2_prepare_model, fsdp2_prepare_auto_wrap_policy),
accelerate/accelerator.py@1.15.0 (Accelerator.prepare, _prepare_fsdp2, backward),
accelerate/utils/dataclasses.py@1.15.0 (FullyShardedDataParallelPlugin.set_mixed_precision),
torch/distributed/fsdp/_fully_shard/_fsdp_param.py@2.13.0 (FSDPParam._init_sharded_param, to_sharded_dtensor),
torch/distributed/fsdp/_fully_shard/_fsdp_common.py@2.13.0 (_chunk_with_empty, _get_dim_chunked_size),
torch/distributed/fsdp/_fully_shard/_fsdp_collectives.py@2.13.0 (foreach_reduce),
torch/optim/adamw.py@2.13.0 / adam.py (_init_group: exp_avg, exp_avg_sq = zeros_like(param), step = 0-dim fp32).

Setup: ``Accelerator(mixed_precision="bf16", fsdp_plugin=FullyShardedDataParallelPlugin(fsdp_version=2,
auto_wrap_policy="transformer_based_wrap"))`` and ``accelerator.prepare(model, AdamW)``, with the one CPU gate
lifted (``_accelerator``). What ``fsdp2_prepare_model`` then does: the bf16 checkpoint parameters are upcast to fp32
(its mixed_precision != "no" branch), every decoder layer gets ``fully_shard(layer, reshard_after_forward=...,
mp_policy=MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=bf16, output_dtype=bf16))`` (accelerate's bf16
default), the tail [final norm, embed_tokens, lm_head] (tied: one group) one unit with
``reshard_after_forward=False`` (an untied input embedding its own unit), then the root without
``reshard_after_forward`` (the root default, False). The optimizer is accelerate's wrapper of
``torch.optim.AdamW`` over the sharded DTensor parameters.

Sharding arithmetic (``_init_sharded_param``): a parameter of shape [d0, *rest] over W ranks is split on dim 0 with
``torch.chunk`` semantics (``_chunk_with_empty``): chunk c = ceil(d0 / W) rows, rank r owns rows
[r·c, min((r+1)·c, d0)) — possibly fewer, possibly none. Every rank allocates the PADDED shard: ``new_zeros`` of
chunks[0]'s size = c × prod(rest) elements (``padded_sharded_param_size``), and ``to_local()`` is a narrow of it to
its own rows. So, fp32:
  * weights (the fp32 sharded parameters; they are the master copy, so master_weights = 0):
    Σ_params 4 · ceil(d0/W) · prod(rest) bytes of storage on every rank (a tied embedding once).
  * optimizer: AdamW state is ``zeros_like(param)`` of the DTensor → a contiguous local tensor of the UNPADDED
    local shard: 8 · rows_r · prod(rest) per parameter, plus ``step``, a 0-dim fp32 tensor (4 bytes) per
    parameter (ranks with 0 rows have empty exp_avg/exp_avg_sq, 0 bytes, still a 4-byte step).
  * grads: ``foreach_reduce`` reduce-scatters the bf16 unsharded grads of one FSDP unit in ``reduce_dtype``
    into one flat output of Σ padded shard numel of the unit, cast to the fp32 parameter dtype when they differ;
    each parameter's ``.grad`` is a DTensor whose local tensor is a view of that fp32 buffer: per unit
    4 · Σ ceil(d0/W) · prod(rest) bytes, i.e. the same total as weights (measured the same with reduce_dtype bf16
    and fp32).
The bf16 all-gathered (unsharded) parameters exist only during forward/backward (freed after each unit's forward
when ``reshard_after_forward``; the root unit is never resharded after forward) and are part of the activation
peak reported here, which is a ``LiveTensorTracker`` over the last forward+backward, less held storages and grads.
"""

from __future__ import annotations

import os

import torch
from shardsim.launch.train.states import (
    SavedTensorBytes,
    StorageLedger,
    TrainStates,
    activation_tracker,
    load_for_training,
    optimizer_state_tensors,
    random_batch,
    storage_bytes,
    view_bytes,
)


def _accelerator(reshard_after_forward: bool, reduce_dtype: str | None):
    """An ``Accelerator`` with accelerate's FSDP2 plugin: one unit per decoder layer (``transformer_based_wrap`` on
    the model's own ``_no_split_modules``), bf16 mixed precision.

    accelerate gates FSDP off CPU in one place: ``AcceleratorState.__init__`` (accelerate/state.py@1.15.0) turns the
    plugin into DistributedType.FSDP only for the GPU-like multi-device types, and on MULTI_CPU silently wraps the
    model in DDP instead. So the state is set to FSDP after construction, as it is on a GPU; everything after —
    ``prepare`` (``_prepare_fsdp2`` → ``fsdp2_prepare_model``), ``backward`` and the ``AcceleratedOptimizer`` —
    is accelerate's own code path.
    """
    from accelerate import Accelerator
    from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin

    policy = None
    if reduce_dtype is not None:
        policy = {"param_dtype": "bf16", "reduce_dtype": reduce_dtype, "output_dtype": "bf16"}
    plugin = FullyShardedDataParallelPlugin(fsdp_version=2, auto_wrap_policy="transformer_based_wrap",
                                            reshard_after_forward=reshard_after_forward,
                                            mixed_precision_policy=policy)
    accelerator = Accelerator(mixed_precision="bf16", fsdp_plugin=plugin, cpu=True)
    state = accelerator.state
    if state.distributed_type != DistributedType.FSDP:   # the CPU gate above
        state.distributed_type = DistributedType.FSDP
        state.fsdp_plugin = plugin
        if plugin.mixed_precision_policy is None:
            plugin.set_mixed_precision("bf16")
    return accelerator


def _held(model, optimizer) -> dict[str, list]:
    params = list(model.parameters())
    return {"weights": [p.to_local() if hasattr(p, "to_local") else p for p in params] + _padded_shards(model),
            "optimizer": optimizer_state_tensors(getattr(optimizer, "optimizer", optimizer).state)}


def _padded_shards(model) -> list:
    """Every parameter's padded shard (``FSDPParam._sharded_param_data``, _fsdp_param.py@2.13.0
    ``_init_sharded_param`` / ``reset_sharded_param``): a rank whose dim-0 chunk is empty — a [1, H] parameter such
    as a hybrid's ``shared_expert_gate`` over 2 ranks — still allocates the padded chunk, which its empty
    ``to_local()`` does not show (the other ranks' ``to_local()`` are views of theirs: counted once)."""
    out = []
    for module in model.modules():
        state = module._get_fsdp_state() if hasattr(module, "_get_fsdp_state") else None
        group = state._fsdp_param_group if state is not None else None
        out += [fp._sharded_param_data for fp in (group.fsdp_params if group is not None else ())]
    return out


def _grads(model) -> list:
    return [p.grad.to_local() if hasattr(p.grad, "to_local") else p.grad for p in model.parameters()
            if p.grad is not None]


def _train(accelerator, model, optimizer, steps, micro_batch, seq_len, seed):
    from shardsim.launch.measure import peak_without

    vocab = model.config.vocab_size
    losses, grads, peak = [], [], 0
    for step in range(steps):
        ids = random_batch(vocab, micro_batch, seq_len, seed, step)
        if step == steps - 1:
            held = _held(model, optimizer)
            tracker = activation_tracker(held.values())
            with tracker:
                with SavedTensorBytes(model) as saved:
                    loss = model(input_ids=ids, labels=ids.clone()).loss
                SAVED[0] = saved.total
                accelerator.backward(loss)
            grads = _grads(model)
            peak = peak_without(tracker, grads)
        else:
            loss = model(input_ids=ids, labels=ids.clone()).loss
            accelerator.backward(loss)
        losses.append(float(loss.detach().float()))
        optimizer.step()
        if step < steps - 1:
            optimizer.zero_grad(set_to_none=True)
    return grads, peak, losses


def run_fsdp(checkpoint_dir: str, steps: int, micro_batch: int, seq_len: int, reshard_after_forward: bool = True,
             lr: float = 1e-4, seed: int = 0, reduce_dtype: str | None = None) -> TrainStates:
    """``steps`` AdamW steps with FSDP2 (fp32 sharded params, bf16 compute, fp32 reduce) on this rank.

    The caller has set RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT and called
    ``torch.distributed.init_process_group("gloo")``; accelerate adopts that process group. Grads are sampled
    after the last backward (they stay until the next ``zero_grad``), the rest after the last step.
    """
    import torch.distributed as tdist

    if steps < 1:
        raise ValueError("steps must be at least 1")
    os.environ.setdefault("LOCAL_RANK", os.environ.get("RANK", "0"))
    os.environ.setdefault("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1"))
    torch.manual_seed(seed)
    accelerator = _accelerator(reshard_after_forward, reduce_dtype)
    model = load_for_training(checkpoint_dir)
    model, optimizer = accelerator.prepare(model, torch.optim.AdamW(model.parameters(), lr=lr))
    grads, peak, losses = _train(accelerator, model, optimizer, steps, micro_batch, seq_len, seed)
    held = _held(model, optimizer)
    ledger = StorageLedger()
    states = TrainStates(weights=ledger.claim("weights", held["weights"]), master_weights=0,
                         optimizer=ledger.claim("optimizer", held["optimizer"]), activations_peak=peak,
                         activations_saved=SAVED[0])
    states.grads = StorageLedger().claim("grads", grads)
    states.details = {
        "framework": "fsdp2", "world_size": tdist.get_world_size(), "losses": losses,
        "weights_views": view_bytes(held["weights"]), "grads_views": view_bytes(grads),
        "grad_storages": storage_bytes(grads), "via": "accelerate Accelerator.prepare (FSDP2)",
        "mixed_precision_policy": str(accelerator.state.fsdp_plugin.mixed_precision_policy),
        "param_dtypes": sorted({str(p.dtype) for p in model.parameters()}),
        "fsdp_units": sum(1 for m in model.modules() if type(m).__name__.startswith("FSDP")),
    }
    return states


SAVED = [0]
"""Bytes the last forward saved for backward (``SavedTensorBytes``), read into ``TrainStates.activations_saved``."""


def run_rank(job, layout, coords) -> TrainStates:
    """The runner protocol of ``shardsim.launch.train.registry``: ``job`` (a ``TrainJob``), parameters resharded
    after the forward unless ``job.fsdp`` is grad-op."""
    return run_fsdp(job.checkpoint_dir, job.steps, job.micro_batch, job.seq_len, seed=job.seed,
                    reshard_after_forward=job.fsdp != "grad-op")
