"""Torch-native tensor-parallel training (DTensor) on CPU (gloo): the Megatron-style TP layout run through real torch
APIs, measuring the local shards every rank holds.

``torch.distributed.tensor.parallel.parallelize_module`` (torch@2.13.0) with the Megatron split (Shoeybi et al.
2019, arXiv:1909.08053): q/k/v and gate/up ``ColwiseParallel`` (output features split), o/down ``RowwiseParallel``
(input features split, outputs all-reduced), embed_tokens ``RowwiseParallel`` (vocabulary rows split, the
vocab-parallel embedding) and lm_head ``ColwiseParallel`` with replicated output (vocabulary rows split, logits
gathered); norms replicated: the planner's shard rules (``core.tensors``: column / row / vocab / replicated) with
tp ≤ the KV heads. Parameters stay bf16 and torch AdamW keeps exp_avg and exp_avg_sq in the parameters' dtype plus
a 4-byte ``step`` per parameter (torch/optim/adamw.py); gradients are bf16 local shards. Untied embeddings only
(a tied lm_head cannot take another placement than the embedding).
"""

from __future__ import annotations

import torch
from shardsim.launch.train.states import (
    SavedTensorBytes,
    StorageLedger,
    TrainStates,
    flat_tensors,
    load_for_training,
    optimizer_state_tensors,
    random_batch,
)


def tp_plan(layers: list[str], embed: str | None = "model.embed_tokens", head: str | None = "lm_head") -> dict:
    """The Megatron split of the decoder layers at the module paths ``layers``, the embedding and the head."""
    from torch.distributed.tensor import Replicate
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel

    plan = {}
    if embed:
        plan[embed] = RowwiseParallel(input_layouts=Replicate())
    if head:
        plan[head] = ColwiseParallel(output_layouts=Replicate())
    for path in layers:
        p = path + "."
        plan.update({p + "self_attn.q_proj": ColwiseParallel(), p + "self_attn.k_proj": ColwiseParallel(),
                     p + "self_attn.v_proj": ColwiseParallel(), p + "self_attn.o_proj": RowwiseParallel(),
                     p + "mlp.gate_proj": ColwiseParallel(), p + "mlp.up_proj": ColwiseParallel(),
                     p + "mlp.down_proj": RowwiseParallel()})
    return plan


def local_shard(t):
    return t.to_local() if hasattr(t, "to_local") else t


def run_torch_tp(checkpoint_dir: str, steps: int, micro_batch: int, seq_len: int, lr: float = 1e-4,
                 seed: int = 0) -> TrainStates:
    """``steps`` AdamW steps of the model split over all ranks by TP; what each rank holds afterwards."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor.parallel import parallelize_module

    torch.manual_seed(seed)
    model = load_for_training(checkpoint_dir)
    if model.config.tie_word_embeddings:
        raise ValueError("torch-native TP validation needs untied embeddings (a tied lm_head shares the embedding)")
    mesh = init_device_mesh("cpu", (dist.get_world_size(),))
    parallelize_module(model, mesh, tp_plan([f"model.layers.{i}" for i in range(model.config.num_hidden_layers)]))
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr)
    vocab = model.config.vocab_size
    grads, saved, losses = [], 0, []
    for step in range(steps):
        ids = random_batch(vocab, micro_batch, seq_len, seed, step)
        if step == steps - 1:
            with SavedTensorBytes(model) as probe:
                loss = model(input_ids=ids, labels=ids.clone()).loss
            saved = probe.total
            loss.backward()
            grads = [local_shard(p.grad) for p in model.parameters() if p.grad is not None]
        else:
            loss = model(input_ids=ids, labels=ids.clone()).loss
            loss.backward()
        losses.append(float(loss.detach().float()))
        optimizer.step()
        if step < steps - 1:
            optimizer.zero_grad(set_to_none=True)
    states = held_states(model, optimizer, grads, saved)
    states.details = {"framework": "torch-tp", "world_size": dist.get_world_size(), "losses": losses}
    return states


def held_states(module, optimizer, grads: list, saved: int, peak: int = 0) -> TrainStates:
    """What a rank of torch-native TP / PP holds: the local shards of its parameters (bf16, no master copy), its
    AdamW states and the gradients sampled after the last backward; ``saved`` / ``peak`` its activations."""
    ledger = StorageLedger()
    optimizer_states = [local_shard(t) for t in flat_tensors(optimizer_state_tensors(optimizer.state))]
    states = TrainStates(weights=ledger.claim("weights", [local_shard(p) for p in module.parameters()]),
                         master_weights=0, optimizer=ledger.claim("optimizer", optimizer_states),
                         activations_saved=saved, activations_peak=peak)
    states.grads = StorageLedger().claim("grads", grads)
    return states


def run_rank(job, layout, coords) -> TrainStates:
    """The runner protocol of ``shardsim.launch.train.registry``: ``job`` (a ``TrainJob``) over the TP ranks."""
    return run_torch_tp(job.checkpoint_dir, job.steps, job.micro_batch, job.seq_len, seed=job.seed)
