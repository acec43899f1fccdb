"""HF transformers native tensor / expert parallel backend (runs inside one process per rank).

The caller must already have set RANK / WORLD_SIZE / LOCAL_RANK / MASTER_ADDR / MASTER_PORT and called
``torch.distributed.init_process_group("gloo", ...)`` (transformers reuses an initialised group; it would
otherwise create one itself from the env).

Sharding applied by transformers 5.23 (see ``transformers/distributed/tensor_parallel.py`` and
``Qwen3Config.base_model_tp_plan`` / ``Qwen3ForCausalLM._tp_plan``), tp = tp_size:

  model.embed_tokens.weight      [V, H]      "embedding_rowwise"  Shard(0)  -> ceil-split of V rows (vocab parallel)
  self_attn.q_proj.weight        [nH*d, H]   "colwise"            Shard(0)
  self_attn.k_proj / v_proj      [nKV*d, H]  "colwise"            Shard(0)  (no KV-head replication; see notes)
  self_attn.q_norm / k_norm      [d]         replicated
  self_attn.o_proj.weight        [H, nH*d]   "rowwise"            Shard(1)
  mlp.gate_proj / up_proj        [I, H]      "colwise"            Shard(0)
  mlp.down_proj                  [H, I]      "rowwise"            Shard(1)
  input/post_attention_layernorm, model.norm   replicated
  lm_head.weight                 [V, H]      "colwise_gather_output" Shard(0) (logits all-gathered)
  MoE (tp plan):  mlp.gate.weight (router) [E, H] replicated;
                  mlp.experts.gate_up_proj [E, 2I, H] "packed_colwise" _StridedShard(dim=1, split=2)
                      -> every rank holds [E, 2I/tp, H] (its slice of gate AND of up);
                  mlp.experts.down_proj [E, H, I] "rowwise" Shard(-1) -> [E, H, I/tp]
  MoE (ep_size>1): experts.gate_up_proj / down_proj "grouped_gemm" Shard(0) on the EP mesh
                  -> [E/ep, 2I, H] and [E/ep, H, I] (whole experts, NOT tensor-sharded); dense part still TP.
torch's Shard uses torch.chunk semantics: chunk = ceil(n/tp); rank r gets max(0, min(chunk, n - r*chunk)).

Notes (measured with transformers 5.23 / torch 2.13 CPU / gloo):
  * the embedding is vocab-sharded only because DistributedMixin.init_parallel_plans prepends
    {"embed_tokens": "embedding_rowwise"} whenever the TP plan is non-empty.
  * tied embeddings (tie_word_embeddings=True): lm_head and embed_tokens stay ONE tensor, Shard(0) [V/tp, H].
  * tp > num_key_value_heads is NOT refused at load: k/v_proj are cut mid-head (e.g. kv=2, d=64, tp=4 ->
    [32, H]) and the first forward fails with
    RuntimeError: shape '[2, 16, -1, 64]' is invalid for input of size 1024.  KV heads are never replicated.
  * ep: needs ep % tp == 0 and (fsdp*tp) % ep == 0. EP-only with replicated dense layers (tp_plan={}) raises
    "`tp_size=2` was requested, but `Qwen3MoeForCausalLM` has no `tp_plan`...".
  * on CPU the Shard(0) local tensors are views of the mmapped full checkpoint tensor (storage = full size);
    load_hf_tp(materialize=True) clones them so storage == shard.
"""

from __future__ import annotations

import os
import time
from typing import Any

import torch


def _dtensor_cls():
    try:
        from torch.distributed.tensor import DTensor

        return DTensor
    except Exception:  # pragma: no cover
        return None


def load_hf_tp(
    checkpoint_dir: str,
    tp: int,
    ep: int = 1,
    *,
    dtype: torch.dtype = torch.bfloat16,
    attn_implementation: str = "sdpa",
    ep_implementation: str = "auto",
    fsdp: int = 1,
    materialize: bool = True,
    **extra: Any,
) -> torch.nn.Module:
    """Load a local Qwen3 / Qwen3-MoE checkpoint sharded with transformers' native TP (+ EP).

    tp == 1 and ep == 1: a plain single-process load (no DistributedConfig).
    ep > 1: requires ep == tp (transformers: ep % tp == 0 and (fsdp*tp) % ep == 0, fsdp == 1 here);
    dense layers are then TP-sharded and whole experts are split over the same ranks.
    fsdp > 1 (optional, world = tp * fsdp): FSDP2-shard every parameter on dim 0 (gathered per layer at
    forward); with ep == fsdp * tp the experts are split by expert. E.g. tp=1, fsdp=2, ep=2.
    materialize: on CPU transformers leaves Shard(0) local shards as views into the mmapped full checkpoint
    tensor; clone them into their own storage so each rank holds exactly its shard (as it would on a GPU).
    """
    if not os.path.isdir(checkpoint_dir):
        raise FileNotFoundError(f"not a local checkpoint directory: {checkpoint_dir}")
    kwargs: dict[str, Any] = dict(dtype=dtype, local_files_only=True, attn_implementation=attn_implementation)
    kwargs.update(extra)
    if tp > 1 or ep > 1 or fsdp > 1:
        from transformers.distributed import DistributedConfig

        if ep > 1 and (ep % tp or (fsdp * tp) % ep):
            raise ValueError(
                f"transformers needs ep % tp == 0 and (fsdp*tp) % ep == 0 (got tp={tp}, fsdp={fsdp}, ep={ep}); "
                "without FSDP that means ep == tp."
            )
        kwargs["distributed_config"] = DistributedConfig(
            tp_size=tp,
            tp_plan="auto" if tp > 1 else None,
            fsdp_size=fsdp,
            ep_size=ep if ep > 1 else None,
            ep_implementation=ep_implementation,
        )
    model, info = _model_class(checkpoint_dir).from_pretrained(checkpoint_dir, output_loading_info=True, **kwargs)
    _check_loading_info(checkpoint_dir, info)
    model.eval()
    if materialize and fsdp == 1:  # FSDP2 owns its sharded params (padded flat storage); never swap them
        _materialize_local_shards(model)
    return model


