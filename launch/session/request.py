"""A validation request and its checks before anything heavy starts: the ranges, the fault to inject, the build
folder. The layouts each backend runs are checked by its registry (``shardsim.launch.serve.registry``).

Imports no torch or Ray at module level: ``shardsim validate`` refuses a bad request with one line even where the
validation stack is not installed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from pathlib import Path

from shardsim.core.layout import Layout
from shardsim.core.model import ModelSpec
from shardsim.errors import ShardsimError

DEVICES = ("cpu", "cuda")
MAX_RANKS = 64
ENV_CACHE = "SHARDSIM_CACHE"
RUNS_FOLDER = "shardsim-runs"


@dataclass(frozen=True, slots=True)
class Fault:
    """A worker to kill (SIGKILL) or freeze (SIGSTOP) on purpose, in tests of the fault handling."""

    rank: int
    phase: str
    action: str = "kill"


@dataclass(frozen=True)
class ValidateRequest:
    """What a validation run was asked, as one frozen record pickled whole to every worker: the model as run
    (``core.model.ModelSpec``, truncated to ``layers``), the validated ``core.layout.Layout``, the training choices
    (``core.train.setup.TrainSetup``; None: inference) and steps, where it runs, the run's sizes and its folders."""

    model: ModelSpec
    layout: Layout
    setup: Any = None
    steps: int = 2
    backend: str = "torch"
    address: str | None = None
    device: str = "cpu"
    batch: int = 1
    context: int = 128
    decode_steps: int = 4
    layers: int | None = None
    checkpoint: str | None = None
    seed: int = 0
    phase_timeout_s: float = 300.0
    fault: Fault | None = None
    run_dir: str | None = None
    command: str = ""
    source_config: dict | None = None


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


def parse_fault(text: str | None, train: bool = False) -> Fault | None:
    """``--inject-fault RANK:PHASE[:kill|stop]``: the phases of inference (setup, load, forward) or, with
    ``train``, of training (setup, train)."""
    if not text:
        return None
    phases = ("setup", "train") if train else ("setup", "load", "forward")
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0].isdigit() or parts[1] not in phases \
            or (len(parts) == 3 and parts[2] not in ("kill", "stop")):
        raise ShardsimError(f"--inject-fault takes RANK:PHASE[:kill|stop] with PHASE one of {', '.join(phases)}, "
                            f"e.g. 1:{phases[-1]} or 1:{phases[-1]}:stop")
    return Fault(int(parts[0]), parts[1], parts[2] if len(parts) == 3 else "kill")
