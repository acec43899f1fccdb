"""A validation request, checked before anything heavy starts: the backend's layouts, the ranges, the build folder.

Imports no torch or Ray at module level: ``shardsim validate`` refuses a bad request with one line even where the
validation stack is not installed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from shardsim.core.layout import Layout
from shardsim.errors import ShardsimError

BACKENDS = ("torch", "deepspeed", "transformers")
DEVICES = ("cpu", "cuda")
MAX_RANKS = 64
ENV_CACHE = "SHARDSIM_CACHE"
RUNS_FOLDER = "shardsim-runs"


def cache_dir() -> Path:
    """Where written checkpoints and compiled extensions are kept between runs: ``$SHARDSIM_CACHE``, else
    ``$XDG_CACHE_HOME/shardsim`` (default ``~/.cache/shardsim``), never the installed package's folder."""
    env = os.environ.get(ENV_CACHE, "").strip()
    if env:
        return Path(env).expanduser()
    cache = os.environ.get("XDG_CACHE_HOME", "").strip() or str(Path.home() / ".cache")
    return Path(cache).expanduser() / "shardsim"


def runs_dir() -> Path:
    """Where a run's record goes without ``--run-dir``: ``shardsim-runs/`` in the current folder."""
    return Path.cwd() / RUNS_FOLDER


def check_backend(backend: str, layout: Layout, device: str, num_kv_heads: int, moe: bool) -> None:
    """The layouts each backend runs, refused with the reason (one rule per backend)."""
    if backend not in BACKENDS:
        raise ShardsimError(f"--backend {backend!r} is not known; accepted: {', '.join(BACKENDS)}")
    if device not in DEVICES:
        raise ShardsimError(f"--device {device!r} is not known; accepted: {', '.join(DEVICES)}")
    if backend == "torch":
        if layout.zero:
            raise ShardsimError("the torch backend shards by TP/PP/EP rules only; use --backend deepspeed for --zero 3")
        if layout.ep > layout.tp:
            raise ShardsimError(f"the torch backend runs EP inside the TP group (ep ≤ tp); --ep {layout.ep} > --tp {layout.tp} is not supported")
    if backend in ("transformers", "deepspeed") and layout.pp > 1:
        raise ShardsimError(f"the {backend} backend has no pipeline parallelism; use --pp 1 or --backend torch")
    if backend == "deepspeed":
        _check_deepspeed(layout, device, moe)
    if backend == "transformers":
        if layout.dp > 1:
            raise ShardsimError("the transformers backend shards one replica over all ranks; use --dp 1 (or --backend torch)")
        if layout.tp > num_kv_heads:
            raise ShardsimError(f"transformers' tensor parallel splits k/v_proj by rows and never replicates KV heads, so --tp above the {num_kv_heads} KV heads fails; use --backend torch")
        if layout.ep > 1 and layout.ep != layout.tp:
            raise ShardsimError(f"transformers' expert parallel needs --ep equal to --tp (got ep {layout.ep}, tp {layout.tp})")


def _check_deepspeed(layout: Layout, device: str, moe: bool) -> None:
    # ZeRO-3 inference only: DeepSpeed's AutoTP (init_inference) shards by its own rules (embedding and experts
    # replicated, lm_head split on the hidden dim), which are not shardsim's.
    if layout.zero != 3:
        raise ShardsimError("the deepspeed backend validates ZeRO-3 only (--zero 3 --dp N): DeepSpeed AutoTP shards by rules shardsim does not model (replicated embedding and experts, lm_head split on hidden); use --backend torch or transformers for TP")
    if layout.tp != 1 or layout.pp != 1 or layout.ep != 1:
        raise ShardsimError(f"the deepspeed backend runs ZeRO-3 over data parallel ranks only; use --tp 1 --pp 1 --ep 1 with --dp N (got tp {layout.tp}, pp {layout.pp}, ep {layout.ep})")
    if moe:
        raise ShardsimError("the deepspeed backend does not validate MoE models: transformers fuses the experts into [E, 2I, H] tensors, so ZeRO-3 partitions them differently from the checkpoint's per-expert tensors; use --backend torch or transformers")
    if device != "cpu":
        raise ShardsimError("the deepspeed backend validates on CPU only; use --device cpu")


def check_run(layout: Layout, context: int, decode_steps: int, batch: int, timeout: float) -> None:
    """Ranges of a validation run."""
    if not 2 <= context <= 65536:
        raise ShardsimError(f"--context {context} is out of range for a validation run; accepted: 2 … 65536")
    if not 0 <= decode_steps < context:
        raise ShardsimError(f"--decode-steps {decode_steps} must be ≥ 0 and below --context {context}")
    if not 1 <= timeout <= 86400:
        raise ShardsimError(f"--timeout {timeout} is out of range; accepted: 1 … 86400 seconds")
    if not 1 <= batch <= 256:
        raise ShardsimError(f"--batch {batch} is out of range for a validation run; accepted: 1 … 256")
    if layout.world_size > MAX_RANKS:
        raise ShardsimError(f"validation runs up to {MAX_RANKS} ranks; this layout has {layout.world_size}")


@dataclass(frozen=True, slots=True)
class Fault:
    """A worker to kill (SIGKILL) or freeze (SIGSTOP) on purpose, in tests of the fault handling."""

    rank: int
    phase: str
    action: str = "kill"


def parse_fault(text: str | None) -> Fault | None:
    if not text:
        return None
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0].isdigit() or parts[1] not in ("setup", "load", "forward") \
            or (len(parts) == 3 and parts[2] not in ("kill", "stop")):
        raise ShardsimError("--inject-fault takes RANK:PHASE[:kill|stop], e.g. 1:forward or 1:forward:stop")
    return Fault(int(parts[0]), parts[1], parts[2] if len(parts) == 3 else "kill")
