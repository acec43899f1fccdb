"""``estimate(SpeedRequest) → SpeedReport``: the serving figures of a workload on a layout, and the arithmetic.

The request is the memory plan's ``ServeRequest`` (model, layout, workload of context I + O, hardware, engine) and
the speed workload (I, O, concurrency or request rate, targets). The memory plan sets how many requests run at once
(the engine's report — vLLM's ``GPU KV cache size`` and ``max_num_seqs``, SGLang's ``#tokens`` — or, without an
engine, the planner's largest batch at context I + O) and the step budget; ``work`` and ``comm`` give each stage's
FLOPs, bytes and collectives; ``roofline`` their time, ``pipeline`` a step's over the stages; ``serving`` the steady
state, ``batch`` and ``simulate`` a run sent at once.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace

from shardsim.errors import ShardsimError
from shardsim.speed import roofline, serving, simulate
from shardsim.speed.bands import speed_bands
from shardsim.speed.memo import Memo
from shardsim.speed.pipeline import Pipeline, pipeline_of
from shardsim.units import DTYPE_BYTES, round_up

SERVING_ENGINES = ("vllm", "sglang")
AT_ONCE = 0.1
"""A rate that sends all of a run's N prompts within this share of the time the batch takes to serve sends them,
in effect, at once (``speed.batch``)."""
SGLANG_CHUNK_BEFORE_053 = ((35 * 1024, 2048), (160 * 1024, 8192), (float("inf"), 16384))
"""SGLang's default ``chunked_prefill_size`` by GPU memory (MiB) before the 0.5.3 rework: 2,048 below 35 GiB,
8,192 below 160 GiB, else 16,384 (``python/sglang/srt/server_args.py`` ``ServerArgs.__post_init__``, "Set chunked
prefill size, which depends on the gpu memory capacity", read in the code without its release tag; an older form
gives 2,048 below 25,000 MB, else 8,192 — the same for every GPU of the catalog but the 24 GB cards). From 0.5.3:
``engines.sglang.sglang_gpu_defaults``."""


@dataclass(frozen=True, slots=True)
class SpeedWorkload:
    """What the users send: I prompt and O output tokens per request, and either C concurrent users (closed
    loop), R requests per second (open loop; with C too, at most C in flight) or N requests at once
    (``num_prompts``, ``speed.batch``); optional TTFT / TPOT targets in ms. ``varied_lengths``: requests of
    different lengths (a ShareGPT-like dataset), whose closed loop spreads arrivals instead of keeping bursts."""

    input_tokens: int
    output_tokens: int
    concurrency: int | None = None
    request_rate: float | None = None
    ttft_ms: float | None = None
    tpot_ms: float | None = None
    num_prompts: int | None = None
    varied_lengths: bool = False


@dataclass(frozen=True, slots=True)
class SpeedRequest:
    serve: object  # core.requests.ServeRequest, context I + O
    workload: SpeedWorkload


@dataclass
class SpeedReport:
    """The figures (estimates) and how they were reached."""

    ttft_ms: float | None
    tpot_ms: float | None  # None with one output token (TPOT is (E2E − TTFT)/(O − 1))
    output_tokens_per_s: float
    total_tokens_per_s: float
    tokens_per_s_per_gpu: float
    tokens_per_s_per_user: float | None
    requests_per_s: float
    e2e_ms: float | None
    max_concurrency_at_slo: int | None
    usd_per_mtok: float | None
    band: dict
    saturated: bool
    concurrency: float  # users per replica (asked, or from the rate)
    gpus: int
    replicas: int
    scheduler: serving.Scheduler
    steady: serving.Steady
    peaks: roofline.GpuPeaks
    efficiency: roofline.Efficiency
    fit_rows: tuple[str, ...]
    stages: list
    breakdown: dict = field(default_factory=dict)
    price_per_gpu_hour: float | None = None
    notes: list[str] = field(default_factory=list)
    trace: object = None  # vLLM's scheduler stepped through a run sent at once (``simulate.Trace``), else None

    def to_dict(self) -> dict:
        return {
            "ttft_ms": self.ttft_ms, "tpot_ms": self.tpot_ms, "output_tokens_per_s": self.output_tokens_per_s,
            "total_tokens_per_s": self.total_tokens_per_s, "tokens_per_s_per_gpu": self.tokens_per_s_per_gpu,
            "tokens_per_s_per_user": self.tokens_per_s_per_user, "requests_per_s": self.requests_per_s,
            "e2e_ms": self.e2e_ms, "max_concurrency_at_slo": self.max_concurrency_at_slo,
            "usd_per_mtok": self.usd_per_mtok, "usd_per_mtok_tokens": "output",
            "band": self.band, "saturated": self.saturated, "estimate": True,
            "concurrency_per_replica": self.concurrency, "running_per_replica": self.steady.running,
            "stepped": None if self.trace is None else {
                "steps": len(self.trace.steps), "preemptions": self.trace.preemptions,
                "max_running": self.trace.max_running, "estimate": False},
            "gpus": self.gpus, "replicas": self.replicas,
            "scheduler": {"budget_tokens": self.scheduler.budget, "max_running": self.scheduler.max_seqs,
                          "kv_sequences": self.scheduler.kv_seqs, "mixed_steps": self.scheduler.mixed,
                          "graph_decode_max": self.scheduler.graph_decode_max, "source": self.scheduler.source},
            "gpu": {"name": self.peaks.gpu, "peak_flops": self.peaks.flops, "dtype": self.peaks.dtype,
                    "bandwidth_Bps": self.peaks.bandwidth, "source": self.peaks.source},
            "fitted": {"compute_efficiency": self.efficiency.compute, "memory_efficiency": self.efficiency.memory,
                       "step_overhead_ms": self.efficiency.step_overhead_s * 1e3,
                       "ttft_overhead_ms": self.efficiency.ttft_overhead_s * 1e3,
                       "seq_overhead_us": self.efficiency.seq_overhead_s * 1e6,
                       "layer_overhead_us": self.efficiency.layer_overhead_s * 1e6,
                       "moe_layer_overhead_us": self.efficiency.moe_layer_overhead_s * 1e6,
                       "fp8_speedup": self.efficiency.fp8_speedup,
                       "rows": list(self.fit_rows)},
            "breakdown": self.breakdown, "notes": self.notes,
        }


def _kv_dtype_bytes(request) -> int:
    knobs = request.engine.given() if request.engine is not None else {}
    if str(knobs.get("kv_cache_dtype") or "").startswith("fp8"):
        return 1
    return DTYPE_BYTES[request.workload.kv_dtype]


def held_tokens(inp: int, out: int, spread: bool) -> float:
    """KV tokens a running request holds on average. Both engines allocate a request's cache as its tokens come
    (vLLM V1: ``KVCacheManager.allocate_slots`` each step, preempting a running request when a block cannot be had,
    ``v1/core/sched/scheduler.py``; SGLang: a token slot per decoded token, admission reserving only ``new_token_ratio`` of the outputs
    still to come — 0.7 at first, decaying to 0.7 × 0.1 (``init_new_token_ratio``, ``base_min_new_token_ratio``,
    ``srt/server_args.py``; ``srt/managers/scheduler.py``) — and retracting requests when the pool runs out). Requests of mixed ages (spread arrivals: a request rate or a dataset of
    varied lengths) hold I + O/2 on average; a closed loop's cohorts of equal requests reach I + O together, so the
    cache must hold that many (more would be preempted at the end of every wave). vLLM's paging wastes half a block
    a request on average (added by the caller)."""
    return inp + out / 2 if spread else inp + out


def scheduler_of(request, inp: int, out: int, spread: bool = False, memo: Memo | None = None) -> serving.Scheduler:
    """The step budget, running cap and KV-bound sequences of one replica, from the memory plan. vLLM's are its
    report's resolved knobs: ``max_num_batched_tokens`` and ``max_num_seqs`` by release and GPU (8,192 / 1,024 on
    GPUs of 70 GiB or more, A100s excepted from 0.9.0, else 2,048 / 256; clamped by ``max_model_len`` from 0.12:
    ``engines.vllm_knobs.vllm_defaults``, sources in ``shardsim.constants``) and ``GPU KV cache size`` over what a running
    request holds (``held_tokens``: whole blocks of I + O, or I + O/2 and half a block where arrivals spread);
    SGLang's, its ``chunked_prefill_size`` by GPU memory and ``#tokens``. A cache smaller than one whole request
    of I + O holds none, whatever the average; the whole-request count is kept too (``Scheduler.whole``) for a
    rate that sends a run's equal requests as one wave."""
    serve = request
    length = inp + out
    if serve.engine is None:
        from shardsim.constants import MAX_BATCH
        from shardsim.core.planner import Planner

        planner = Planner(serve.model, serve.layout, serve.workload, fabric=serve.hardware.fabric)
        seqs = planner.largest_fitting(serve.hardware.capacity_bytes, length, "batch", MAX_BATCH)
        return serving.Scheduler(serve.workload.step_tokens or 8192, MAX_BATCH, seqs, True,
                                 "planner: largest batch at context I + O; vLLM V1's scheduling")
    if serve.engine.name not in SERVING_ENGINES:
        raise ShardsimError(f"speed models continuous-batching servers: --engine {' or '.join(SERVING_ENGINES)} (or "
                            f"none); {serve.engine.name} is available in 'shardsim plan'")
    rep = (memo or Memo()).report(serve)
    if not rep.starts:
        raise ShardsimError(f"{serve.engine.name} would not start: {rep.refusal} (see shardsim plan)")
    knobs = rep.knobs
    if serve.engine.name == "vllm":
        if knobs.get("max_model_len") and knobs["max_model_len"] < length:
            raise ShardsimError(f"I + O = {length:,} tokens exceeds vLLM's max_model_len {knobs['max_model_len']:,}")
        if rep.state_blocks_per_request is not None:  # a hybrid: one pool of blocks for K/V and state
            whole, seqs = _hybrid_pool_seqs(rep, inp, out, spread)
        else:
            block = knobs.get("block_size") or 16
            whole = int((rep.kv_cache_tokens or 0) // round_up(length, block))
            seqs = int((rep.kv_cache_tokens or 0) // (held_tokens(inp, out, True) + block / 2)) if spread else whole
        if whole == 0:
            seqs = 0
        return serving.Scheduler(knobs["max_num_batched_tokens"], knobs["max_num_seqs"], seqs, True,
                                 "vLLM: max_num_batched_tokens, max_num_seqs and GPU KV cache size of the engine "
                                 "report; decodes and prompt chunks share each step (V1 chunked prefill)", whole,
                                 _vllm_pool(rep, knobs), _vllm_full_graph_max(knobs))
    return _sglang_scheduler(serve, rep, held_tokens(inp, out, spread), length)


def _vllm_full_graph_max(knobs: dict) -> int:
    """The largest decode-only batch vLLM replays as one FULL CUDA graph: with ``cudagraph_mode``
    FULL_AND_PIECEWISE (the V1 default from 0.11.0, PR #25444; ``VllmRules.cudagraph_mode``) uniform decode batches
    run FULL graphs of the capture sizes up to max_num_seqs (``engines.vllm_profile.full_decode_sizes``), padded up
    to the next; larger batches, and steps carrying prompt tokens, run PIECEWISE graphs with attention between them.
    0: no FULL graphs (PIECEWISE releases, V0, --enforce-eager)."""
    if knobs.get("enforce_eager") or knobs.get("version") == "v0":
        return 0
    return _full_graph_max(knobs.get("engine_version"), knobs["max_num_seqs"], knobs["max_num_batched_tokens"])


@functools.lru_cache(maxsize=256)
def _full_graph_max(engine_version: str | None, max_num_seqs: int, max_num_batched_tokens: int) -> int:
    """``_vllm_full_graph_max`` of a release and its scheduler knobs (a review asks for the same few again)."""
    from shardsim.engines import vllm_profile
    from shardsim.engines.releases import resolve

    rules = resolve("vllm", engine_version).rules
    return max(vllm_profile.full_decode_sizes(rules, max_num_seqs, max_num_batched_tokens), default=0)


def _vllm_pool(rep, knobs) -> simulate.Pool:
    """vLLM's block pool as its scheduler allocates it: the report's blocks (a hybrid's shared pool of
    ``state_blocks``, its attention block and state blocks a request; else GPU KV cache size over the block)."""
    caching = knobs.get("enable_prefix_caching") is not False  # V1's default: on (a hybrid's report sets it)
    if rep.state_blocks_per_request is not None:
        return simulate.Pool(knobs["max_num_batched_tokens"], knobs["max_num_seqs"], rep.state_blocks,
                             rep.attention_block_size or 16, rep.state_blocks_per_request, caching)
    block = knobs.get("block_size") or 16
    return simulate.Pool(knobs["max_num_batched_tokens"], knobs["max_num_seqs"], (rep.kv_cache_tokens or 0) // block,
                         block, 0, caching)


def _hybrid_pool_seqs(rep, inp: int, out: int, spread: bool) -> tuple[int, float]:
    """(whole requests, running requests) a vLLM hybrid's shared pool holds: ``state_blocks`` blocks, of which a
    request takes its state groups' ``state_blocks_per_request`` (one each without prefix caching: the Mamba
    manager allocates a request's state once, ``v1/core/single_type_kv_cache_manager.py`` MambaManager) and
    cdiv(tokens, attention block) for its attention group — the sum ``engines.vllm_hybrid.blocks_per_request`` uses
    at max_model_len. The logged "GPU KV cache size" (blocks // groups × block) is not this count. Where arrivals
    spread, a request holds I + O/2 tokens and half a block on average (``held_tokens``)."""
    block = rep.attention_block_size or 16
    state = rep.state_blocks_per_request
    whole = int(rep.state_blocks // (math.ceil((inp + out) / block) + state))
    if not spread:
        return whole, whole
    return whole, int(rep.state_blocks // (held_tokens(inp, out, True) / block + 0.5 + state))


def _sglang_scheduler(serve, rep, held: float, length: int) -> serving.Scheduler:
    """SGLang's chunked prefill size and the requests its KV cache holds. Its decode batches replay CUDA graphs too
    (up to ``cuda_graph_max_bs``), but its per-layer floor is kept (``graph_decode_max`` 0): fitted with the floor
    dropped there, as for vLLM, SGLang's held-out TPOT error went from 30 % to 36 % median and 69 % to 104 % p90,
    its fitted loss from 3.22 to 2.91 — its fitted rows, mostly a 94-layer MoE at TP 8, keep a decode floor
    under graphs that is kernel time rather than launch gaps."""
    from shardsim.constants import MAX_BATCH
    from shardsim.engines.releases import resolve
    from shardsim.engines.sglang import sglang_gpu_defaults

    knobs = rep.knobs
    chunk = knobs.get("chunked_prefill_size")
    if not chunk:
        mib = (serve.hardware.nvidia_smi_bytes or serve.hardware.capacity_bytes) / (1 << 20)
        rules = resolve("sglang", knobs.get("engine_version")).rules
        if rules.reserve == "reserve-formula":  # 0.5.3+: the engine module's table, cited there
            chunk = sglang_gpu_defaults(mib, serve.layout.tp, rules)[0]
        else:
            chunk = next(size for limit, size in SGLANG_CHUNK_BEFORE_053 if mib < limit)
    tokens = rep.kv_cache_tokens or 0
    seqs = int(tokens // held) if tokens >= length else 0
    cap = rep.max_running_requests or MAX_BATCH
    return serving.Scheduler(chunk, cap, seqs, False,
                             "SGLang: chunked_prefill_size (by GPU memory, server_args.py) and #tokens of the engine "
                             "report; prefill batches run apart from decode batches (no --enable-mixed-chunk)",
                             int(tokens // length))


def prepare(request: SpeedRequest, memo: Memo | None = None) -> tuple[serving.Scheduler, Pipeline, tuple[str, ...]]:
    """The scheduler and cost model of ``request`` and the rows its fitted values came from (``memo``: the parts
    shared with other estimates of the same model)."""
    serve, wl = request.serve, request.workload
    engine = serve.engine.name if serve.engine is not None else None
    sched = scheduler_of(serve, wl.input_tokens, wl.output_tokens, wl.varied_lengths or wl.request_rate is not None,
                         memo)
    if sched.limit < 1:
        raise ShardsimError(f"the KV cache holds no request of {wl.input_tokens + wl.output_tokens:,} tokens on this "
                            "layout (see shardsim plan)")
    pipe, rows = pipeline_of(serve, _kv_dtype_bytes(serve), engine, memo)
    return sched, replace(pipe, graph_decode_max=sched.graph_decode_max), rows


def steady_of(request: SpeedRequest, sched: serving.Scheduler, pipe: Pipeline) -> tuple[serving.Steady, bool]:
    """One replica's steady state under the request's load, and whether a request rate saturates it. A client cap
    (``concurrency`` with a rate or a batch) caps the running requests; a rate that sends a run's ``num_prompts``
    within ``AT_ONCE`` of the time they take is a batch (``speed.batch``)."""
    from shardsim.speed.batch import batch

    wl, dp = request.workload, request.serve.layout.dp
    inp, out, overhead = wl.input_tokens, wl.output_tokens, pipe.eff.ttft_overhead_s
    capped = sched if wl.concurrency is None else replace(sched, max_seqs=min(sched.max_seqs,
                                                                              math.ceil(wl.concurrency / dp)))
    if wl.request_rate is None and wl.concurrency is None and wl.num_prompts is not None:
        return batch(wl.num_prompts / dp, inp, out, sched, pipe, overhead, not wl.varied_lengths), False
    if wl.request_rate is None:
        users = (wl.concurrency or 1) / dp
        return serving.steady_state(users, inp, out, sched, pipe, overhead, not wl.varied_lengths), False
    if wl.num_prompts is not None:  # a wave of equal requests reaches I + O together; varied lengths do not
        wave = capped if wl.varied_lengths else capped.whole()
        whole = batch(wl.num_prompts / dp, inp, out, wave, pipe, overhead, not wl.varied_lengths)
        if wl.num_prompts / wl.request_rate < AT_ONCE * wl.num_prompts / dp / whole.rate:
            return whole, False
    steady, saturated = serving.at_rate(wl.request_rate / dp, inp, out, capped, pipe, overhead)
    if saturated and wl.concurrency is not None:  # the client holds the rest back: a closed loop of C
        return serving.steady_state(wl.concurrency / dp, inp, out, sched, pipe, overhead, False), False
    return steady, saturated


def estimate(request: SpeedRequest, memo: Memo | None = None, arithmetic: bool = True) -> SpeedReport:
    """The serving figures of ``request`` (formulas in ``serving`` and this module's docstring); ``memo``: the
    parts shared with other estimates of the same model (``Memo``); ``arithmetic=False`` leaves out the step
    breakdown (``explain.breakdown``) and the stepped scheduler (``_stepped``) that a review of many layouts and
    the calibration's scores do not show."""
    sched, pipe, rows = prepare(request, memo)
    steady, saturated = steady_of(request, sched, pipe)
    return _report(request, sched, pipe, rows, steady, saturated, arithmetic)


def _report(request: SpeedRequest, sched, pipe: Pipeline, rows, steady: serving.Steady, saturated: bool,
            arithmetic: bool = True) -> SpeedReport:
    from shardsim.speed.explain import breakdown

    serve, wl = request.serve, request.workload
    inp, out, dp, gpus = wl.input_tokens, wl.output_tokens, serve.layout.dp, serve.layout.world_size
    rate = steady.rate * dp
    output = rate * out
    slo = None
    if wl.ttft_ms is not None or wl.tpot_ms is not None:
        slo = serving.max_concurrency_at_slo(None if wl.ttft_ms is None else wl.ttft_ms / 1e3,
                                             None if wl.tpot_ms is None else wl.tpot_ms / 1e3, dp, inp, out, sched,
                                             pipe, pipe.eff.ttft_overhead_s)
    cluster = serve.hardware.cluster
    price = cluster.price_per_gpu_hour_usd if cluster.price_per_gpu_hour_usd is not None else \
        cluster.gpu.price_per_gpu_hour_usd
    usd = price * gpus / (output * 3600 / 1e6) if price is not None and output > 0 else None
    notes = list(serve.hardware.warnings)
    if saturated:
        notes.append(f"{wl.request_rate:g} requests/s exceeds what {sched.limit * dp:,} running requests complete "
                     f"({rate:.3g}/s): queues grow without bound; figures at saturation, TTFT unbounded")
    if pipe.peaks.dtype == "fp16" and serve.workload.dtype != "fp16":
        notes.append(f"{pipe.peaks.gpu} has no bf16 tensor cores: timed at its fp16 peak (serve with --dtype half)")
    if serve.model.vision is not None:
        notes.append("text-only requests: the vision tower does not run")
    trace = _stepped(request, sched) if arithmetic else None
    if trace is not None and trace.preemptions:
        notes.append(f"vLLM's scheduler, stepped through this run, preempts {trace.preemptions:,} times (a prompt "
                     "chunk is admitted on its own blocks; a decode that finds none preempts the newest request, "
                     "which waits and recomputes what the prefix cache lost); the figures above leave that out. "
                     "More KV cache per replica (fp8 KV, a higher --gpu-memory-utilization, more GPUs) avoids it")
    return SpeedReport(
        ttft_ms=None if saturated else steady.ttft * 1e3, tpot_ms=steady.tpot * 1e3 if out > 1 else None,
        output_tokens_per_s=output,
        total_tokens_per_s=rate * (inp + out), tokens_per_s_per_gpu=output / gpus,
        tokens_per_s_per_user=1 / steady.tpot if steady.tpot > 0 else None, requests_per_s=rate,
        e2e_ms=None if saturated else steady.e2e * 1e3, max_concurrency_at_slo=slo, usd_per_mtok=usd,
        band=speed_bands(serve.engine.name if serve.engine else None), saturated=saturated,
        concurrency=steady.users, gpus=gpus, replicas=dp, scheduler=sched, steady=steady, peaks=pipe.peaks,
        efficiency=pipe.eff, fit_rows=rows, stages=list(pipe.stages),
        breakdown=breakdown(pipe, steady) if arithmetic else {},
        price_per_gpu_hour=price, notes=notes, trace=trace,
    )


def _stepped(request: SpeedRequest, sched: serving.Scheduler):
    """vLLM's scheduler stepped through a run of ``num_prompts`` equal requests sent at once (no client cap, no
    finite rate, lengths that do not vary) on one replica's block pool: ``simulate.Trace``, or None where the run is
    not of that kind or is too long to step."""
    wl, dp = request.workload, request.serve.layout.dp
    if sched.pool is None or wl.num_prompts is None or wl.concurrency is not None or wl.request_rate is not None \
            or wl.varied_lengths:
        return None
    return simulate.simulate(math.ceil(wl.num_prompts / dp), wl.input_tokens, wl.output_tokens, sched.pool)
