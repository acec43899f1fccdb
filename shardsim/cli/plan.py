"""``shardsim plan``: the memory of every GPU serving one model on one layout, and optionally the engine's own
figures (``--engine``). Training is ``shardsim train`` (``plan --train`` is its alias)."""

from __future__ import annotations

import typer

from shardsim.cli import build, common
from shardsim.cli.engine_flags import parse_engine_flags
from shardsim.cli.options import (
    BatchOpt,
    BatchedTokensOpt,
    BlockOpt,
    ChunkedPrefillOpt,
    ClusterOpt,
    ConfigOpt,
    ContextOpt,
    DpOpt,
    DtypeOpt,
    EngineOpt,
    EngineVersionOpt,
    EpOpt,
    ExplainOpt,
    GpuMemOpt,
    GpuOpt,
    GroupOpt,
    HtmlOpt,
    InterconnectOpt,
    JsonOpt,
    KvCacheDtypeOpt,
    KvDtypeOpt,
    ModelArg,
    PlanCheckOpt,
    PpOpt,
    PpSplitOpt,
    QuantOpt,
    RopeScalingOpt,
    SpecTokensOpt,
    TextOnlyOpt,
    TpOpt,
    ZeroOpt,
)

EXAMPLES = """Memory of every GPU serving MODEL on a TP × PP × DP × EP layout, the verdict, the largest context
and batch; with --engine, the engine's own start-up figures and whether it starts.

\b
Examples:
  shardsim plan 235b --tp 8 --pp 2
  shardsim plan 32b --tp 2 --context 32768 --batch 8 --gpu a100-80gb
  shardsim plan 32b --engine vllm --gpu h100 --max-model-len 32768
  shardsim plan 30b-a3b --engine sglang --tp 2 --ep 2 --json
  shardsim plan 32b --engine vllm --gpu h100 --check     # for scripts: the exit code is the verdict
Training: shardsim train MODEL … (plan --train is the same).

\b
Verdict: FITS, BORDERLINE (the margin, or the engine's start, is inside a band), DOES NOT FIT or WILL NOT START,
with the reason and the fix. Exit codes: 0, or with --check 0 FITS · 1 DOES NOT FIT / WILL NOT START ·
3 BORDERLINE; 2 bad input."""


def plan(
    ctx: typer.Context,
    model: ModelArg = None, config: ConfigOpt = None, speculative_tokens: SpecTokensOpt = 0,
    language_model_only: TextOnlyOpt = False, rope_scaling: RopeScalingOpt = None,
    tp: TpOpt = 1, pp: PpOpt = 1, dp: DpOpt = 1, ep: EpOpt = 1, zero: ZeroOpt = 0, pp_split: PpSplitOpt = None,
    context: ContextOpt = None, batch: BatchOpt = 1,
    dtype: DtypeOpt = "bf16", quant: QuantOpt = None, group_size: GroupOpt = None, kv_dtype: KvDtypeOpt = None,
    block_size: BlockOpt = None, max_num_batched_tokens: BatchedTokensOpt = None,
    chunked_prefill_size: ChunkedPrefillOpt = None,
    cluster: ClusterOpt = None, gpu: GpuOpt = None, gpu_memory: GpuMemOpt = None, interconnect: InterconnectOpt = None,
    as_json: JsonOpt = False, check: PlanCheckOpt = False, html: HtmlOpt = None, explain: ExplainOpt = False,
    engine: EngineOpt = None, engine_version: EngineVersionOpt = None, kv_cache_dtype: KvCacheDtypeOpt = None,
) -> None:
    request = build.serve_request(
        build.ModelOptions(model, config, speculative_tokens, language_model_only, rope_scaling),
        build.LayoutOptions(tp, pp, dp, ep, zero, pp_split),
        build.WorkloadOptions(context, batch, max_num_batched_tokens, chunked_prefill_size, dtype, quant, group_size,
                              kv_dtype, block_size),
        build.HardwareOptions(cluster, gpu, gpu_memory, interconnect),
        # each engine's own knobs come from the extra arguments (cli.engine_flags, options.ENGINE_KNOBS)
        build.EngineOptions(engine, build.engine_knob_options(
            engine_version=engine_version, max_num_batched_tokens=max_num_batched_tokens,
            kv_cache_dtype=kv_cache_dtype, block_size=block_size, chunked_prefill_size=chunked_prefill_size,
            batch=batch, **parse_engine_flags(ctx.args))),
    )
    if html is not None:
        from shardsim.render.html.write import check_destination

        check_destination(html)
    verdict = run_plan(request, as_json, build.ModelOptions(model, config).checkpoint(), html, explain)
    if check and verdict.exit_code:
        raise typer.Exit(verdict.exit_code)


