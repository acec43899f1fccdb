"""The torch backend on one rank: shardsim's own shard (``shard_model.RankModel``) loaded from the checkpoint by
shardsim's shard rules, then prefill and greedy decode with the KV cache in whole pages, point-to-point sends
between pipeline stages.

The runner protocol of ``registry.ServeBackend``: ``load_rank`` puts the rank's model on the worker and returns
the bytes of its weights, ``forward_rank`` runs the prompt and returns the forward's result.
"""

from __future__ import annotations

import gc
import os
import time


def load_rank(worker, checkpoint) -> int:
    """Read this rank's slices of ``checkpoint`` (a ``CheckpointFacts``) into ``worker.model``; the bytes held."""
    from shardsim.launch.checkpoints.files import CheckpointReader
    from shardsim.launch.measure import storage_bytes
    from shardsim.launch.serve.shard_model import RankModel

    worker.model = RankModel(worker.spec, worker.layout, worker.coords, rms_eps=checkpoint.rms_eps,
                             rope_theta=checkpoint.rope_theta, norm_topk_prob=checkpoint.norm_topk_prob)
    reader = CheckpointReader(str(checkpoint.path))
    worker.model.load(reader)
    reader.close()
    if worker.device == "cuda":
        import torch

        for key, value in list(worker.model.weights.items()):
            if isinstance(value, list) and value and hasattr(value[0], "to"):
                worker.model.weights[key] = [v.to("cuda") for v in value]
            elif hasattr(value, "to"):
                worker.model.weights[key] = value.to("cuda")
        torch.cuda.synchronize()
    return storage_bytes(worker.model.weight_tensors())


def forward_rank(worker, prompt: list[list[int]], context: int, decode_steps: int, block_size: int) -> dict:
    """Prefill the prompt, then greedy decode steps; the activation peak is tracked over the prefill."""
    import torch
    import torch.distributed as dist
    from shardsim.launch.measure import LiveTensorTracker, rss_bytes, storage_bytes
    from shardsim.launch.serve.shard_model import embed, logits, stage_forward

    t0 = time.time()
    m, g, result = worker.model, worker.groups, worker.result
    dev = "cuda" if worker.device == "cuda" else "cpu"
    batch = len(prompt)
    m.allocate_kv(batch, context, block_size, device=dev)
    result["kv_cache"] = storage_bytes([t for pair in m.kv for t in pair])
    tokens = torch.tensor(prompt, dtype=torch.long, device=dev)
    step_logits, generated = [], []
    pos0 = 0
    hidden = m.spec.hidden_size
    for step in range(decode_steps + 1):
        tracker = LiveTensorTracker(baseline=m.weight_tensors() + [t for pair in m.kv for t in pair],
                                    detail=bool(os.environ.get("SHARDSIM_TRACK_DETAIL")))
        if dev == "cuda":
            torch.cuda.reset_peak_memory_stats()
            base_alloc = torch.cuda.memory_allocated()
        with torch.no_grad():
            if step == 0:
                gc.collect()
                gc.disable()  # frees happen by reference counting only: the tracked peak is deterministic
                tracker.__enter__()
            if m.is_first:
                h = embed(m, tokens, g.tp)
            else:
                h = torch.empty(batch, tokens.shape[1], hidden, dtype=torch.bfloat16, device=dev)
                dist.recv(h, src=g.prev_stage_rank)
            owned = [h]
            del h  # stage_forward takes the only reference, so the stage input is freed when it is consumed
            h = stage_forward(m, owned, pos0, g)
            if not m.is_last:
                dist.send(h, dst=g.next_stage_rank)
                out = None
            else:
                out = logits(m, h[:, -1], g.tp)
            del h
            if step == 0:
                tracker.__exit__(None, None, None)
                gc.enable()
                result["activations"] = tracker.peak
                if tracker.detail:
                    result["activation_peak_detail"] = tracker.peak_detail
                if dev == "cuda":
                    result["cuda_peak_activation"] = torch.cuda.max_memory_allocated() - base_alloc
        next_tokens = out.argmax(dim=-1) if out is not None else torch.zeros(batch, dtype=torch.long, device=dev)
        if out is not None and worker.coords.tp_rank == 0:  # one leader per DP replica
            step_logits.append(out.cpu())
        dist.broadcast(next_tokens, src=g.last_stage_leader)
        generated.append([int(t) for t in next_tokens.tolist()])
        pos0 += tokens.shape[1]
        tokens = next_tokens[:, None]
    result["forward_s"] = time.time() - t0
    result.update(rss_bytes())
    if dev == "cuda":
        result["cuda_max_allocated"] = torch.cuda.max_memory_allocated()
        result["cuda_reserved"] = torch.cuda.memory_reserved()
        free, total = torch.cuda.mem_get_info()
        result["cuda_used"] = total - free
    return {"rank": worker.rank, "logits": torch.stack(step_logits, dim=1) if step_logits else None,
            "generated": generated, "forward_s": result["forward_s"]}