def _check_loading_info(checkpoint_dir: str, info: dict) -> None:
    """Refuse a load that left a parameter at its random init or a checkpoint tensor unread (transformers v5.25.0
    ``utils/loading_report.py`` ``LoadStateDictInfo.to_dict``: missing, unexpected and mismatched keys; the keys a
    model ignores on purpose, ``mtp.*``, are not listed)."""
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        keys = sorted(map(str, info.get(kind) or ()))
        if keys:
            raise RuntimeError(f"transformers loaded {checkpoint_dir} with {len(keys)} {kind.replace('_', ' ')} "
                               f"(first: {keys[0]}): the checkpoint's names are not the model's")


def _model_class(checkpoint_dir: str):
    """The class the checkpoint's config names (``architectures[0]``): Qwen3_5ForConditionalGeneration loads its
    vision tower, which AutoModelForCausalLM (``Qwen3_5ForCausalLM``) would drop; for Qwen3, Qwen3-MoE and
    Qwen3-Next it is the class AutoModelForCausalLM picks (transformers v5.25.0 ``models/auto/modeling_auto.py``)."""
    import transformers
    from transformers import AutoConfig, AutoModelForCausalLM

    archs = getattr(AutoConfig.from_pretrained(checkpoint_dir, local_files_only=True), "architectures", None) or []
    return getattr(transformers, archs[0], AutoModelForCausalLM) if archs else AutoModelForCausalLM


@torch.no_grad()
def _materialize_local_shards(model: torch.nn.Module) -> int:
    """Give every parameter whose local tensor is a view of a larger storage its own storage (keeps ties).
    Returns the number of parameters replaced."""
    DTensor = _dtensor_cls()
    replaced: dict[int, torch.nn.Parameter] = {}
    for mod in model.modules():
        for name, p in list(mod._parameters.items()):
            if p is None:
                continue
            if id(p) in replaced:
                mod._parameters[name] = replaced[id(p)]
                continue
            local = _local(p)
            if local.device.type == "meta" or local.untyped_storage().nbytes() <= local.numel() * local.element_size():
                continue
            new_local = local.clone(memory_format=torch.contiguous_format)
            if DTensor is not None and isinstance(p, DTensor):
                new = DTensor.from_local(
                    new_local, p.device_mesh, p.placements, run_check=False, shape=p.shape, stride=p.stride()
                )
            else:
                new = new_local
            newp = torch.nn.Parameter(new, requires_grad=p.requires_grad)
            for attr in ("_is_hf_initialized",):
                if hasattr(p, attr):
                    setattr(newp, attr, getattr(p, attr))
            replaced[id(p)] = newp
            mod._parameters[name] = newp
    return len(replaced)


def _local(t: torch.Tensor) -> torch.Tensor:
    DTensor = _dtensor_cls()
    if DTensor is not None and isinstance(t, DTensor):
        return t.to_local()
    return t


def _sum_tensor_bytes(tensors, storage: bool = False) -> int:
    """Sum bytes of (local) tensors, each distinct memory region once.

    storage=False (default): numel * element_size of each distinct view (dedupe by data_ptr/shape) -- what the
    rank would hold on a GPU, where the local shard is copied to its own allocation.
    storage=True: nbytes of each distinct underlying storage (dedupe by storage ptr). On CPU transformers keeps
    Shard(0) slices as views into the mmapped safetensors tensor, so this can be up to tp x larger.
    """
    seen: dict = {}
    for t in tensors:
        if t is None:
            continue
        t = _local(t)
        if t.device.type == "meta" or t.numel() == 0:
            continue
        if storage:
            s = t.untyped_storage()
            k, n = (t.device.type, s.data_ptr()), s.nbytes()
        else:
            k, n = (t.device.type, t.data_ptr(), tuple(t.shape), tuple(t.stride())), t.numel() * t.element_size()
        seen[k] = max(seen.get(k, 0), n)
    return sum(seen.values())


