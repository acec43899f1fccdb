"""The checkpoint a validation run loads: the one given (checked before Ray starts), or a seeded one written, or
reused, under the build folder (temp files that killed runs left there removed first); with the config values its
math needs.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from shardsim.launch.checkpoints.files import write_checkpoint
from shardsim.launch.checkpoints.temps import remove_stale
from shardsim.launch.checkpoints.verify import check_checkpoint


@dataclass(frozen=True)
class CheckpointFacts:
    """The checkpoint a run loads and the config values its math needs."""

    path: Path
    rope_theta: float
    rms_eps: float
    norm_topk_prob: bool


def prepare_checkpoint(req, spec, build: Path, quiet: bool, timings: dict) -> CheckpointFacts:
    """The given checkpoint (``req.checkpoint``), or a seeded one written (or reused) under the build folder;
    the seconds spent writing go to ``timings["checkpoint_s"]``."""
    if req.checkpoint:
        ckpt = Path(req.checkpoint).absolute()  # the workers' current folder is not the driver's
        check_checkpoint(spec, ckpt)  # the right model, every tensor, no truncated shard: before Ray starts
    else:
        ckpt = build / "checkpoints" / f"{spec.name.split(' ')[0]}-L{spec.num_layers}-seed{req.seed}"
        t0 = time.time()
        remove_stale(ckpt.parent)  # temp files of writers killed before their cleanup ran
        if not quiet:
            sys.stderr.write(f"checkpoint: {ckpt} …\n")
        write_checkpoint(spec, ckpt, seed=req.seed, source_config=req.source_config,
                         notify=lambda message: sys.stderr.write(f"shardsim: {message}\n"))
        timings["checkpoint_s"] = time.time() - t0
    config = json.loads((ckpt / "config.json").read_text())
    return CheckpointFacts(ckpt, float(config.get("rope_theta", 1_000_000.0)), float(config.get("rms_norm_eps", 1e-6)),
                           bool(config.get("norm_topk_prob", True)))
