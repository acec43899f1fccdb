"""A review by speed and cost: each option that fits is run through the speed model (``speed.estimate``) with the
model's load (input / output tokens, concurrent users or a request rate, TTFT / TPOT targets), then ranked by
dollars per million output tokens among the options that meet the targets; options that fit but miss a target are
kept apart with their figures, never ranked above one that meets them.

The request each option is estimated with is the one ``shardsim speed`` builds: the model, the option's layout, a
workload of context input + output tokens, the option's cluster, and the review's engine (vLLM's knobs as the
review sets them: memory fraction, release, max_model_len = the context); the engine's report is the one the
option's memory verdict came from (one replica's, as the review's verdict takes it) unless the review raised
``max_num_seqs`` to hold every user, when the estimate runs vLLM's defaults on the whole layout. Cost: $/Mtok =
GPU-hours per million output tokens × the cluster's price per GPU-hour (``speed.estimate``); $/month = that price ×
GPUs × 730 hours (365 × 24 / 12).
"""

from __future__ import annotations

from dataclasses import dataclass

from shardsim.errors import ShardsimError

HOURS_PER_MONTH = 730
"""365 × 24 / 12 hours: the month cloud price sheets bill by."""


@dataclass(frozen=True, slots=True)
class OptionSpeed:
    """One option's serving figures under the load (estimates), and whether they meet the targets."""

    ttft_ms: float | None
    tpot_ms: float
    tokens_per_s_per_gpu: float
    tokens_per_s_per_user: float | None
    output_tokens_per_s: float
    usd_per_mtok: float | None
    usd_per_month: float | None
    replicas: int
    gpus_per_replica: int
    meets_targets: bool
    missed: str | None      # which target it misses, with the figure
    band: dict
    saturated: bool = False

    def to_dict(self) -> dict:
        return {"ttft_ms": self.ttft_ms, "tpot_ms": self.tpot_ms, "tokens_per_s_per_gpu": self.tokens_per_s_per_gpu,
                "tokens_per_s_per_user": self.tokens_per_s_per_user, "output_tokens_per_s": self.output_tokens_per_s,
                "usd_per_mtok": self.usd_per_mtok, "usd_per_month": self.usd_per_month, "replicas": self.replicas,
                "gpus_per_replica": self.gpus_per_replica, "meets_targets": self.meets_targets, "missed": self.missed,
                "band": self.band, "saturated": self.saturated, "estimate": True}


def has_speed_load(load) -> bool:
    """Whether a model's load names its tokens in and out (then the review estimates speed)."""
    return getattr(load, "input_tokens", None) is not None


def option_speed(option, spec, load, engine: str, gpu_memory_utilization: float,
                 engine_version: str | None, memo=None) -> OptionSpeed | str:
    """The serving figures of ``option`` under ``load``, or the one-line reason the speed model gives none
    (``memo``: a ``speed.memo.Memo`` shared by the options of one review)."""
    from shardsim.core.requests import EngineChoice, Hardware, ServeRequest
    from shardsim.core.workload import Workload
    from shardsim.engines.registry import choose
    from shardsim.hardware.topology import fabric_of
    from shardsim.speed.estimate import SpeedRequest, SpeedWorkload, estimate

    inp, out = load.input_tokens, load.output_tokens
    v, lay, cluster = option.variant, option.layout, option.cluster
    wl = Workload(context=inp + out, batch=1, quant=v.quant, kv_dtype=v.kv_dtype).checked()
    gpu = cluster.gpu
    hw = Hardware(gpu.name, gpu.capacity_bytes, gpu.compute_capability, gpu.nvidia_smi_total_bytes,
                  fabric_of(cluster), cluster)
    choice: EngineChoice | None = None
    if engine == "vllm":
        knobs = {"gpu_memory_utilization": gpu_memory_utilization, "engine_version": engine_version,
                 "max_model_len": inp + out, "kv_cache_dtype": "fp8" if v.kv_dtype == "fp8" else "auto"}
        choice = choose("vllm", knobs)
    request = SpeedRequest(ServeRequest(v.spec, lay, wl, hw, choice),
                           SpeedWorkload(inp, out, None if load.request_rate is not None else load.concurrency,
                                         load.request_rate))  # targets checked below: no SLO search needed
    # the evaluator's report (one replica's, the one the option's verdict stands on) serves the estimate when its
    # knobs are these: vLLM's default max_num_seqs, not raised to take every user at once
    if memo is not None and choice is not None and getattr(option.note, "default_knobs", False):
        memo.seed(request.serve, option.note.report)
    try:
        rep = estimate(request, memo, arithmetic=False)
    except ShardsimError as exc:
        return str(exc)
    missed = []
    if load.ttft_ms is not None and (rep.ttft_ms is None or rep.ttft_ms > load.ttft_ms):
        missed.append(f"TTFT {'unbounded' if rep.ttft_ms is None else f'{rep.ttft_ms:,.0f} ms'} > {load.ttft_ms:g} ms")
    if load.tpot_ms is not None and rep.tpot_ms > load.tpot_ms:
        missed.append(f"TPOT {rep.tpot_ms:,.1f} ms > {load.tpot_ms:g} ms")
    if rep.saturated:
        missed.append(f"{load.request_rate:g} requests/s saturates it")
    price = rep.price_per_gpu_hour
    per_month = None if price is None else price * lay.world_size * HOURS_PER_MONTH
    return OptionSpeed(rep.ttft_ms, rep.tpot_ms, rep.tokens_per_s_per_gpu, rep.tokens_per_s_per_user,
                       rep.output_tokens_per_s, rep.usd_per_mtok, per_month, lay.dp, lay.tp * lay.pp,
                       not missed, "; ".join(missed) or None, dict(rep.band), rep.saturated)


def rank_by_speed(fitting: list, spec, load, engine: str, gpu_memory_utilization: float,
                  engine_version: str | None) -> tuple[list, list]:
    """(options meeting the targets ranked by $/Mtok, then $; options that fit but miss a target or have no
    estimate, cheapest per token first). Each option gets ``speed`` (an ``OptionSpeed``), or ``held_back`` the reason it has
    none."""
    from shardsim.speed.memo import Memo

    meet, miss, memo = [], [], Memo()
    for o in fitting:
        s = option_speed(o, spec, load, engine, gpu_memory_utilization, engine_version, memo)
        if isinstance(s, str):
            o.speed, o.held_back = None, s
            miss.append(o)
            continue
        o.speed = s
        (meet if s.meets_targets else miss).append(o)
    meet.sort(key=lambda o: (o.speed.usd_per_mtok is None, o.speed.usd_per_mtok or 0.0, o.cost is None, o.cost or 0.0,
                             -o.headroom_bytes, o.layout.world_size, o.cluster.name))
    miss.sort(key=lambda o: (o.speed is None, o.speed.usd_per_mtok is None if o.speed else True,
                             (o.speed.usd_per_mtok or 0.0) if o.speed else 0.0, o.cost or 0.0, o.cluster.name))
    return meet, miss