def hf_cache_bytes(cache) -> int:
    """Bytes of KV storage held by this rank (DynamicCache / StaticCache; keys+values of every layer)."""
    tensors = []
    layers = getattr(cache, "layers", None)
    if layers is not None:
        for layer in layers:
            tensors += [getattr(layer, "keys", None), getattr(layer, "values", None)]
    else:  # legacy
        tensors += list(getattr(cache, "key_cache", [])) + list(getattr(cache, "value_cache", []))
    return _sum_tensor_bytes(tensors, storage=True)


def hf_state_tensors(cache) -> list:
    """The linear-attention layers' conv and recurrent states of a hybrid cache (``LinearAttentionLayer``:
    ``conv_states`` and ``recurrent_states`` per state index; transformers v5.25.0 ``cache_utils.py`` L1079-1342)."""
    out = []
    for layer in getattr(cache, "layers", None) or []:
        for states in (getattr(layer, "conv_states", None), getattr(layer, "recurrent_states", None)):
            out += [t for t in (states or {}).values() if t is not None]
    return out


def hf_param_bytes(model: torch.nn.Module, include_buffers: bool = False, storage: bool = False) -> int:
    """Bytes of parameters (optionally + buffers) held by THIS rank; DTensors count their local shard,
    shared tensors (tied embeddings) are counted once. storage=True counts whole underlying storages instead
    (see _sum_tensor_bytes; relevant on CPU where shards may be views of the mmapped checkpoint)."""
    ts = [p for _, p in model.named_parameters(remove_duplicate=False)]
    if include_buffers:
        ts += [b for _, b in model.named_buffers(remove_duplicate=False)]
    return _sum_tensor_bytes(ts, storage=storage)


def load_rank(worker, checkpoint) -> int:
    """The runner protocol of ``shardsim.launch.serve.registry``: transformers' TP/EP shard of ``checkpoint`` (a
    ``CheckpointFacts``) into ``worker.model``; returns the bytes of its parameters."""
    worker.model = load_hf_tp(str(checkpoint.path), worker.layout.tp, worker.layout.ep)
    return hf_param_bytes(worker.model)


def forward_rank(worker, prompt: list[list[int]], context: int, decode_steps: int, block_size: int) -> dict:
    """Prefill (logits of the last position only, as ``generate`` does) and greedy decode with a DynamicCache;
    activation peak tracked over the prefill. ``context`` and ``block_size`` are the torch backend's: the cache
    grows to exactly the tokens seen."""
    from shardsim.launch.measure import LiveTensorTracker, peak_without, rss_bytes
    from transformers import DynamicCache

    t0 = time.time()
    model, result = worker.model, worker.result
    tokens = torch.tensor(prompt, dtype=torch.long)
    batch, length = tokens.shape
    cache = DynamicCache(config=model.config)
    hybrid = bool(getattr(model.config.get_text_config(), "layer_types", None)) and "linear_attention" in \
        model.config.get_text_config().layer_types
    params = [p.to_local() if hasattr(p, "to_local") else p for p in model.parameters()]
    step_logits, generated = [], []
    with torch.no_grad():
        for step in range(decode_steps + 1):
            pos = torch.arange(length if step == 0 else 1) + (0 if step == 0 else length + step - 1)
            # hybrids: positions from the cache (Qwen3.5's multimodal rope builds its own 3-D position ids)
            where = {} if hybrid else {"position_ids": pos[None].expand(batch, -1)}
            tracker = LiveTensorTracker(baseline=params, detail=bool(os.environ.get("SHARDSIM_TRACK_DETAIL")))
            if step == 0:
                with tracker:
                    out = model(input_ids=tokens, past_key_values=cache, use_cache=True, logits_to_keep=1, **where)
                # DynamicCache grows by torch.cat inside the pass: its tensors are KV cache (or recurrent state),
                # not activations.
                cache_tensors = [t for layer in cache.layers for t in (getattr(layer, "keys", None),
                                                                       getattr(layer, "values", None))
                                 if t is not None] + hf_state_tensors(cache)
                result["activations"] = peak_without(tracker, cache_tensors)
                if tracker.detail:
                    result["activation_peak_detail"] = tracker.peak_detail
            else:
                out = model(input_ids=tokens, past_key_values=cache, use_cache=True, **where)
            last = out.logits[:, -1].float()
            step_logits.append(last)
            tokens = last.argmax(dim=-1, keepdim=True)
            generated.append([int(t) for t in tokens.view(-1).tolist()])
            cache = out.past_key_values
    result["kv_cache"] = hf_cache_bytes(cache)
    if hybrid:
        result["state"] = _sum_tensor_bytes(hf_state_tensors(cache), storage=True)
    result["forward_s"] = time.time() - t0
    result.update(rss_bytes())
    leader = worker.coords.tp_rank == 0  # one leader per DP replica
    return {"rank": worker.rank, "logits": torch.stack(step_logits, dim=1) if leader else None,
            "generated": generated, "forward_s": result["forward_s"]}
