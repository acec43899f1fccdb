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
import platform
import socket
from dataclasses import dataclass
from pathlib import Path

# Tolerance of the measured activation peak against the prediction, and of logits against the reference.
ACTIVATION_TOLERANCE = 0.25
# Logits: ‖sharded − reference‖₂ / ‖reference‖₂ per sampled position; the median over positions must stay within
# 3 % and every position within 10 %, and the prefill's argmax must agree. bf16 keeps 8 mantissa bits (relative
# rounding 2⁻⁹ ≈ 0.2 % per op); sharding changes the order of the sums (partial products all-reduced), so the
# rounding differs and compounds over the layers: 0.7–2 % measured on dense and MoE models. A token whose top-k
# routing is near a tie can pick another expert in one run, which moves that position by up to ~1/k of its MLP
# output (7.4 % seen once on 235B-A22B), hence the per-position bound. A wrong shard gives errors near 100 %.
LOGITS_TOLERANCE = 0.03
LOGITS_TOLERANCE_ANY_POSITION = 0.10


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
    fault: object = None  # request.Fault
    run_dir: str | None = None
    command: str = ""
    source_config: dict | None = None


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


def predict(spec, layout, context: int, batch: int, prompt_len: int, backend: str = "torch") -> dict[int, dict]:
    """Per-rank prediction of the terms a validation run measures, with the eager kernels of the backend.

    KV: the torch backend allocates whole 16-token pages; transformers' DynamicCache (also under DeepSpeed ZeRO-3,
    which runs the transformers model with its own kernels) grows to exactly the tokens seen (page size 1).
    Activations: for MoE stages the peak depends on how many tokens the router sends to one expert, which no
    planner can know; ``activations`` assumes every token can (the bound a capacity plan needs) and
    ``activations_low`` a perfectly balanced router (T·k/E tokens per expert).
    """
    from shardsim.core.layout import rank_coords
    from shardsim.core.plan import Planner, Workload

    hf = backend in ("transformers", "deepspeed")  # DeepSpeed ZeRO-3 runs the transformers model as it is
    block = 1 if hf else 16
    workload = Workload(context=context, batch=batch, prefill_chunk=prompt_len, step_tokens=None, kernels="hf" if hf else "eager",
                        block_size=block).checked()
    planner = Planner(spec, layout, workload)
    tokens = prompt_len * batch
    balanced = -(-tokens * spec.num_experts_per_tok // spec.num_experts) if spec.is_moe else None
    low_planner = Planner(spec, layout, workload.model_copy(update={"expert_tokens": balanced})) if balanced else planner
    out = {}
    for rank in range(planner.layout.world_size):
        coords = rank_coords(rank, planner.layout)
        rb = planner.rank_terms(coords, context, batch).bytes
        low = low_planner.rank_terms(coords, context, batch).bytes
        out[rank] = {"weights": rb.weights, "kv_cache": rb.kv_cache, "activations": rb.activations,
                     "activations_low": low.activations}
        if rb.zero_gather:  # ZeRO-3: parameters gathered for the forward (reported, not compared)
            out[rank]["zero_gather"] = rb.zero_gather
    return out


def compare(predicted: dict, measured: dict) -> dict:
    """Per term: predicted, measured, difference in bytes and %, verdict (``ok``). Weights and KV must match
    exactly."""
    rows = {}
    for term in ("weights", "kv_cache", "activations"):
        p, m = predicted.get(term), measured.get(term)
        if m is None:
            rows[term] = {"predicted": p, "measured": None, "diff": None, "diff_pct": None, "ok": False}
            continue
        low = predicted.get("activations_low", p) if term == "activations" else p
        # Difference to the predicted value, or to the nearer end of the predicted range (0 inside it).
        diff = m - p if m > p else (m - low if m < low else 0)
        ref = p if m > p else low
        pct = 100.0 * diff / ref if ref else 0.0
        if term == "activations":
            good = low * (1 - ACTIVATION_TOLERANCE) <= m <= p * (1 + ACTIVATION_TOLERANCE)
        else:
            good = m == p
        rows[term] = {"predicted": p, "predicted_low": low, "measured": m, "diff": diff, "diff_pct": pct, "ok": good}
    return rows
