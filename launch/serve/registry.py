"""The inference backends a validation runs, one record each: where its per-rank runner lives, which layouts it
runs (its refusals, each in one line), and how shardsim predicts it (kernels, the DeepSpeed op it needs built).

Adding a backend is its runner module (``load_rank(worker, checkpoint) -> weight bytes`` and ``forward_rank(worker,
prompt, context, decode_steps, block_size) -> result``) and one line in ``SERVE_BACKENDS``. Imports no torch or
Ray: ``shardsim validate`` refuses a bad request before the validation stack loads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from shardsim.launch.session.request import DEVICES

from shardsim.core.layout import Layout
from shardsim.errors import ShardsimError


@dataclass(frozen=True, slots=True)
class LayoutAsked:
    """What a backend's layout check looks at: the validated layout, the device and the model's facts."""

    layout: Layout
    device: str
    num_kv_heads: int
    moe: bool
    hybrid: bool = False  # Gated-DeltaNet (linear attention) layers: Qwen3-Next, Qwen3.5 / 3.6


@dataclass(frozen=True, slots=True)
class ServeBackend:
    """One inference backend: ``runner`` is the module its workers import (``load_rank``, ``forward_rank``);
    ``check`` refuses the layouts it does not run; ``hf_kernels``: it runs the transformers model (eager kernels, a
    DynamicCache of exactly the tokens seen); ``deepspeed_op``: DeepSpeed's CPU communication op is built before the
    timed phases."""

    name: str
    runner: str
    check: Callable[[LayoutAsked], None]
    hf_kernels: bool = False
    deepspeed_op: bool = False


def check_torch(asked: LayoutAsked) -> None:
    """shardsim's own torch modules: TP/PP/EP by shardsim's rules, EP inside the TP group."""
    layout = asked.layout
    if asked.hybrid:
        raise ShardsimError("the torch backend has no Gated-DeltaNet (linear attention) layers; validate a hybrid "
                            "model with --backend transformers")
    if layout.zero:
        raise ShardsimError("the torch backend shards by TP/PP/EP rules only; use --backend deepspeed for --zero 3")
    if layout.ep > layout.tp:
        raise ShardsimError(f"the torch backend runs EP inside the TP group (ep ≤ tp); --ep {layout.ep} > --tp {layout.tp} is not supported")


def _check_no_pipeline(backend: str, layout: Layout) -> None:
    if layout.pp > 1:
        raise ShardsimError(f"the {backend} backend has no pipeline parallelism; use --pp 1 or --backend torch")


def check_deepspeed(asked: LayoutAsked) -> None:
    """ZeRO-3 inference only: DeepSpeed's AutoTP (init_inference) shards by its own rules (embedding and experts
    replicated, lm_head split on the hidden dim), which are not shardsim's."""
    layout = asked.layout
    if asked.hybrid:
        raise ShardsimError("the deepspeed backend does not validate hybrid models yet; use --backend transformers")
    _check_no_pipeline("deepspeed", layout)
    if layout.zero != 3:
        raise ShardsimError("the deepspeed backend validates ZeRO-3 only (--zero 3 --dp N): DeepSpeed AutoTP shards by rules shardsim does not model (replicated embedding and experts, lm_head split on hidden); use --backend torch or transformers for TP")
    if layout.tp != 1 or layout.pp != 1 or layout.ep != 1:
        raise ShardsimError(f"the deepspeed backend runs ZeRO-3 over data parallel ranks only; use --tp 1 --pp 1 --ep 1 with --dp N (got tp {layout.tp}, pp {layout.pp}, ep {layout.ep})")
    if asked.moe:
        raise ShardsimError("the deepspeed backend does not validate MoE models: transformers fuses the experts into [E, 2I, H] tensors, so ZeRO-3 partitions them differently from the checkpoint's per-expert tensors; use --backend torch or transformers")
    if asked.device != "cpu":
        raise ShardsimError("the deepspeed backend validates on CPU only; use --device cpu")


def check_transformers(asked: LayoutAsked) -> None:
    """transformers' native TP/EP: one replica over all ranks, KV heads never replicated, EP equal to TP."""
    layout, num_kv_heads = asked.layout, asked.num_kv_heads
    _check_no_pipeline("transformers", layout)
    if layout.dp > 1:
        raise ShardsimError("the transformers backend shards one replica over all ranks; use --dp 1 (or --backend torch)")
    if layout.tp > num_kv_heads:
        raise ShardsimError(f"transformers' tensor parallel splits k/v_proj by rows and never replicates KV heads, so --tp above the {num_kv_heads} KV heads fails; use --backend torch")
    if layout.ep > 1 and layout.ep != layout.tp:
        raise ShardsimError(f"transformers' expert parallel needs --ep equal to --tp (got ep {layout.ep}, tp {layout.tp})")


SERVE_BACKENDS: dict[str, ServeBackend] = {
    "torch": ServeBackend("torch", "shardsim.launch.serve.torch_rank", check_torch),
    "deepspeed": ServeBackend("deepspeed", "shardsim.launch.backends.zero3", check_deepspeed, hf_kernels=True,
                              deepspeed_op=True),
    "transformers": ServeBackend("transformers", "shardsim.launch.backends.hf_tp", check_transformers,
                                 hf_kernels=True),
}


def serve_backend(name: str) -> ServeBackend:
    """The record of ``--backend name``, or the refusal naming the accepted ones."""
    if name not in SERVE_BACKENDS:
        raise ShardsimError(f"--backend {name!r} is not known; accepted: {', '.join(SERVE_BACKENDS)}")
    return SERVE_BACKENDS[name]


def check_backend(backend: str, layout: Layout, device: str, num_kv_heads: int, moe: bool,
                  hybrid: bool = False) -> None:
    """The layouts each backend runs, refused with the reason (one rule per backend)."""
    record = serve_backend(backend)
    if device not in DEVICES:
        raise ShardsimError(f"--device {device!r} is not known; accepted: {', '.join(DEVICES)}")
    record.check(LayoutAsked(layout, device, num_kv_heads, moe, hybrid))
