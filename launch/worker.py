"""One rank of a validation run: joins the process group, loads its shard, runs inference, measures.

The driver wraps ``RankWorker`` in a Ray actor (one per rank) and calls its phases in order: ``setup``, ``load``,
``forward``, ``measure``. Every phase returns plain data so that partial results survive a failure elsewhere.
"""

from __future__ import annotations

import gc
import os
import signal
import time
from datetime import timedelta


class RankWorker:
    def __init__(self, rank: int, world_size: int, env: dict[str, str], fault=None):
        os.environ.update(env)
        self.rank = rank
        self.world_size = world_size
        self.fault = fault
        self.model = None
        self.groups = None
        self.result: dict = {"rank": rank, "pid": os.getpid()}

    def _maybe_fault(self, phase: str) -> None:
        if self.fault is not None and self.fault.rank == self.rank and self.fault.phase == phase:
            os.kill(os.getpid(), signal.SIGSTOP if self.fault.action == "stop" else signal.SIGKILL)

    def setup(self, master_port: int, spec_json: str, layout_args: dict, timeout_s: float, device: str) -> dict:
        """Join the torch.distributed group (gloo on CPU, nccl on CUDA) and build the TP/MoE groups."""
        import torch
        import torch.distributed as dist
        from shardsim.launch.shard_model import Groups

        from shardsim.core.layout import Layout, rank_coords, rank_groups, tp_groups, validate_layout
        from shardsim.core.model import ModelSpec

        self._maybe_fault("setup")
        t0 = time.time()
        torch.set_num_threads(1)
        os.environ.update({"MASTER_ADDR": os.environ.get("MASTER_ADDR", "127.0.0.1"), "MASTER_PORT": str(master_port),
                           "RANK": str(self.rank), "WORLD_SIZE": str(self.world_size)})
        self.device = device
        backend = "nccl" if device == "cuda" else "gloo"
        dist.init_process_group(backend, rank=self.rank, world_size=self.world_size, timeout=timedelta(seconds=timeout_s))
        spec = ModelSpec.model_validate_json(spec_json)
        layout = validate_layout(spec, Layout(**layout_args))
        coords = rank_coords(self.rank, layout)
        mine = rank_groups(self.rank, layout)
        groups = Groups(prev_stage_rank=mine.pp_prev, next_stage_rank=mine.pp_next,
                        last_stage_leader=mine.last_stage_leader)
        # Every rank creates every TP group, in the same order (torch.distributed.new_group's contract).
        for members in tp_groups(layout):
            group = dist.new_group(list(members)) if len(members) > 1 else None
            if members == tuple(mine.tp):
                groups.tp = group
        # The MoE all-reduce sums partial expert outputs over the TP group: the torch backend runs ep ≤ tp.
        groups.moe = groups.tp
        self.spec, self.layout, self.coords, self.groups = spec, layout, coords, groups
        self.result.update({"setup_s": time.time() - t0})
        return {"rank": self.rank, "setup_s": self.result["setup_s"]}

    def load(self, checkpoint_dir: str, rope_theta: float, rms_eps: float, norm_topk_prob: bool,
             backend: str = "torch") -> dict:
        """Read this rank's slices of the checkpoint and count the bytes held."""
        from shardsim.launch.checkpoint import CheckpointReader
        from shardsim.launch.measure import rss_bytes, storage_bytes
        from shardsim.launch.shard_model import RankModel

        self._maybe_fault("load")
        t0 = time.time()
        self.backend = backend
        if backend == "transformers":
            from shardsim.launch.backends.hf_tp import hf_param_bytes, load_hf_tp

            self.hf_model = load_hf_tp(checkpoint_dir, self.layout.tp, self.layout.ep)
            self.result["weights"] = hf_param_bytes(self.hf_model)
            self.result["load_s"] = time.time() - t0
            self.result.update({f"after_load_{k}": v for k, v in rss_bytes().items()})
            return {"rank": self.rank, "weights": self.result["weights"], "load_s": self.result["load_s"]}
        if backend == "deepspeed":
            from shardsim.launch.backends.zero3 import load_zero3, zero3_param_bytes

            # ZeRO-3 inference: every rank loads the full model, deepspeed.initialize partitions each parameter
            # over the dp ranks (the process group set up above is reused) and frees the full copies.
            self.ds_engine = load_zero3(checkpoint_dir)
            self.result["weights"] = zero3_param_bytes(self.ds_engine)
            self.result["load_s"] = time.time() - t0
            self.result.update({f"after_load_{k}": v for k, v in rss_bytes().items()})
            return {"rank": self.rank, "weights": self.result["weights"], "load_s": self.result["load_s"]}
        self.model = RankModel(self.spec, self.layout, self.coords, rms_eps=rms_eps, rope_theta=rope_theta,
                               norm_topk_prob=norm_topk_prob)
        reader = CheckpointReader(checkpoint_dir)
        self.model.load(reader)
        reader.close()
        if self.device == "cuda":
            import torch

            for key, value in list(self.model.weights.items()):
                if isinstance(value, list) and value and hasattr(value[0], "to"):
                    self.model.weights[key] = [v.to("cuda") for v in value]
                elif hasattr(value, "to"):
                    self.model.weights[key] = value.to("cuda")
            torch.cuda.synchronize()
        self.result["weights"] = storage_bytes(self.model.weight_tensors())
        self.result["load_s"] = time.time() - t0
        self.result.update({f"after_load_{k}": v for k, v in rss_bytes().items()})
        return {"rank": self.rank, "weights": self.result["weights"], "load_s": self.result["load_s"]}

    def forward_hf(self, prompt: list[list[int]], decode_steps: int) -> dict:
        """transformers: prefill (logits of the last position only, as ``generate`` does) and greedy decode
        with a DynamicCache; activation peak tracked over the prefill."""
        import torch
        from shardsim.launch.backends.hf_tp import hf_cache_bytes
        from shardsim.launch.measure import LiveTensorTracker, peak_without, rss_bytes
        from transformers import DynamicCache

        t0 = time.time()
        model = self.hf_model
        tokens = torch.tensor(prompt, dtype=torch.long)
        batch, length = tokens.shape
        cache = DynamicCache(config=model.config)
        params = [p.to_local() if hasattr(p, "to_local") else p for p in model.parameters()]
        step_logits, generated = [], []
        with torch.no_grad():
            for step in range(decode_steps + 1):
                pos = torch.arange(length if step == 0 else 1) + (0 if step == 0 else length + step - 1)
                tracker = LiveTensorTracker(baseline=params, detail=bool(os.environ.get("SHARDSIM_TRACK_DETAIL")))
                if step == 0:
                    with tracker:
                        out = model(input_ids=tokens, past_key_values=cache, use_cache=True,
                                    position_ids=pos[None].expand(batch, -1), logits_to_keep=1)
                    # DynamicCache grows by torch.cat inside the pass: its tensors are KV cache, not activations.
                    cache_tensors = [t for layer in cache.layers for t in (layer.keys, layer.values) if t is not None]
                    self.result["activations"] = peak_without(tracker, cache_tensors)
                    if tracker.detail:
                        self.result["activation_peak_detail"] = tracker.peak_detail
                else:
                    out = model(input_ids=tokens, past_key_values=cache, use_cache=True,
                                position_ids=pos[None].expand(batch, -1))
                last = out.logits[:, -1].float()
                step_logits.append(last)
                tokens = last.argmax(dim=-1, keepdim=True)
                generated.append([int(t) for t in tokens.view(-1).tolist()])
                cache = out.past_key_values
        self.result["kv_cache"] = hf_cache_bytes(cache)
        self.result["forward_s"] = time.time() - t0
        self.result.update(rss_bytes())
        leader = self.coords.tp_rank == 0  # one leader per DP replica
        return {"rank": self.rank, "logits": torch.stack(step_logits, dim=1) if leader else None,
                "generated": generated, "forward_s": self.result["forward_s"]}

    def forward_ds(self, prompt: list[list[int]], decode_steps: int) -> dict:
        """DeepSpeed ZeRO-3: as ``forward_hf`` (prefill keeping the last position's logits, greedy decode with a
        DynamicCache) through the engine, whose hooks all-gather each module's parameters before it runs and free
        them after. Every rank runs the same prompt (its own DP replica) and returns its logits.

        Activations: the prefill's live-tensor peak without the cache tensors and without the gathered
        parameters: storages allocated inside DeepSpeed's ``fetch_sub_module`` are booked apart, and their peak
        is reported as ``zero_gather`` (``launch/backends/zero3.py``, ``ZeroGatherTracker``)."""
        import torch
        from shardsim.launch.backends.hf_tp import hf_cache_bytes
        from shardsim.launch.backends.zero3 import GatheredParams, track_zero3_gathers, zero3_partitions, zero3_tracker
        from shardsim.launch.measure import peak_without, rss_bytes
        from transformers import DynamicCache

        t0 = time.time()
        engine = self.ds_engine
        config = engine.module.config
        tokens = torch.tensor(prompt, dtype=torch.long)
        batch, length = tokens.shape
        cache = DynamicCache(config=config)
        probe = GatheredParams(engine)
        step_logits, generated = [], []
        with torch.no_grad():
            for step in range(decode_steps + 1):
                pos = torch.arange(length if step == 0 else 1) + (0 if step == 0 else length + step - 1)
                kwargs = dict(input_ids=tokens, past_key_values=cache, use_cache=True,
                              position_ids=pos[None].expand(batch, -1))
                if step == 0:
                    tracker = zero3_tracker(baseline=zero3_partitions(engine),
                                            detail=bool(os.environ.get("SHARDSIM_TRACK_DETAIL")))
                    with track_zero3_gathers(tracker, probe), tracker:
                        out = engine(**kwargs, logits_to_keep=1)
                    cache_tensors = [t for layer in cache.layers for t in (layer.keys, layer.values) if t is not None]
                    self.result["activations"] = peak_without(tracker, cache_tensors)
                    self.result["zero_gather"] = tracker.gather_peak
                    self.result["zero_gather_params_prefill"] = probe.peak
                    if tracker.detail:
                        self.result["activation_peak_detail"] = tracker.peak_detail
                else:
                    with track_zero3_gathers(None, probe):
                        out = engine(**kwargs)
                last = out.logits[:, -1].float()
                step_logits.append(last)
                tokens = last.argmax(dim=-1, keepdim=True)
                generated.append([int(t) for t in tokens.view(-1).tolist()])
                cache = out.past_key_values
        self.result["zero_gather_params_max"] = probe.peak  # over the prefill and the decode steps
        self.result["kv_cache"] = hf_cache_bytes(cache)
        self.result["forward_s"] = time.time() - t0
        self.result.update(rss_bytes())
        leader = self.coords.tp_rank == 0  # tp = 1: every rank is the leader of its DP replica
        return {"rank": self.rank, "logits": torch.stack(step_logits, dim=1) if leader else None,
                "generated": generated, "forward_s": self.result["forward_s"]}

    def forward(self, prompt: list[list[int]], context: int, decode_steps: int, block_size: int) -> dict:
        """Prefill the prompt, then greedy decode steps; the activation peak is tracked over the prefill."""
        import torch
        import torch.distributed as dist
        from shardsim.launch.measure import LiveTensorTracker, rss_bytes, storage_bytes
        from shardsim.launch.shard_model import embed, logits, stage_forward

        self._maybe_fault("forward")
        if getattr(self, "backend", "torch") == "transformers":
            return self.forward_hf(prompt, decode_steps)
        if getattr(self, "backend", "torch") == "deepspeed":
            return self.forward_ds(prompt, decode_steps)
        t0 = time.time()
        m, g = self.model, self.groups
        dev = "cuda" if self.device == "cuda" else "cpu"
        batch = len(prompt)
        m.allocate_kv(batch, context, block_size, device=dev)
        self.result["kv_cache"] = storage_bytes([t for pair in m.kv for t in pair])
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
                    self.result["activations"] = tracker.peak
                    if tracker.detail:
                        self.result["activation_peak_detail"] = tracker.peak_detail
                    if dev == "cuda":
                        self.result["cuda_peak_activation"] = torch.cuda.max_memory_allocated() - base_alloc
            next_tokens = out.argmax(dim=-1) if out is not None else torch.zeros(batch, dtype=torch.long, device=dev)
            if out is not None and self.coords.tp_rank == 0:  # one leader per DP replica
                step_logits.append(out.cpu())
            dist.broadcast(next_tokens, src=g.last_stage_leader)
            generated.append([int(t) for t in next_tokens.tolist()])
            pos0 += tokens.shape[1]
            tokens = next_tokens[:, None]
        self.result["forward_s"] = time.time() - t0
        self.result.update(rss_bytes())
        if dev == "cuda":
            self.result["cuda_max_allocated"] = torch.cuda.max_memory_allocated()
            self.result["cuda_reserved"] = torch.cuda.memory_reserved()
            free, total = torch.cuda.mem_get_info()
            self.result["cuda_used"] = total - free
        return {"rank": self.rank, "logits": torch.stack(step_logits, dim=1) if step_logits else None,
                "generated": generated, "forward_s": self.result["forward_s"]}

    def train(self, checkpoint_dir: str, framework: str, options: dict, steps: int, micro_batch: int,
              seq_len: int, seed: int) -> dict:
        """Real training steps on this rank through DeepSpeed ZeRO (``options["zero"]``), FSDP2 through accelerate
        (``options["fsdp"]``) or torch-native TP / pipelining (``options["grad_accum"]`` micro-batches a step);
        what the framework holds afterwards (``launch/train_states.TrainStates``)."""
        self._maybe_fault("train")
        t0 = time.time()
        if framework == "deepspeed":
            from shardsim.launch.backends.train_ds import run_deepspeed

            states = run_deepspeed(checkpoint_dir, options["zero"], steps, micro_batch, seq_len, seed=seed)
        elif framework == "torch" and self.layout.pp > 1:
            from shardsim.launch.backends.train_pp import run_torch_pipeline

            from shardsim.core.layout import rank_of, stage_ranges

            lay = self.layout
            first, last = stage_ranges(lay)[self.coords.pp_rank]
            mesh = [[rank_of(lay, t, 0, p) for t in range(lay.tp)] for p in range(lay.pp)]
            states = run_torch_pipeline(checkpoint_dir, steps, micro_batch, seq_len, options["grad_accum"], mesh,
                                        self.coords.pp_rank, first, last, seed=seed)
        elif framework == "torch":
            from shardsim.launch.backends.train_tp import run_torch_tp

            states = run_torch_tp(checkpoint_dir, steps, micro_batch, seq_len, seed=seed)
        else:
            from shardsim.launch.backends.train_fsdp import run_fsdp

            states = run_fsdp(checkpoint_dir, steps, micro_batch, seq_len, seed=seed,
                              reshard_after_forward=options["fsdp"] != "grad-op")
        return {"rank": self.rank, "train_s": time.time() - t0, **states.as_dict()}

    def measure(self) -> dict:
        return dict(self.result)

    def shutdown(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
