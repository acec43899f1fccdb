"""``shardsim speed``: TTFT, TPOT, tokens/s and $ per million tokens of a workload on a layout, each an estimate
with its held-out band (``shardsim.speed``). Takes ``plan``'s model, layout, format, hardware and engine options
(the same option records, ``cli.build``) and the workload: tokens in and out, and concurrency or a request rate."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import typer

from shardsim.cli import build, common
from shardsim.cli.engine_flags import parse_engine_flags
from shardsim.cli.options import (
    BatchedTokensOpt,
    BlockOpt,
    ChunkedPrefillOpt,
    ClusterOpt,
    ConcurrencyOpt,
    ConfigOpt,
    DpOpt,
    DtypeOpt,
    EngineOpt,
    EngineVersionOpt,
    EpOpt,
    ExplainOpt,
    GpuMemOpt,
    GpuOpt,
    GroupOpt,
    InputTokensOpt,
    InterconnectOpt,
    JsonOpt,
    KvCacheDtypeOpt,
    KvDtypeOpt,
    ModelArg,
    NumPromptsOpt,
    OutputTokensOpt,
    PpOpt,
    PpSplitOpt,
    QuantOpt,
    RequestRateOpt,
    RopeScalingOpt,
    SpecTokensOpt,
    TextOnlyOpt,
    TpOpt,
    TpotTargetOpt,
    TtftTargetOpt,
)
from shardsim.errors import ShardsimError

EXAMPLES = """Serving speed of MODEL on a layout: TTFT, TPOT, tokens/s (per GPU, per user), $ per million output
tokens and the largest concurrency within TTFT / TPOT targets. Every figure is an estimate with its held-out band.

