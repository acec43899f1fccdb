"""DeepSpeed ZeRO-3 inference backend (runs inside one process per rank).

The caller must have set RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT and called
``torch.distributed.init_process_group("gloo", ...)``; deepspeed.comm adopts that group. On the CPU accelerator
(deepspeed 0.19.8) env LOCAL_SIZE must be set, and the first collective JIT-builds the "deepspeed_shm_comm" op
into TORCH_EXTENSIONS_DIR (the driver points it into the build folder).

ZeRO-3 inference (``load_zero3``; measured by ``forward_rank`` below, 0.6B, 4 layers, dp 2):
  * weights: each parameter is padded to a multiple of dp and split evenly, ceil(numel/dp) elements per rank
    (``partition_parameters.py`` ``_partition_param``): exactly shardsim's ``zero3_partition_numel``.
  * gathering is per module (the module's own parameters, ``fetch_sub_module``), not per decoder layer. The first
    forward records the module trace and prefetches nothing: its gathered peak is the largest module, the tied
    embedding (embed_tokens, then lm_head). Later forwards prefetch up to ``stage3_prefetch_bucket_size``
    (5e7 elements) ahead and keep parameters whose reuse distance is below ``stage3_max_reuse_distance`` (1e9
    elements): the tied embedding stays gathered from embed_tokens to lm_head (decode peak 411.8 MB =
    embedding 311.2 MB + ~5e7 elements, against the planner's ``zero_gather`` of two layers, 62.9 MB).
"""

from __future__ import annotations

import os
import time
import weakref
from contextlib import contextmanager

import torch


def prepare_env() -> None:
    """LOCAL_SIZE and LOCAL_RANK as DeepSpeed's CPU accelerator needs them, from the launcher's variables."""
    if "LOCAL_SIZE" not in os.environ:
        os.environ["LOCAL_SIZE"] = os.environ.get("LOCAL_WORLD_SIZE", os.environ.get("WORLD_SIZE", "1"))
    os.environ.setdefault("LOCAL_RANK", os.environ.get("RANK", "0"))


def _load_full(checkpoint_dir: str, dtype: torch.dtype, attn_implementation: str) -> torch.nn.Module:
    from transformers import AutoModelForCausalLM

    if not os.path.isdir(checkpoint_dir):
        raise FileNotFoundError(f"not a local checkpoint directory: {checkpoint_dir}")
    model = AutoModelForCausalLM.from_pretrained(
        checkpoint_dir, dtype=dtype, local_files_only=True, attn_implementation=attn_implementation
    )
    model.eval()
    return model

def load_zero3(
    checkpoint_dir: str,
    *,
    dtype: torch.dtype = torch.bfloat16,
    attn_implementation: str = "sdpa",
    config: dict | None = None,
):
    """deepspeed.initialize with ZeRO stage 3 (no optimizer) for inference. Returns the engine.

    Every rank loads the full bf16 model on CPU; ``deepspeed.initialize`` (``DeepSpeedZeRoOffload`` →
    ``zero.Init(module=...)``) then partitions every parameter over the data-parallel ranks and frees the full
    copies (``param.data`` becomes an empty placeholder, ``param.ds_tensor`` holds this rank's partition).
    An initialised torch.distributed group (gloo) is reused: ``deepspeed.init_distributed(dist_backend="gloo")``.
    """
    prepare_env()
    import deepspeed
    import torch.distributed as tdist

    if tdist.is_initialized():
        deepspeed.init_distributed(dist_backend=tdist.get_backend(), verbose=False)
    model = _load_full(checkpoint_dir, dtype, attn_implementation)
    cfg = {
        "zero_optimization": {"stage": 3},
        "bf16": {"enabled": dtype == torch.bfloat16},
        "train_micro_batch_size_per_gpu": 1,
    }
    if config:
        cfg.update(config)
    engine, *_ = deepspeed.initialize(model=model, config=cfg)
    engine.eval()
    return engine


def zero3_param_bytes(engine_or_model) -> int:
    """Bytes of the ZeRO-3 partitions (``param.ds_tensor``) this rank holds: the distinct storages behind them
    (a tied embedding is one parameter, counted once). DeepSpeed pads each parameter to a multiple of the dp world
    size, so a partition is ceil(numel / dp) elements (``partition_parameters.py``, ``_partition_param``)."""
    model = getattr(engine_or_model, "module", engine_or_model)
    seen: dict = {}
    for p in model.parameters():
        t = getattr(p, "ds_tensor", None)
        if t is None:
            t = p
        if t.numel() == 0:
            continue
        st = t.untyped_storage()
        seen[st.data_ptr()] = st.nbytes()
    return sum(seen.values())


def _zero3_tracker_cls():
    from shardsim.launch.measure import LiveTensorTracker

    class ZeroGatherTracker(LiveTensorTracker):
        """``LiveTensorTracker`` that keeps the parameters ZeRO-3 all-gathers out of the activation peak.

        Storages created while DeepSpeed fetches a module's parameters (``PartitionedParameterCoordinator.
        fetch_sub_module``: the all-gather buffers that ``param.data`` then views, plus any prefetch) are summed
        apart: ``peak`` stays the activation peak (no gathered parameter in it), ``gather_peak`` is the peak of
        the gathered parameters alive at once. Views of a gathered buffer (``weight.t()`` in a linear) share its
        storage and are never counted as activations. Use with ``track_zero3_gathers(tracker)``.
        """

        def __init__(self, baseline=(), detail: bool = False):
            super().__init__(baseline=baseline, detail=detail)
            self.gathering = 0
            self.gather_live = 0
            self.gather_peak = 0
            self._gathered: dict[int, tuple] = {}

        def _gather_freed(self, key: int) -> None:
            entry = self._gathered.pop(key, None)
            if entry is not None:
                self.gather_live -= entry[0]

        def _seen(self, key: int) -> bool:
            return key in self._tracked or key in self._gathered

        def _record(self, st, key: int, func, t) -> None:
            if not self.gathering:
                super()._record(st, key, func, t)
                return
            ref = weakref.ref(st, lambda _r, k=key: self._gather_freed(k))
            self._gathered[key] = (st.nbytes(), ref)
            self.gather_live += st.nbytes()
            self.gather_peak = max(self.gather_peak, self.gather_live)

    return ZeroGatherTracker


