"""The ``shardsim`` command: thin Typer commands over the planner's models.

Options shared by several commands are declared once below (``TpOpt``, ``ContextOpt`` …). Bad input of any
kind ends in one line on stderr and exit code 2; heavy modules (torch, networkx, Ray) are imported only by the
commands that need them.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Annotated, Optional

# shardsim loads no pydantic plugins; skipping their entry-point scan saves ~10 ms of every command's start-up.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

import typer  # noqa: E402

from .errors import ShardsimError  # noqa: E402

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Per-GPU memory of Qwen3 models sharded over TP × PP × DP × EP, exact where bytes are knowable.")

# ---------------------------------------------------------------- shared options
ModelArg = Annotated[Optional[str], typer.Argument(help="preset: 0.6b 1.7b 4b 8b 14b 32b 30b-a3b 235b (or full names)", show_default=False)]
ConfigOpt = Annotated[Optional[str], typer.Option("--config", help="a Hugging Face config.json (or its directory) instead of a preset")]
TpOpt = Annotated[int, typer.Option("--tp", help="tensor-parallel degree")]
PpOpt = Annotated[int, typer.Option("--pp", help="pipeline-parallel degree")]
DpOpt = Annotated[int, typer.Option("--dp", help="data-parallel replicas")]
EpOpt = Annotated[int, typer.Option("--ep", help="expert-parallel degree (MoE); divides tp × dp")]
ZeroOpt = Annotated[int, typer.Option("--zero", help="3: shard weights over dp (ZeRO-3 / FSDP)")]
PpSplitOpt = Annotated[Optional[str], typer.Option("--pp-split", help="layers per stage by hand, e.g. 48,46")]
ContextOpt = Annotated[int, typer.Option("--context", help="tokens per sequence (prompt + generated)")]
BatchOpt = Annotated[int, typer.Option("--batch", help="sequences in flight per model replica")]
ChunkOpt = Annotated[Optional[int], typer.Option("--prefill-chunk", help="prefill chunk tokens \\[default: min(context, 8192)]")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="weight dtype: bf16 fp16 fp32")]
QuantOpt = Annotated[Optional[str], typer.Option("--quant", help="none fp8 int8 int4 awq nvfp4 \\[default: the checkpoint's own]")]
GroupOpt = Annotated[int, typer.Option("--group-size", help="int8/int4 group size")]
KvDtypeOpt = Annotated[str, typer.Option("--kv-dtype", help="KV cache dtype: bf16 fp16 fp8")]
BlockOpt = Annotated[int, typer.Option("--block-size", help="KV cache page size in tokens")]
ClusterOpt = Annotated[Optional[str], typer.Option("--cluster", help="a cluster spec: name in cluster_specs/ or a YAML path")]
GpuOpt = Annotated[Optional[str], typer.Option("--gpu", help="GPU type, as many as the layout needs, 8 per node \\[default: h100]")]
GpuMemOpt = Annotated[Optional[str], typer.Option("--gpu-memory", help="plan for a card of this capacity, e.g. 95.01GiB")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object instead of tables")]
EngineOpt = Annotated[Optional[str], typer.Option("--engine", help="vllm | sglang | hf: the engine's own figures and start verdict")]
GpuUtilOpt = Annotated[Optional[float], typer.Option("--gpu-memory-utilization", help="vLLM: fraction of the GPU it may take \\[0.9]")]
MaxModelLenOpt = Annotated[Optional[int], typer.Option("--max-model-len", help="vLLM: longest request \\[model's max]")]
BatchedTokensOpt = Annotated[Optional[int], typer.Option("--max-num-batched-tokens", help="vLLM: tokens per step \\[by GPU]")]
MaxSeqsOpt = Annotated[Optional[int], typer.Option("--max-num-seqs", help="vLLM: requests per step \\[by GPU]")]
EagerOpt = Annotated[bool, typer.Option("--enforce-eager", help="vLLM: no CUDA graphs")]
KvCacheDtypeOpt = Annotated[Optional[str], typer.Option("--kv-cache-dtype", help="vLLM/SGLang: auto or fp8")]
SamplerOpt = Annotated[Optional[str], typer.Option("--sampler", help="vLLM: native (PyTorch) or flashinfer sampling")]
VllmVersionOpt = Annotated[Optional[str], typer.Option("--vllm-version", help="vLLM engine: v1 (0.10+) or v0")]
MemFracOpt = Annotated[Optional[float], typer.Option("--mem-fraction-static", help="SGLang: static memory fraction \\[by GPU]")]
ChunkedPrefillOpt = Annotated[Optional[int], typer.Option("--chunked-prefill-size", help="SGLang: prefill chunk tokens")]
ContextLengthOpt = Annotated[Optional[int], typer.Option("--context-length", help="SGLang: longest request \\[model's max]")]
MaxTotalTokensOpt = Annotated[Optional[int], typer.Option("--max-total-tokens", help="SGLang: cap on KV pool tokens")]
PromptTokensOpt = Annotated[Optional[int], typer.Option("--prompt-tokens", help="HF generate: prompt length \\[1]")]
GenerateTokensOpt = Annotated[Optional[int], typer.Option("--generate-tokens", help="HF generate: new tokens \\[2048]")]


def _parse_split(text: Optional[str]) -> Optional[tuple[int, ...]]:
    if text is None:
        return None
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise ShardsimError(f"--pp-split {text!r} must be comma-separated whole numbers, e.g. 48,46") from None


def cluster_spec(cluster: Optional[str], gpu: Optional[str], gpu_memory: Optional[str], world_size: int):
    """The ClusterSpec of a command's hardware options (shared by every command that takes them): a named or
    file cluster, else ``world_size`` GPUs of a type (default H100-SXM-80GB) or of a capacity, 8 per node."""
    from . import cluster as clusters
    from .units import parse_size

    if cluster and (gpu or gpu_memory):
        raise ShardsimError("give either --cluster or --gpu/--gpu-memory, not both")
    if gpu and gpu_memory:
        raise ShardsimError("give either --gpu NAME or --gpu-memory SIZE, not both")
    if cluster:
        spec = clusters.load_cluster(cluster)
        clusters.check_fits_cluster(spec, world_size)
        return spec
    card = clusters.custom_gpu(parse_size(gpu_memory)) if gpu_memory else clusters.resolve_gpu(gpu or "h100")
    return clusters.cluster_for_gpu(card, world_size)


def _hardware(cluster: Optional[str], gpu: Optional[str], gpu_memory: Optional[str], world_size: int, tp: int):
    """(cluster name, GPU spec, capacity bytes, gpus per node, warnings) for a command's hardware options."""
    from . import cluster as clusters

    spec = cluster_spec(cluster, gpu, gpu_memory, world_size)
    warnings = clusters.tp_group_crossings(spec, tp, world_size)
    return spec.name, spec.gpu, spec.gpu.capacity_bytes, spec.gpus_per_node, warnings


