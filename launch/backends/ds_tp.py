"""DeepSpeed AutoTP (inference tensor parallel) and ZeRO-3 backends (run inside one process per rank).

The caller must have set RANK / WORLD_SIZE / LOCAL_RANK / LOCAL_SIZE / MASTER_ADDR / MASTER_PORT and called
``torch.distributed.init_process_group("gloo", ...)``; deepspeed.comm adopts that group.

Known CPU specifics (deepspeed 0.19.8, CPU accelerator):
  * env LOCAL_SIZE must be set, otherwise init_inference with tensor parallel segfaults.
  * the first inference all-reduce JIT-builds the "deepspeed_shm_comm" op into TORCH_EXTENSIONS_DIR
    (set here to /work/main/build/torch_extensions unless already set).

AutoTP sharding of Qwen3 / Qwen3-MoE (replace_with_kernel_inject=False), tp = tp_size; see report / SHARDING below.
"""

from __future__ import annotations

import os
from typing import Any

import torch

DEFAULT_EXT_DIR = "/work/main/build/torch_extensions"

# How AutoTP (deepspeed 0.19.8) shards each Qwen3 tensor (inference, no partition_config); sizes follow
# deepspeed.module_inject.tp_shard.get_shard_size, reproduced by autotp_shard_size() below:
SHARDING = {
    "model.embed_tokens.weight": "replicated (outside the decoder layers; never touched)",
    "self_attn.q_proj/k_proj/v_proj.weight": "LinearLayer, dim 0, by KV-head groups: rank r gets "
    "total*kv_r//n_kv rows, kv_r = n_kv//tp + (r < n_kv%tp). tp > n_kv is accepted: ranks >= n_kv get 0 rows "
    "(no attention, no KV cache)",
    "self_attn.o_proj.weight": "LinearAllreduce, dim 1, same KV-head rule",
    "self_attn.q_norm/k_norm, input/post_attention_layernorm, model.norm": "replicated",
    "mlp.gate_proj/up_proj.weight": "LinearLayer, dim 0, grain rule (tp_grain_size=64)",
    "mlp.down_proj.weight": "LinearAllreduce, dim 1, grain rule",
    "lm_head.weight": "LmHeadLinearAllreduce, dim 1 (hidden), grain rule; a tied lm_head is cloned first, "
    "so the embedding stays whole/replicated and the head shard is an extra tensor",
    "MoE mlp.gate (router, Qwen3MoeTopKRouter)": "replicated",
    "MoE mlp.experts.gate_up_proj/down_proj (3-D params)": "replicated (AutoTP only replaces nn.Linear)",
}