def zero3_tracker(baseline=(), detail: bool = False):
    """A ``ZeroGatherTracker`` (see ``_zero3_tracker_cls``)."""
    return _zero3_tracker_cls()(baseline=baseline, detail=detail)


class GatheredParams:
    """The bytes of gathered parameters resident on this rank, sampled each time DeepSpeed has fetched a module's
    parameters (its all-gather launched, prefetches included): distinct ``param.data`` storages of the ZeRO-3
    parameters that are materialised (a released parameter's ``data`` is an empty placeholder). Unlike a
    tracker, this also sees parameters kept gathered from an earlier forward (``ds_persist`` ones, below
    ``stage3_param_persistence_threshold``, and those whose reuse distance is below ``stage3_max_reuse_distance``)."""

    def __init__(self, engine_or_model):
        model = getattr(engine_or_model, "module", engine_or_model)
        self.params = [p for p in model.parameters() if getattr(p, "ds_tensor", None) is not None]
        self.peak = 0

    def sample(self) -> int:
        seen: dict = {}
        for p in self.params:
            if p.data.numel():
                st = p.data.untyped_storage()
                seen[st.data_ptr()] = st.nbytes()
        now = sum(seen.values())
        self.peak = max(self.peak, now)
        return now


@contextmanager
def track_zero3_gathers(tracker=None, probe: GatheredParams | None = None):
    """While active, every ``fetch_sub_module`` of DeepSpeed's parameter coordinator runs with
    ``tracker.gathering`` set, so what it allocates is booked as gathered parameters, not activations; after each
    fetch ``probe`` (a ``GatheredParams``) samples the gathered parameters resident."""
    from deepspeed.runtime.zero.partitioned_param_coordinator import PartitionedParameterCoordinator as Coordinator

    original = Coordinator.fetch_sub_module

    def fetch_sub_module(self, *args, **kwargs):
        if tracker is not None:
            tracker.gathering += 1
        try:
            return original(self, *args, **kwargs)
        finally:
            if tracker is not None:
                tracker.gathering -= 1
            if probe is not None:
                probe.sample()

    Coordinator.fetch_sub_module = fetch_sub_module
    try:
        yield tracker
    finally:
        Coordinator.fetch_sub_module = original


def zero3_partitions(engine_or_model) -> list[torch.Tensor]:
    """This rank's ZeRO-3 partitions (``param.ds_tensor``), one per parameter."""
    model = getattr(engine_or_model, "module", engine_or_model)
    return [p.ds_tensor for p in model.parameters() if getattr(p, "ds_tensor", None) is not None]


def load_rank(worker, checkpoint) -> int:
    """The runner protocol of ``shardsim.launch.serve.registry``: ZeRO-3 inference. Every rank loads the full model
    from ``checkpoint`` (a ``CheckpointFacts``), deepspeed.initialize partitions each parameter over the dp ranks
    (the process group of the worker's setup is reused) and frees the full copies; the engine goes to
    ``worker.model``. Returns the bytes of this rank's partitions."""
    worker.model = load_zero3(str(checkpoint.path))
    return zero3_param_bytes(worker.model)


def forward_rank(worker, prompt: list[list[int]], context: int, decode_steps: int, block_size: int) -> dict:
    """As transformers' (prefill keeping the last position's logits, greedy decode with a DynamicCache) through the
    engine, whose hooks all-gather each module's parameters before it runs and free them after. Every rank runs
    the same prompt (its own DP replica) and returns its logits.

    Activations: the prefill's live-tensor peak without the cache tensors and without the gathered parameters:
    storages allocated inside DeepSpeed's ``fetch_sub_module`` are booked apart, and their peak is reported as
    ``zero_gather`` (``ZeroGatherTracker``)."""
    from shardsim.launch.backends.hf_tp import hf_cache_bytes
    from shardsim.launch.measure import peak_without, rss_bytes
    from transformers import DynamicCache

    t0 = time.time()
    engine, result = worker.model, worker.result
    tokens = torch.tensor(prompt, dtype=torch.long)
    batch, length = tokens.shape
    cache = DynamicCache(config=engine.module.config)
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
                result["activations"] = peak_without(tracker, cache_tensors)
                result["zero_gather"] = tracker.gather_peak
                result["zero_gather_params_prefill"] = probe.peak
                if tracker.detail:
                    result["activation_peak_detail"] = tracker.peak_detail
            else:
                with track_zero3_gathers(None, probe):
                    out = engine(**kwargs)
            last = out.logits[:, -1].float()
            step_logits.append(last)
            tokens = last.argmax(dim=-1, keepdim=True)
            generated.append([int(t) for t in tokens.view(-1).tolist()])
            cache = out.past_key_values
    result["zero_gather_params_max"] = probe.peak  # over the prefill and the decode steps
    result["kv_cache"] = hf_cache_bytes(cache)
    result["forward_s"] = time.time() - t0
    result.update(rss_bytes())
    leader = worker.coords.tp_rank == 0  # tp = 1: every rank is the leader of its DP replica
    return {"rank": worker.rank, "logits": torch.stack(step_logits, dim=1) if leader else None,
            "generated": generated, "forward_s": result["forward_s"]}