def _workload(context: int, batch: int, prefill_chunk: Optional[int], dtype: str, quant: Optional[str],
              group_size: int, kv_dtype: str, block_size: int):
    from .constants import PREFILL_CHUNK_TOKENS
    from .plan import Workload
    from .quant import QUANT_CHOICES, quant_from_choice
    from .units import canonical_dtype

    if quant is not None and quant not in QUANT_CHOICES:
        raise ShardsimError(f"--quant {quant!r} is not known; accepted: {', '.join(QUANT_CHOICES)}")
    if group_size == 0 or group_size < -1:
        raise ShardsimError(f"--group-size {group_size} is not valid; accepted: a positive size (e.g. 128) or -1 (per channel)")
    return Workload(
        context=context, batch=batch, prefill_chunk=prefill_chunk if prefill_chunk is not None else PREFILL_CHUNK_TOKENS,
        dtype=canonical_dtype(dtype), quant=quant_from_choice(quant, group_size) if quant is not None else None,
        kv_dtype=canonical_dtype(kv_dtype, ("bf16", "fp16", "fp32", "fp8")), block_size=block_size,
    ).checked()


@app.command()
def plan(
    model: ModelArg = None, config: ConfigOpt = None,
    tp: TpOpt = 1, pp: PpOpt = 1, dp: DpOpt = 1, ep: EpOpt = 1, zero: ZeroOpt = 0, pp_split: PpSplitOpt = None,
    context: ContextOpt = 8192, batch: BatchOpt = 1, prefill_chunk: ChunkOpt = None,
    dtype: DtypeOpt = "bf16", quant: QuantOpt = None, group_size: GroupOpt = 128, kv_dtype: KvDtypeOpt = "bf16",
    block_size: BlockOpt = 16,
    cluster: ClusterOpt = None, gpu: GpuOpt = None, gpu_memory: GpuMemOpt = None, as_json: JsonOpt = False,
    engine: EngineOpt = None, gpu_memory_utilization: GpuUtilOpt = None, max_model_len: MaxModelLenOpt = None,
    max_num_batched_tokens: BatchedTokensOpt = None, max_num_seqs: MaxSeqsOpt = None, enforce_eager: EagerOpt = False,
    kv_cache_dtype: KvCacheDtypeOpt = None, sampler: SamplerOpt = None, vllm_version: VllmVersionOpt = None,
    mem_fraction_static: MemFracOpt = None, chunked_prefill_size: ChunkedPrefillOpt = None,
    context_length: ContextLengthOpt = None, max_total_tokens: MaxTotalTokensOpt = None,
    prompt_tokens: PromptTokensOpt = None, generate_tokens: GenerateTokensOpt = None,
) -> None:
    """Memory of every GPU for MODEL on a TP × PP × DP × EP layout, the fit verdict and the largest context/batch."""
    from .layout import Layout, validate_layout
    from .models import resolve_model
    from .plan import plan as make_plan

    spec = resolve_model(model, config)
    layout = validate_layout(spec, Layout(tp=tp, pp=pp, dp=dp, ep=ep, zero=zero, pp_split=_parse_split(pp_split)))
    workload = _workload(context, batch, prefill_chunk, dtype, quant, group_size, kv_dtype, block_size)
    cluster_name, gpu_spec, capacity, node_size, warnings = _hardware(cluster, gpu, gpu_memory, layout.world_size, tp)
    report = make_plan(spec, layout, workload, capacity, node_size=node_size, cluster_name=cluster_name,
                       gpu_name=gpu_spec.name, warnings=warnings)
    engine_rep = None
    if engine:
        from .engines.run import engine_report

        knobs = {"vllm": dict(gpu_memory_utilization=gpu_memory_utilization, max_model_len=max_model_len,
                              max_num_batched_tokens=max_num_batched_tokens, max_num_seqs=max_num_seqs,
                              enforce_eager=enforce_eager or None, kv_cache_dtype=kv_cache_dtype,
                              block_size=block_size, sampler=sampler, version=vllm_version),
                 "sglang": dict(mem_fraction_static=mem_fraction_static, chunked_prefill_size=chunked_prefill_size,
                                context_length=context_length, max_total_tokens=max_total_tokens,
                                kv_cache_dtype=kv_cache_dtype),
                 "hf": dict(prompt_tokens=prompt_tokens, generate_tokens=generate_tokens, batch=batch)}.get(engine, {})
        engine_rep = engine_report(engine, spec, layout, capacity, gpu_spec.name,
                                   getattr(gpu_spec, "compute_capability", None),
                                   getattr(gpu_spec, "nvidia_smi_total_bytes", None), workload.dtype, report.quant, knobs)
    if as_json:
        out = report.to_dict()
        if engine_rep is not None:
            out["engine"] = engine_rep.to_dict()
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
        return
    from .report import render_engine, render_plan

    console = _console()
    render_plan(report, console)
    if engine_rep is not None:
        render_engine(engine_rep, console)


