"""Training plans against published training measurements (tests/data/train_measurements.jsonl, none of which any
constant was fitted to): per row, shardsim's peak rank total vs the published per-GPU figure, and the fit verdict.

Run: .venv/bin/python benchmarks/train_calibration.py
A row is evaluated when its model is a shipped preset (or a -2507 variant of one), its GPU's memory is known and
its strategy is one shardsim models; the others are listed with the reason.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from shardsim.core.layout import Layout
from shardsim.core.train.plan import plan_train
from shardsim.core.train.setup import TrainSetup
from shardsim.errors import ShardsimError
from shardsim.hardware.catalog import resolve_gpu
from shardsim.presets import get_preset

DB = Path(__file__).resolve().parent.parent / "tests" / "data" / "train_measurements.jsonl"
GiB = 1 << 30


def _preset(model: str):
    name = model.split("/")[-1]
    base = re.sub(r"-(Instruct|Thinking)-2507$|-Base$", "", name)
    return get_preset(base)


def _gpu_bytes(text: str) -> int:
    if "variant not stated" in text.lower():   # e.g. an H100 whose memory (80, 94 or 96 GB) the source leaves open
        raise ShardsimError(f"GPU memory not known from {text!r}")
    # A800 and H800 are the A100 80GB and H100 80GB with a narrower interconnect (NVIDIA datasheets): same memory
    for key in ("H100", "H200", "H800", "H20", "A100-SXM4-40GB", "A100", "A800", "L40S", "4090", "T4"):
        if key.lower() in text.lower():
            return resolve_gpu({"A800": "a100", "H800": "h100", "A100-SXM4-40GB": "a100-40gb"}.get(key, key)).capacity_bytes
    raise ShardsimError(f"GPU memory not known from {text!r}")


def _whole(settings: dict, name: str, default: int | None = None) -> int:
    """A stated whole-number setting; a missing one takes ``default``, an unstated or qualified one is refused."""
    value = settings.get(name)
    if value is None and default is not None:
        return default
    if not isinstance(value, int) or isinstance(value, bool):
        raise ShardsimError(f"{name} not stated as a number ({str(value)[:40]!r})")
    return value


def _setup(r: dict) -> tuple[TrainSetup, Layout]:
    s = r["settings"]
    fw = {"fsdp2": "fsdp", "single-gpu": "ddp"}.get(r["framework"], r["framework"])
    if fw in ("pithtrain", "automodel", "axolotl", "megatron-fsdp"):
        raise ShardsimError(f"{fw} (its own sharding and kernels) is not modelled")
    if "fp8" in str(s.get("precision", "")).lower():
        raise ShardsimError("fp8 training is not modelled (bf16 only)")
    if fw == "unsloth":
        raise ShardsimError("Unsloth's own kernels and gradient offload are not modelled")
    if _whole(s, "cp", 1) > 1 and fw != "megatron":
        raise ShardsimError("accelerate's context parallel and activation offload are not modelled")
    if s.get("rlhf"):
        raise ShardsimError(f"preference training ({s['rlhf']}: chosen and rejected sequences, a frozen reference "
                            "model for DPO / KTO, a value head for RM) is not modelled")
    tp, pp, ep = _whole(s, "tp", 1), _whole(s, "pp", 1), _whole(s, "ep", 1)
    n = r.get("n_gpus") or 0
    if not n or n % (tp * pp):
        raise ShardsimError("GPU count not stated")
    gc = str(s.get("gradient_checkpointing")).lower()
    recompute = "full" if ("full" in gc or gc == "true" or "default (on)" in gc) else (
        "selective" if "selective" in gc else "none")
    try:
        mb, seq = _whole(s, "micro_batch"), _whole(s, "seq_len")
    except ShardsimError:
        raise ShardsimError("micro-batch or sequence length not stated") from None
    kw = dict(framework=fw, micro_batch=mb, seq_len=seq, recompute=recompute,
              lora_rank=s.get("lora_rank") or 0)
    if s.get("exp_avg_dtype") == "bf16" and s.get("exp_avg_sq_dtype") == "bf16":
        kw["optimizer"] = "adamw-bf16"
    if fw == "deepspeed":
        kw["zero"] = s.get("zero_stage") or 0
    if fw == "megatron":
        kw.update(distributed_optimizer="distributed" in str(s.get("optimizer")), sequence_parallel=tp > 1,
                  grad_accum=max(pp, 1), capacity_factor=s.get("moe_expert_capacity_factor"))
    if s.get("offload_optimizer") is True or s.get("optimizer_cpu_offload") is True:
        # the host's memory is not stated: offloading is taken to fit there, the GPU side is what is compared
        kw.update(offload_optimizer=True, host_memory_bytes=1 << 50)
    return TrainSetup(**kw), Layout(tp=tp, pp=pp, dp=n // (tp * pp), ep=ep)


def _measured(r: dict) -> float | None:
    m = re.search(r"([0-9]+(?:\.[0-9]+)?)\s*Gi?B", str(r["measured"]["value"]))
    return float(m.group(1)) * (GiB if "GiB" in m.group(0) else 1e9) if m else None


def main() -> None:
    rows = [json.loads(line) for line in DB.read_text().splitlines() if line.strip()]
    done, verdicts, within, compared = [], 0, 0, 0
    for r in rows:
        try:
            spec = _preset(r["model"])
            setup, layout = _setup(r)
            report = plan_train(spec, layout, setup, _gpu_bytes(r["gpu"]))
        except (ShardsimError, KeyError, ValueError) as exc:
            print(f"{r['id']}: not evaluated: {str(exc).splitlines()[0][:110]}")
            continue
        term, peak, goal = _compared(r, report.ranks[report.peak_rank].bytes)
        measured = _measured(r)
        fits = r["outcome"] == "fits"
        right = report.fits == fits
        verdicts += right
        err = (peak - measured) / measured if measured and fits else None   # an OOM row's figure is not a peak
        within += err is not None and abs(err) <= goal
        compared += err is not None
        done.append(r["id"])
        print(f"{r['id']}: {spec.name} {setup.framework} {layout.describe()}: {term} {peak / GiB:.1f} GiB, "
              f"published {r['measured']['value']}" + (f" ({100 * err:+.0f} %)" if err is not None else "")
              + f" · verdict {'right' if right else 'WRONG'} ({'fits' if report.fits else 'OOM'} vs {r['outcome']})")
    print(f"\n{len(done)} of {len(rows)} rows evaluated · verdict right on {verdicts} · within the goal (10 % of "
          f"peak_allocated, 15 % of total or reserved) on {within} of the {compared} that publish a peak of a run "
          "that fit")


def _compared(r: dict, rank) -> tuple[str, int, float]:
    """The predicted term the published figure measures, and the goal: max allocated → ``peak_allocated`` (10 %),
    max reserved → ``total`` less the runtime (CUDA context and communicators are not the allocator's), anything else
    (nvidia-smi, or a figure whose tool is not stated) → ``total`` (15 %)."""
    what = str(r["measured"].get("what", "")).lower()
    if "allocated" in what:
        return "peak_allocated", rank.peak_allocated, 0.10
    if "reserved" in what:
        return "reserved", rank.total - rank.runtime, 0.15
    return "total", rank.total, 0.15


if __name__ == "__main__":
    main()
