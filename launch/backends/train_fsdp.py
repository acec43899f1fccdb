"""FSDP2 training steps on CPU (gloo), laid out as accelerate does, measuring per rank what FSDP2 holds, byte-exact.

Sources: accelerate/utils/fsdp_utils.py@1.15.0 (fsdp2_prepare_model, fsdp2_prepare_auto_wrap_policy),
accelerate/accelerator.py@1.15.0 (Accelerator.prepare, _prepare_fsdp2),
torch/distributed/fsdp/_fully_shard/_fsdp_param.py@2.13.0 (FSDPParam._init_sharded_param, to_sharded_dtensor),
torch/distributed/fsdp/_fully_shard/_fsdp_common.py@2.13.0 (_chunk_with_empty, _get_dim_chunked_size),
torch/distributed/fsdp/_fully_shard/_fsdp_collectives.py@2.13.0 (foreach_reduce),
torch/optim/adamw.py@2.13.0 / adam.py (_init_group: exp_avg, exp_avg_sq = zeros_like(param), step = 0-dim fp32).

Setup: ``fully_shard`` called directly, the way ``fsdp2_prepare_model`` lays a model out, because accelerate does
not run FSDP on CPU: ``AcceleratorState.__init__`` (accelerate/state.py@1.15.0) sets DistributedType.FSDP only for
the GPU-like multi-device types, so ``Accelerator(fsdp_plugin=FullyShardedDataParallelPlugin(fsdp_version=2))``
on MULTI_CPU wraps the model in DDP instead (tried). As ``fsdp2_prepare_model``: the bf16 checkpoint parameters
are upcast to fp32 (its mixed_precision != "no" branch), every decoder layer gets ``fully_shard(layer,
reshard_after_forward=..., mp_policy=MixedPrecisionPolicy(param_dtype=bf16, reduce_dtype=fp32))``, the tail
[final norm, embed_tokens, lm_head] (tied: one group) one unit with ``reshard_after_forward=False`` (an untied
input embedding its own unit), then the root without ``reshard_after_forward`` (the root default, False). The
optimizer is ``torch.optim.AdamW(model.parameters())`` over the sharded DTensor parameters.

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
  * grads: ``foreach_reduce`` reduce-scatters the bf16 unsharded grads of one FSDP unit in ``reduce_dtype`` (fp32)
    into one flat output of Σ padded shard numel of the unit; each parameter's ``.grad`` is a DTensor whose local
    tensor is a view of that buffer (the grad dtype equals the fp32 parameter dtype, no cast): per unit
    4 · Σ ceil(d0/W) · prod(rest) bytes, i.e. the same total as weights.
The bf16 all-gathered (unsharded) parameters exist only during forward/backward (freed after each unit's forward
when ``reshard_after_forward``; the root unit is never resharded after forward) and are part of the activation
peak reported here, which is a ``LiveTensorTracker`` over the last forward+backward, less held storages and grads.
"""

from __future__ import annotations

import os

import torch
from shardsim.launch.train_states import (
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


def _decoder_layer_class(model) -> str:
    return type(model.model.layers[0]).__name__


def _shard(model, reshard_after_forward: bool):
    """``fully_shard`` the way accelerate's ``fsdp2_prepare_model`` does (accelerate will not run FSDP on CPU)."""
    from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

    kwargs = {"reshard_after_forward": reshard_after_forward,
              "mp_policy": MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)}
    for p in model.parameters():  # fp32 sharded master parameters; bf16 only for compute
        if p.requires_grad and p.dtype != torch.float32:
            p.data = p.data.to(torch.float32)
    layer_cls = _decoder_layer_class(model)
    for module in list(model.modules()):
        if type(module).__name__ == layer_cls:
            fully_shard(module, **kwargs)
    embed, head = model.get_input_embeddings(), model.get_output_embeddings()
    tied = head is not None and embed.weight is head.weight
    norm = model.model.norm
    if not tied:
        fully_shard(embed, **kwargs)
    tail = [norm, embed, head] if tied else [norm, head]
    fully_shard([m for m in tail if m is not None], **{**kwargs, "reshard_after_forward": False})
    fully_shard(model, mp_policy=kwargs["mp_policy"])
    return model




def _held(model, optimizer) -> dict[str, list]:
    params = list(model.parameters())
    return {"weights": [p.to_local() if hasattr(p, "to_local") else p for p in params],
            "optimizer": optimizer_state_tensors(getattr(optimizer, "optimizer", optimizer).state)}


def _grads(model) -> list:
    return [p.grad.to_local() if hasattr(p.grad, "to_local") else p.grad for p in model.parameters()
            if p.grad is not None]


def _train(model, optimizer, steps, micro_batch, seq_len, seed):
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
                loss.backward()
            grads = _grads(model)
            peak = peak_without(tracker, grads)
        else:
            loss = model(input_ids=ids, labels=ids.clone()).loss
            loss.backward()
        losses.append(float(loss.detach().float()))
        optimizer.step()
        if step < steps - 1:
            optimizer.zero_grad(set_to_none=True)
    return grads, peak, losses


def run_fsdp(checkpoint_dir: str, steps: int, micro_batch: int, seq_len: int, reshard_after_forward: bool = True,
             lr: float = 1e-4, seed: int = 0) -> TrainStates:
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
    model = load_for_training(checkpoint_dir)
    model = _shard(model, reshard_after_forward)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    grads, peak, losses = _train(model, optimizer, steps, micro_batch, seq_len, seed)
    held = _held(model, optimizer)
    ledger = StorageLedger()
    states = TrainStates(weights=ledger.claim("weights", held["weights"]), master_weights=0,
                         optimizer=ledger.claim("optimizer", held["optimizer"]), activations_peak=peak, activations_saved=SAVED[0])
    states.grads = StorageLedger().claim("grads", grads)
    states.details = {
        "framework": "fsdp2", "world_size": tdist.get_world_size(), "losses": losses,
        "weights_views": view_bytes(held["weights"]), "grads_views": view_bytes(grads),
        "grad_storages": storage_bytes(grads), "via": "fully_shard (accelerate's fsdp2_prepare_model layout)",
        "param_dtypes": sorted({str(p.dtype) for p in model.parameters()}),
        "fsdp_units": sum(1 for m in model.modules() if type(m).__name__.startswith("FSDP")),
    }
    return states


SAVED = [0]
"""Bytes the last forward saved for backward (``SavedTensorBytes``), read into ``TrainStates.activations_saved``."""