@app.command()
def models(as_json: JsonOpt = False) -> None:
    """The Qwen3 presets: parameters, active parameters, bf16 bytes, KV bytes per token."""
    from .memory.weights import total_weight_bytes
    from .models import PRESET_ALIASES, get_preset
    from .tensors import active_parameter_count, parameter_count

    rows = []
    for full, aliases in PRESET_ALIASES.items():
        spec = get_preset(full)
        rows.append({
            "name": full, "aliases": list(aliases), "architecture": spec.architecture,
            "params": parameter_count(spec), "active_params": active_parameter_count(spec),
            "bf16_bytes": total_weight_bytes(spec, "bf16", spec.quant.model_copy(update={"method": "none"})),
            "weight_bytes": total_weight_bytes(spec, "bf16"), "quant": spec.quant.method,
            "kv_bytes_per_token": spec.kv_bytes_per_token(2), "layers": spec.num_layers, "heads": spec.num_heads,
            "kv_heads": spec.num_kv_heads, "head_dim": spec.head_dim, "experts": spec.num_experts,
            "max_context": spec.max_position_embeddings,
        })
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    from rich.table import Table

    table = Table(show_edge=False, header_style="bold")
    for col in ("model", "alias", "params", "active", "bf16 bytes", "format", "weight bytes", "KV B/token", "layers",
                "heads/kv", "experts"):
        table.add_column(col, justify="left" if col in ("model", "alias", "format") else "right", no_wrap=True)
    for r in rows:
        table.add_row(r["name"], r["aliases"][0], f"{r['params']:,}", f"{r['active_params']:,}", f"{r['bf16_bytes']:,}",
                      r["quant"] if r["quant"] != "none" else "bf16", f"{r['weight_bytes']:,}",
                      f"{r['kv_bytes_per_token']:,}", str(r["layers"]), f"{r['heads']}/{r['kv_heads']}",
                      str(r["experts"] or "–"))
    _console().print(table)