def autotp_shard_size(total: int, tp: int, rank: int, *, kind: str, n_kv: int | None = None, grain: int = 64) -> int:
    """Rows/cols of a dimension of size ``total`` that AutoTP gives TP rank ``rank``.
    kind: "attn" (q/k/v/o projections: KV-head rule) or "other" (mlp, lm_head: grain rule)."""
    if kind == "attn" and n_kv is not None and total % n_kv == 0:
        kv_r = n_kv // tp + (1 if rank < n_kv % tp else 0)
        return total * kv_r // n_kv
    if total >= grain:
        g, rem = divmod(total, grain)
        size = (g // tp + (1 if rank < g % tp else 0)) * grain
        return size + (rem if rank == tp - 1 else 0)
    return total // tp + (1 if rank < total % tp else 0)


def _prepare_env() -> None:
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", DEFAULT_EXT_DIR)
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


def load_ds_tp(
    checkpoint_dir: str,
    tp: int,
    *,
    dtype: torch.dtype = torch.bfloat16,
    attn_implementation: str = "sdpa",
    own_storage: bool = True,
    **init_kwargs: Any,
) -> torch.nn.Module:
    """Every rank loads the full bf16 model on CPU, then deepspeed.init_inference (AutoTP) keeps this
    rank's shards. Returns the (unwrapped) HF module, usable with run_hf / model(...).

    own_storage: parameters AutoTP leaves replicated are still views into the mmapped safetensors;
    clone them so the rank owns exactly what param bytes report (as on a GPU).
    """
    _prepare_env()
    import deepspeed

    model = _load_full(checkpoint_dir, dtype, attn_implementation)
    engine = deepspeed.init_inference(
        model,
        tensor_parallel={"tp_size": tp},
        dtype=dtype,
        replace_with_kernel_inject=False,
        **init_kwargs,
    )
    module = engine.module
    module.__dict__["_ds_inference_engine"] = engine  # keep engine alive; not a submodule (would be a cycle)
    if own_storage:
        _own_storage(module)
    return module


@torch.no_grad()
def _own_storage(model: torch.nn.Module) -> None:
    for p in {id(p): p for p in model.parameters()}.values():
        if p.untyped_storage().nbytes() > p.numel() * p.element_size():
            p.data = p.data.clone()


def _sum_bytes(tensors, storage: bool = False) -> int:
    seen: dict = {}
    for t in tensors:
        if t is None or t.device.type == "meta" or t.numel() == 0:
            continue
        if storage:
            s = t.untyped_storage()
            k, n = s.data_ptr(), s.nbytes()
        else:
            k, n = (t.data_ptr(), tuple(t.shape), tuple(t.stride())), t.numel() * t.element_size()
        seen[k] = max(seen.get(k, 0), n)
    return sum(seen.values())


def ds_param_bytes(model: torch.nn.Module, storage: bool = False, include_buffers: bool = False) -> int:
    """Bytes of parameters this rank holds after AutoTP (tied/shared tensors counted once)."""
    ts = [p for _, p in model.named_parameters(remove_duplicate=False)]
    if include_buffers:
        ts += [b for _, b in model.named_buffers(remove_duplicate=False)]
    return _sum_bytes(ts, storage=storage)


def ds_param_layout(model: torch.nn.Module) -> dict[str, tuple]:
    return {n: (type(m).__name__, tuple(p.shape)) for mn, m in model.named_modules() for n0, p in
            m.named_parameters(recurse=False) for n in [f"{mn}.{n0}" if mn else n0]}


# ----------------------------------------------------------------------------------------- ZeRO-3
def load_zero3(
    checkpoint_dir: str,
    *,
    dtype: torch.dtype = torch.bfloat16,
    attn_implementation: str = "sdpa",
    config: dict | None = None,
):
    """deepspeed.initialize with ZeRO stage 3 (no optimizer) for inference. Returns the engine."""
    _prepare_env()
    import deepspeed

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
    """Bytes of ZeRO-3 partitions (param.ds_tensor) this rank holds (padding included)."""
    model = getattr(engine_or_model, "module", engine_or_model)
    seen = {}
    for p in model.parameters():
        t = getattr(p, "ds_tensor", None)
        if t is None:
            t = p
        seen[id(t)] = t.numel() * t.element_size()
    return sum(seen.values())


def zero3_resident_param_bytes(engine_or_model) -> int:
    """ds_tensor partitions + full copies currently materialised in param.data (after a forward these are
    the ds_persist params: ds_numel <= stage3_param_persistence_threshold (default 1e5), kept gathered on
    every rank; the others are released back to an empty placeholder)."""
    model = getattr(engine_or_model, "module", engine_or_model)
    tot = zero3_param_bytes(model)
    for p in model.parameters():
        if getattr(p, "ds_tensor", None) is not None and p.data.numel() > 0:
            tot += p.data.numel() * p.data.element_size()
    return tot


def zero3_param_numel_unpadded(engine_or_model) -> int:
    """Sum over params of this rank's share without padding (ds_numel split as ZeRO does)."""
    model = getattr(engine_or_model, "module", engine_or_model)
    import torch.distributed as dist

    ws, r = dist.get_world_size(), dist.get_rank()
    tot = 0
    for p in model.parameters():
        n = getattr(p, "ds_numel", p.numel())
        per = -(-n // ws)
        tot += max(0, min(per, n - r * per))
    return tot