\b
Examples:
  shardsim speed 8b --gpu h100 --engine vllm --input-tokens 1024 --output-tokens 256 --concurrency 64
  shardsim speed 32b --tp 2 --engine vllm --concurrency 32 --ttft-ms 500 --tpot-ms 30
  shardsim speed 30b-a3b --engine sglang --request-rate 4 --json
  shardsim speed 235b --tp 8 --pp 2 --engine vllm --concurrency 128 --explain"""

MAX_RATE = 1e6


@dataclass(frozen=True)
class SpeedOptions:
    """The speed workload as given (None: not given)."""

    input_tokens: int = 1024
    output_tokens: int = 256
    concurrency: Optional[int] = None
    request_rate: Optional[float] = None
    ttft_ms: Optional[float] = None
    tpot_ms: Optional[float] = None
    num_prompts: Optional[int] = None

    def workload(self):
        """The checked ``speed.estimate.SpeedWorkload`` (one closed-loop user when neither load is given)."""
        from shardsim.constants import MAX_BATCH, MAX_CONTEXT_TOKENS
        from shardsim.speed.estimate import SpeedWorkload

        for flag, value in (("--input-tokens", self.input_tokens), ("--output-tokens", self.output_tokens)):
            if not 1 <= value <= MAX_CONTEXT_TOKENS:
                raise ShardsimError(f"{flag} {value} is out of range; accepted: 1 … {MAX_CONTEXT_TOKENS:,} tokens")
        loads = [flag for flag, value in (("--concurrency", self.concurrency), ("--request-rate", self.request_rate),
                                          ("--num-prompts", self.num_prompts)) if value is not None]
        if len(loads) > 1:
            raise ShardsimError(f"give one of --concurrency (closed loop), --request-rate (open loop) or --num-prompts "
                                f"(a batch at once), not {' and '.join(loads)}")
        for flag, value in (("--concurrency", self.concurrency), ("--num-prompts", self.num_prompts)):
            if value is not None and not 1 <= value <= MAX_BATCH:
                raise ShardsimError(f"{flag} {value} is out of range; accepted: 1 … {MAX_BATCH:,}")
        checks = (("--request-rate", self.request_rate, MAX_RATE), ("--ttft-ms", self.ttft_ms, 1e9),
                  ("--tpot-ms", self.tpot_ms, 1e9))
        for flag, value, top in checks:
            if value is not None and not (math.isfinite(value) and 0 < value <= top):
                raise ShardsimError(f"{flag} {value:g} is out of range; accepted: more than 0, at most {top:g}")
        concurrency = 1 if not loads else self.concurrency
        return SpeedWorkload(self.input_tokens, self.output_tokens, concurrency, self.request_rate, self.ttft_ms,
                             self.tpot_ms, self.num_prompts)


def speed_request(model: build.ModelOptions, layout: build.LayoutOptions, load: SpeedOptions,
                  formats: build.WorkloadOptions, hardware: build.HardwareOptions, engine: build.EngineOptions):
    """The ``speed.estimate.SpeedRequest``: the speed workload first, then plan's request at context I + O with
    the concurrency per replica as its batch (``build.serve_request``, refused in its order)."""
    from dataclasses import replace

    from shardsim.speed.estimate import SpeedRequest

    wl = load.workload()
    per_replica = math.ceil((wl.concurrency or wl.num_prompts or 1) / max(1, layout.dp))
    formats = replace(formats, context=wl.input_tokens + wl.output_tokens, batch=per_replica)
    return SpeedRequest(build.serve_request(model, layout, formats, hardware, engine), wl)


def speed(
    ctx: typer.Context,
    model: ModelArg = None, config: ConfigOpt = None, speculative_tokens: SpecTokensOpt = 0,
    language_model_only: TextOnlyOpt = False, rope_scaling: RopeScalingOpt = None,
    tp: TpOpt = 1, pp: PpOpt = 1, dp: DpOpt = 1, ep: EpOpt = 1, pp_split: PpSplitOpt = None,
    input_tokens: InputTokensOpt = 1024, output_tokens: OutputTokensOpt = 256, concurrency: ConcurrencyOpt = None,
    request_rate: RequestRateOpt = None, num_prompts: NumPromptsOpt = None, ttft_ms: TtftTargetOpt = None,
    tpot_ms: TpotTargetOpt = None,
    dtype: DtypeOpt = "bf16", quant: QuantOpt = None, group_size: GroupOpt = None, kv_dtype: KvDtypeOpt = None,
    block_size: BlockOpt = None, max_num_batched_tokens: BatchedTokensOpt = None,
    chunked_prefill_size: ChunkedPrefillOpt = None,
    cluster: ClusterOpt = None, gpu: GpuOpt = None, gpu_memory: GpuMemOpt = None, interconnect: InterconnectOpt = None,
    as_json: JsonOpt = False, explain: ExplainOpt = False,
    engine: EngineOpt = None, engine_version: EngineVersionOpt = None, kv_cache_dtype: KvCacheDtypeOpt = None,
) -> None:
    request = speed_request(
        build.ModelOptions(model, config, speculative_tokens, language_model_only, rope_scaling),
        build.LayoutOptions(tp, pp, dp, ep, 0, pp_split),
        SpeedOptions(input_tokens, output_tokens, concurrency, request_rate, ttft_ms, tpot_ms, num_prompts),
        build.WorkloadOptions(None, 1, max_num_batched_tokens, chunked_prefill_size, dtype, quant, group_size,
                              kv_dtype, block_size),
        build.HardwareOptions(cluster, gpu, gpu_memory, interconnect),
        # each engine's own knobs come from the extra arguments, as in plan (cli.engine_flags)
        build.EngineOptions(engine, build.engine_knob_options(
            engine_version=engine_version, max_num_batched_tokens=max_num_batched_tokens,
            kv_cache_dtype=kv_cache_dtype, block_size=block_size, chunked_prefill_size=chunked_prefill_size,
            **parse_engine_flags(ctx.args))),
    )
    from shardsim.speed.estimate import estimate

    report = estimate(request)
    if as_json:
        return common.print_json(report.to_dict())
    from shardsim.render.speed_text import speed_lines

    import sys

    sys.stdout.write("\n".join(speed_lines(request, report, explain)) + "\n")


speed.__doc__ = EXAMPLES


def register(app) -> None:
    from shardsim.cli.help import GroupedCommand

    app.command(help=EXAMPLES, cls=GroupedCommand,
                context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(speed)