@app.command()
def calibrate(
    path: Annotated[str, typer.Argument(help="measurements, one JSON object per line (see ../shared/calibration)")],
    as_json: JsonOpt = False,
) -> None:
    """Run published (or your own) engine measurements through shardsim: predicted vs measured, per figure."""
    from .calibrate import calibrate as run_calibration
    from .calibrate import summary

    results = run_calibration(path)
    summ = summary(results)
    if as_json:
        rows = [{"line": r.line, "label": r.label, "ok": r.ok, "error": r.error, "starts_predicted": r.starts_predicted,
                 "figures": [{"name": f.name, "predicted": f.predicted, "measured": f.measured, "unit": f.unit,
                              "error_pct": 100 * f.error, "bound_pct": None if f.bound is None else 100 * f.bound,
                              "ok": f.ok} for f in r.figures]} for r in results]
        sys.stdout.write(json.dumps({"rows": rows, "summary": summ}, indent=2) + "\n")
    else:
        from rich.table import Table

        console = _console()
        table = Table(show_edge=False, header_style="bold")
        for col in ("line", "measurement", "figure", "predicted", "measured", "error", "bound", ""):
            table.add_column(col, justify="right" if col in ("line", "predicted", "measured", "error", "bound") else "left")
        for r in results:
            if r.error:
                table.add_row(str(r.line), r.label, "[red]" + r.error + "[/]", "", "", "", "", "[red]✗[/]")
            for i, f in enumerate(r.figures):
                table.add_row(str(r.line) if i == 0 else "", r.label if i == 0 else "", f.name,
                              f"{f.predicted:,.4g} {f.unit}", f"{f.measured:,.6g} {f.unit}", f"{100 * f.error:+.2f} %",
                              "–" if f.bound is None else f"±{100 * f.bound:g} %", "[green]✓[/]" if f.ok else "[red]✗[/]")
            if r.starts_predicted is not None:
                table.add_row("", "", "starts", "yes" if r.starts_predicted else "no", "yes", "", "",
                              "[green]✓[/]" if r.starts_predicted else "[red]✗[/]")
        console.print(table)
        summary_table = Table(show_edge=False, header_style="bold", title="summary")
        for col in ("figure", "rows", "max |error|", "mean |error|"):
            summary_table.add_column(col, justify="left" if col == "figure" else "right")
        for name, f in summ["figures"].items():
            summary_table.add_row(name, str(f["n"]), f"{f['max_abs_error_pct']:.2f} %", f"{f['mean_abs_error_pct']:.2f} %")
        console.print(summary_table)
        console.print(f"{summ['rows_ok']} of {summ['rows']} rows within their bounds · start verdicts right: "
                      f"{summ['start_verdicts_right']} of {summ['rows']}"
                      + (f" · out of bounds: lines {summ['rows_failed']}" if summ["rows_failed"] else ""))
    if summ["rows_failed"]:
        raise typer.Exit(1)


@app.command()
def gpus(as_json: JsonOpt = False) -> None:
    """The GPU catalog: capacity as the CUDA runtime reports it, beside the nominal size."""
    from .cluster import gpu_catalog

    cat = gpu_catalog()
    if as_json:
        sys.stdout.write(json.dumps([g.model_dump() for g in cat.values()], indent=2) + "\n")
        return
    from rich.table import Table

    from .units import format_bytes

    table = Table(show_edge=False, header_style="bold")
    for col in ("gpu", "aliases", "nominal", "CUDA capacity", "bytes"):
        table.add_column(col)
    for g in cat.values():
        table.add_row(g.name, ", ".join(g.aliases), g.nominal, format_bytes(g.capacity_bytes), f"{g.capacity_bytes:,}")
    _console().print(table)


