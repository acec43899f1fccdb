"""Torch-native pipeline-parallel training, with tensor parallel inside each stage, on CPU (gloo): the Megatron-style
TP × PP layout run through ``torch.distributed.pipelining`` and DTensor, measuring what every rank holds.

Sources: torch@2.13.0 ``torch/distributed/pipelining/stage.py`` (``PipelineStage``: a stage is a plain module of
its own; activations and their gradients cross stages by point-to-point send/recv in the pp group, shapes inferred
on the first step), ``schedules.py`` (``Schedule1F1B._step_microbatches``: each stage runs ``num_stages −
stage_index`` warm-up forwards, then one backward per forward; the loss is computed on the last stage right after
its forward; gradients summed over the micro-batches and scaled by 1 / n_microbatches), torchtitan's manual stage
split (``torchtitan/distributed/pipeline_parallel.py``: keep the stage's layers, drop the rest). The split of layers
between stages is the planner's (``core.layout.stage_ranges``), handed in by the worker.

A stage (``StageModule``) holds the transformers modules of its part of the model — embed_tokens on the first,
its decoder layers, the final norm and lm_head on the last — and runs them as ``Qwen3Model.forward`` does
(transformers@5.24.0 modeling_qwen3.py: ``create_causal_mask``, ``rotary_emb`` once per forward, then each decoder
layer with the position embeddings); the loss is transformers' ``ForCausalLMLoss``. With tp > 1 each stage is split
by ``train_tp.tp_plan`` over its TP sub-mesh (the same Megatron split as ``--backend torch`` alone). Parameters,
gradients and AdamW states stay bf16 (a 4-byte ``step`` per parameter). Untied embeddings only: a tied lm_head on
the last stage would be a second copy of stage 0's embedding that nothing keeps in step.

Activations: ``LiveSavedBytes`` over the last step's schedule gives the peak of what autograd holds for backward
at once — the micro-batches in flight on this stage times what one keeps.
"""

from __future__ import annotations

import gc
from contextlib import nullcontext

import torch
from shardsim.launch.backends.train_tp import held_states, local_shard, tp_plan
from shardsim.launch.train.states import (
    LiveSavedBytes,
    TrainStates,
    activation_tracker,
    load_for_training,
    optimizer_state_tensors,
    random_batch,
)
from torch import nn


class StageModule(nn.Module):
    """Decoder layers ``first`` … ``last`` of a transformers Qwen3 model, with the embedding on the first stage and
    the final norm and lm_head on the last: ``Qwen3Model.forward`` cut at the stage's edges."""

    def __init__(self, model, first: int, last: int, is_first: bool, is_last: bool):
        super().__init__()
        inner = model.model
        self.config = model.config
        self.embed_tokens = inner.embed_tokens if is_first else None
        self.layers = nn.ModuleList(inner.layers[first:last + 1])
        self.rotary_emb = inner.rotary_emb
        self.norm = inner.norm if is_last else None
        self.lm_head = model.lm_head if is_last else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from transformers.masking_utils import create_causal_mask

        hidden = self.embed_tokens(x) if self.embed_tokens is not None else x
        positions = torch.arange(hidden.shape[1], device=hidden.device).unsqueeze(0)
        mask = create_causal_mask(config=self.config, inputs_embeds=hidden, attention_mask=None, cache=None,
                                  position_ids=positions)
        rope = self.rotary_emb(hidden, positions)
        for layer in self.layers:
            hidden = layer(hidden, attention_mask=mask, position_embeddings=rope, position_ids=positions)
        if self.lm_head is not None:
            hidden = self.lm_head(self.norm(hidden))
        return hidden


def _build_stage(checkpoint_dir: str, mesh, first: int, last: int, pp_rank: int, pp: int) -> StageModule:
    from torch.distributed.tensor.parallel import parallelize_module

    model = load_for_training(checkpoint_dir)
    if model.config.tie_word_embeddings:
        raise ValueError("pipeline validation needs untied embeddings (a tied lm_head would copy stage 0's embedding)")
    stage = StageModule(model, first, last, pp_rank == 0, pp_rank == pp - 1)
    del model
    gc.collect()   # the other stages' layers go with the model
    if mesh["tp"].size() > 1:
        plan = tp_plan([f"layers.{i}" for i in range(len(stage.layers))],
                       "embed_tokens" if stage.embed_tokens is not None else None,
                       "lm_head" if stage.lm_head is not None else None)
        parallelize_module(stage, mesh["tp"], plan)
    return stage