plan.__doc__ = EXAMPLES


def run_plan(request, as_json: bool, checkpoint=None, html: str | None = None, explain: bool = False):
    """Plan a ServeRequest and print it (tables, or one JSON object) with its one verdict (``core.verdict``), which
    it returns; ``checkpoint`` (``CheckpointFacts`` of a checkpoint folder) is held against the planned weight
    total; ``html``: also write the report there (``write_report``)."""
    from shardsim.core.plan import plan_request
    from shardsim.core.verdict import plan_verdict
    from shardsim.presets.checkpoints import CheckpointCheck

    report = plan_request(request)
    check = CheckpointCheck(checkpoint, report.weight_bytes) if checkpoint is not None else None
    engine_rep = None
    if request.engine is not None:
        from shardsim.engines.run import engine_report

        engine_rep = engine_report(request)
    verdict = plan_verdict(report, engine_rep, lambda tp: _fits_at(request, tp))
    if as_json:
        out = report.to_dict()
        if check is not None:
            out["checkpoint"] = check.to_dict()
            out["warnings"] = out.get("warnings", []) + ([check.warning()] if check.warning() else [])
        if engine_rep is not None:
            from shardsim.engines.bands import band_details

            label = (engine_rep.rules or {}).get("label")
            out["engine"] = engine_rep.to_dict() | {"error_band_sources": {
                figure: {"rules": b.rules, "held_out_rows": b.rows, "worst_row": b.worst, "worst_error": b.worst_error}
                for figure, b in (band_details(engine_rep.engine, label) if label else {}).items()}}
        common.print_json(out | {"verdict": verdict.to_dict()})
    else:
        from shardsim.render.plan_text import render_engine, render_plan, render_verdict

        out_console = common.console()
        render_plan(report, out_console, check)
        if engine_rep is not None:
            render_engine(engine_rep, out_console)
        render_verdict(verdict, out_console)
        if explain:
            from shardsim.render.plan_text import render_explain

            render_explain(report, engine_rep, verdict, out_console)
    if html is not None:
        write_report(request, report, engine_rep, verdict, html, to_stderr=as_json)
    return verdict


def write_report(request, report, engine_rep, verdict, path: str, to_stderr: bool) -> None:
    """Write the plan's HTML report (``render.html.plan``) from the records just printed, with the fit grid, and say
    where in one line ("report: FILE"; on stderr under --json, so stdout stays one JSON object)."""
    import shlex
    import sys

    from shardsim.cli.help import ARGV
    from shardsim.files import show
    from shardsim.render.html.grid import fit_grid
    from shardsim.render.html.plan import PlanPage, write_plan_html

    command = shlex.join(["shardsim", *(ARGV or sys.argv[1:])])
    written = write_plan_html(PlanPage(request, report, verdict, engine_rep, fit_grid(request), command_line=command),
                              path)
    (sys.stderr if to_stderr else sys.stdout).write(f"report: {show(written)}\n")


def _fits_at(request, tp: int) -> bool:
    """Whether the same request fits at TP ``tp`` (the fix a plan that does not fit is offered)."""
    from dataclasses import replace

    from shardsim.core.layout import validate_layout
    from shardsim.core.plan import plan_request
    from shardsim.errors import ShardsimError

    try:
        layout = validate_layout(request.model, request.layout.with_degrees(tp=tp))
        if layout.world_size > 8 * max(1, request.layout.world_size // request.layout.tp):
            return False
        return plan_request(replace(request, layout=layout)).fits
    except ShardsimError:
        return False


def register(app) -> None:
    from shardsim.cli.help import GroupedCommand

    app.command(help=EXAMPLES, cls=GroupedCommand,
                context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(plan)