@app.command()
def clusters(as_json: JsonOpt = False) -> None:
    """The cluster specs in cluster_specs/."""
    from .cluster import list_clusters

    specs = list_clusters()
    if as_json:
        sys.stdout.write(json.dumps([c.model_dump() for c in specs], indent=2, default=str) + "\n")
        return
    from rich.table import Table

    table = Table(show_edge=False, header_style="bold")
    for col in ("cluster", "gpu", "nodes × gpus", "intra-node", "inter-node", "$/hour", "purchase $"):
        table.add_column(col)
    for c in specs:
        inter = c.inter_node_link.kind if c.inter_node_link else "–"
        table.add_row(c.name, c.gpu.name, f"{c.nodes} × {c.gpus_per_node}", c.intra_node_link.kind, inter,
                      "–" if c.price_per_hour_usd is None else f"{c.price_per_hour_usd:,.2f}",
                      "–" if c.purchase_price_usd is None else f"{c.purchase_price_usd:,.0f}")
    _console().print(table)


@app.command()
def validate(
    model: ModelArg = None, config: ConfigOpt = None,
    tp: TpOpt = 1, pp: PpOpt = 1, dp: DpOpt = 1, ep: EpOpt = 1, zero: ZeroOpt = 0,
    backend: Annotated[str, typer.Option("--backend", help="torch | deepspeed | transformers")] = "torch",
    address: Annotated[Optional[str], typer.Option("--address", help="Ray cluster: auto or HOST:PORT \\[default: a local one]")] = None,
    device: Annotated[str, typer.Option("--device", help="cpu (gloo) or cuda (nccl)")] = "cpu",
    batch: BatchOpt = 1,
    context: Annotated[int, typer.Option("--context", help="tokens per sequence: prompt + decode steps")] = 128,
    decode_steps: Annotated[int, typer.Option("--decode-steps", help="greedy decode steps after the prefill")] = 4,
    layers: Annotated[Optional[int], typer.Option("--layers", help="keep the full width and the first K decoder layers")] = None,
    checkpoint: Annotated[Optional[str], typer.Option("--checkpoint", help="a real HF checkpoint directory \\[default: write a seeded one]")] = None,
    timeout: Annotated[float, typer.Option("--timeout", help="seconds allowed per phase")] = 300.0,
    run_dir: Annotated[Optional[str], typer.Option("--run-dir", help="where results.jsonl goes \\[default: build/runs/<time>-<model>-<layout>]")] = None,
    inject_fault: Annotated[Optional[str], typer.Option("--inject-fault", hidden=True, help="RANK:PHASE kills that rank's worker")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Prove a plan: Ray starts one worker per rank, each loads its real shard, runs inference and measures."""
    from .validate_cmd import run_validate

    code = run_validate(model=model, config=config, tp=tp, pp=pp, dp=dp, ep=ep, zero=zero, backend=backend,
                        address=address, device=device, batch=batch, context=context, decode_steps=decode_steps,
                        layers=layers, checkpoint=checkpoint, timeout=timeout, inject_fault=inject_fault, run_dir=run_dir,
                        as_json=as_json, console=None if as_json else _console(), argv=sys.argv)
    if code:
        raise typer.Exit(code)


def _console():
    """A rich console: the terminal's width, or 160 columns when piped so tables stay on one line."""
    from rich.console import Console

    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


CORE_COMMANDS = ("plan", "validate", "calibrate", "models", "gpus", "clusters")


def register_review_commands() -> None:
    """Add review, sweep and report to the app (kept off the start-up path of the core commands)."""
    from . import cli_review  # noqa: F401


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the app, turn every input error into one line on stderr and exit code 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in CORE_COMMANDS:  # --help, review, sweep, report, or a typo to suggest from
        register_review_commands()
    try:
        result = app(args=args, prog_name="shardsim", standalone_mode=False)
    except ShardsimError as exc:
        sys.stderr.write(f"shardsim: error: {_one_line(exc)}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("shardsim: interrupted\n")
        return 130
    except Exception as exc:  # click's usage errors (bad option, non-integer value …) carry format_message()
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            sys.stderr.write(f"shardsim: error: {_one_line(exc.format_message())}\n")
            return 2
        if type(exc).__name__ == "Abort":
            return 1
        raise
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