def run_torch_pipeline(checkpoint_dir: str, steps: int, micro_batch: int, seq_len: int, grad_accum: int,
                       mesh_ranks: list[list[int]], pp_rank: int, first_layer: int, last_layer: int,
                       lr: float = 1e-4, seed: int = 0) -> TrainStates:
    """``steps`` 1F1B steps of ``grad_accum`` micro-batches on this rank's stage (layers ``first_layer`` …
    ``last_layer``); ``mesh_ranks[pp_rank][tp_rank]`` is the global rank. What the rank holds afterwards."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import DeviceMesh
    from torch.distributed.pipelining import PipelineStage, Schedule1F1B
    from transformers.loss.loss_utils import ForCausalLMLoss

    pp = len(mesh_ranks)
    mesh = DeviceMesh("cpu", torch.tensor(mesh_ranks), mesh_dim_names=("pp", "tp"))
    torch.manual_seed(seed)
    stage = _build_stage(checkpoint_dir, mesh, first_layer, last_layer, pp_rank, pp)
    vocab = stage.config.vocab_size
    pipe = PipelineStage(stage, pp_rank, pp, torch.device("cpu"), group=mesh.get_group("pp"))
    schedule = Schedule1F1B(pipe, n_microbatches=grad_accum,
                            loss_fn=lambda logits, target: ForCausalLMLoss(logits, target, vocab_size=vocab))
    optimizer = torch.optim.AdamW(stage.parameters(), lr=lr)
    from shardsim.launch.measure import peak_without

    losses, grads, probe, peak = [], [], None, 0
    for step in range(steps):
        ids = random_batch(vocab, micro_batch * grad_accum, seq_len, seed, step, replica=0)
        step_losses: list = []
        last = step == steps - 1
        probe = LiveSavedBytes(stage) if last else None
        tracker = activation_tracker([local_shard(p) for p in stage.parameters()]
                                     + optimizer_state_tensors(optimizer.state)) if last else None
        with tracker if last else nullcontext(), probe if last else nullcontext():
            if pp_rank == 0:
                schedule.step(ids)
            elif pp_rank == pp - 1:
                schedule.step(target=ids, losses=step_losses)
            else:
                schedule.step()
        losses.append(sum(float(x.detach().float()) for x in step_losses) / len(step_losses) if step_losses else None)
        if last:
            grads = [local_shard(p.grad) for p in stage.parameters() if p.grad is not None]
            peak = peak_without(tracker, grads)
        optimizer.step()
        if step < steps - 1:
            optimizer.zero_grad(set_to_none=True)
    states = held_states(stage, optimizer, grads, probe.peak if probe is not None else 0, peak)
    states.details = {"framework": "torch-pipelining", "schedule": "1F1B", "world_size": dist.get_world_size(),
                      "pp_rank": pp_rank, "layers": [first_layer, last_layer], "n_microbatches": grad_accum,
                      "tp": mesh["tp"].size(), "losses": losses}
    return states


def run_rank(job, layout, coords) -> TrainStates:
    """The runner protocol of ``shardsim.launch.train.registry``: ``job`` (a ``TrainJob``) on this rank's stage,
    the planner's split of layers (``core.layout.stage_ranges``), TP inside each stage."""
    from shardsim.core.layout import rank_of, stage_ranges

    first, last = stage_ranges(layout)[coords.pp_rank]
    mesh = [[rank_of(layout, t, 0, p) for t in range(layout.tp)] for p in range(layout.pp)]
    return run_torch_pipeline(job.checkpoint_dir, job.steps, job.micro_batch, job.seq_len, job.grad_accum, mesh,
                              coords.pp_rank, first, last, seed=job.seed)
