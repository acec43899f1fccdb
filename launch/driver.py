"""The validation driver: prediction, checkpoint, one Ray actor per rank, phases with timeouts, comparison.

Flow: plan the (possibly truncated) model with shardsim's planner → write or reuse the checkpoint → start or join
a Ray cluster → one ``RankWorker`` actor per rank (fractional CPUs on CPU, one GPU each on CUDA) → phases
``setup`` (process group), ``load`` (the rank's slices), ``forward`` (prefill + decode), ``measure`` → the
unsharded reference's logits → per-rank predicted vs measured. Every phase result is appended to
``results.jsonl`` in the run directory as it arrives, so nothing measured is lost when a rank fails.

Faults: any actor that dies or raises is reported with its rank and cause, the other actors are killed, and the
run ends with exit code 1 within the phase timeout (the process group's own timeout bounds stuck collectives).
"""

from __future__ import annotations

import json
import os
import platform
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "build"

# Tolerance of the measured activation peak against the prediction, and of logits against the reference.
ACTIVATION_TOLERANCE = 0.25
LOGITS_TOLERANCE = 0.02  # max |Δ| ≤ 2 % of the reference's max |logit| (bf16 carries 8 bits of mantissa)


@dataclass
class ValidateRequest:
    model: str | None
    config: str | None = None
    tp: int = 1
    pp: int = 1
    dp: int = 1
    ep: int = 1
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
    fault: tuple[int, str] | None = None
    run_dir: str | None = None
    command: str = ""
    source_config: dict | None = None


@dataclass
class RankOutcome:
    rank: int
    predicted: dict
    measured: dict = field(default_factory=dict)
    status: str = "pending"
    error: str | None = None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for dist in ("torch", "ray", "safetensors", "deepspeed", "transformers", "shardsim"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out


class ResultsFile:
    """Append-only JSON lines in the run directory."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, record: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record, default=str) + "\n")


def predict(spec, layout, context: int, batch: int, prompt_len: int) -> dict[int, dict]:
    """Per-rank prediction of the terms a validation run measures (eager kernels: the torch backend's math)."""
    from shardsim.layout import rank_coords
    from shardsim.plan import Planner, Workload

    workload = Workload(context=context, batch=batch, prefill_chunk=prompt_len, kernels="eager").checked()
    planner = Planner(spec, layout, workload)
    out = {}
    for rank in range(planner.layout.world_size):
        rb, _ = planner.rank_bytes(rank_coords(rank, planner.layout), context, batch)
        out[rank] = {"weights": rb.weights, "kv_cache": rb.kv_cache, "activations": rb.activations}
    return out


def compare(predicted: dict, measured: dict) -> tuple[dict, bool]:
    """Per term: predicted, measured, difference in bytes and %, verdict. Weights and KV must match exactly."""
    rows, ok = {}, True
    for term in ("weights", "kv_cache", "activations"):
        p, m = predicted.get(term), measured.get(term)
        if m is None:
            rows[term] = {"predicted": p, "measured": None, "diff": None, "diff_pct": None, "ok": False}
            ok = False
            continue
        diff = m - p
        pct = 100.0 * diff / p if p else 0.0
        good = diff == 0 if term != "activations" else abs(diff) <= ACTIVATION_TOLERANCE * p
        rows[term] = {"predicted": p, "measured": m, "diff": diff, "diff_pct": pct, "ok": good}
        ok &= good
    return rows, ok
