"""``shardsim validate``: checks the request, runs ``launch`` (Ray workers), prints predicted vs measured."""

from __future__ import annotations

import json
import os
import shlex
import sys

from .errors import ShardsimError

BACKENDS = ("torch", "deepspeed", "transformers")


def _check_backend(backend: str, layout, zero: int, device: str, kv_heads: int = 0, moe: bool = False) -> None:
    def layout_kv_heads(_layout) -> int:
        return kv_heads

    if backend not in BACKENDS:
        raise ShardsimError(f"--backend {backend!r} is not known; accepted: {', '.join(BACKENDS)}")
    if device not in ("cpu", "cuda"):
        raise ShardsimError(f"--device {device!r} is not known; accepted: cpu, cuda")
    if backend == "torch":
        if zero:
            raise ShardsimError("the torch backend shards by TP/PP/EP rules only; use --backend deepspeed for --zero 3")
        if layout.ep > layout.tp:
            raise ShardsimError(f"the torch backend runs EP inside the TP group (ep ≤ tp); --ep {layout.ep} > --tp {layout.tp} is not supported")
    if backend == "deepspeed":
        # ZeRO-3 inference only: DeepSpeed's AutoTP (init_inference) shards by its own rules (embedding and experts
        # replicated, lm_head split on the hidden dim), which are not shardsim's.
        if zero != 3:
            raise ShardsimError("the deepspeed backend validates ZeRO-3 only (--zero 3 --dp N): DeepSpeed AutoTP shards by rules shardsim does not model (replicated embedding and experts, lm_head split on hidden); use --backend torch or transformers for TP")
        if layout.tp != 1 or layout.pp != 1 or layout.ep != 1:
            raise ShardsimError(f"the deepspeed backend runs ZeRO-3 over data parallel ranks only; use --tp 1 --pp 1 --ep 1 with --dp N (got tp {layout.tp}, pp {layout.pp}, ep {layout.ep})")
        if moe:
            raise ShardsimError("the deepspeed backend does not validate MoE models: transformers fuses the experts into [E, 2I, H] tensors, so ZeRO-3 partitions them differently from the checkpoint's per-expert tensors; use --backend torch or transformers")
        if device != "cpu":
            raise ShardsimError("the deepspeed backend validates on CPU only; use --device cpu")
    if backend in ("transformers", "deepspeed") and layout.pp > 1:
        raise ShardsimError(f"the {backend} backend has no pipeline parallelism; use --pp 1 or --backend torch")
    if backend == "transformers":
        if layout.dp > 1:
            raise ShardsimError("the transformers backend shards one replica over all ranks; use --dp 1 (or --backend torch)")
        if layout.tp > layout_kv_heads(layout):
            raise ShardsimError(f"transformers' tensor parallel splits k/v_proj by rows and never replicates KV heads, so --tp above the {layout_kv_heads(layout)} KV heads fails; use --backend torch")
        if layout.ep > 1 and layout.ep != layout.tp:
            raise ShardsimError(f"transformers' expert parallel needs --ep equal to --tp (got ep {layout.ep}, tp {layout.tp})")


def run_validate(*, model, config, tp, pp, dp, ep, zero, backend, address, device, batch, context, decode_steps,
                 layers, checkpoint, timeout, inject_fault, as_json, console, argv, run_dir=None) -> int:
    from .layout import Layout, validate_layout
    from .models import resolve_model

    spec = resolve_model(model, config)
    if layers is not None:
        spec = spec.truncated(layers)
    if spec.quant.method != "none":
        raise ShardsimError(f"{spec.name} is quantized ({spec.quant.method}); validation runs bf16 checkpoints only")
    layout = validate_layout(spec, Layout(tp=tp, pp=pp, dp=dp, ep=ep, zero=zero))
    _check_backend(backend, layout, zero, device, spec.num_kv_heads, spec.is_moe)
    if not 2 <= context <= 65536:
        raise ShardsimError(f"--context {context} is out of range for a validation run; accepted: 2 … 65536")
    if not 0 <= decode_steps < context:
        raise ShardsimError(f"--decode-steps {decode_steps} must be ≥ 0 and below --context {context}")
    if not 1 <= timeout <= 86400:
        raise ShardsimError(f"--timeout {timeout} is out of range; accepted: 1 … 86400 seconds")
    if not 1 <= batch <= 256:
        raise ShardsimError(f"--batch {batch} is out of range for a validation run; accepted: 1 … 256")
    if layout.world_size > 64:
        raise ShardsimError(f"validation runs up to 64 ranks; this layout has {layout.world_size}")
    fault = None
    if inject_fault:
        try:
            rank_s, phase = inject_fault.split(":")
            fault = (int(rank_s), phase)
        except ValueError:
            raise ShardsimError("--inject-fault takes RANK:PHASE, e.g. 1:forward") from None
    source_config = None
    if config:
        source_config = json.loads(open(config if config.endswith(".json") else f"{config}/config.json").read())
    else:
        from .models import PRESETS_DIR

        source_config = json.loads((PRESETS_DIR / f"{spec.name.split(' ')[0]}.json").read_text())
    try:
        import ray  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        raise ShardsimError(f"validation needs the validation stack ({exc.name} is missing); run bin/test once or pip install -e '.[validate]'") from None
    from launch.driver import ValidateRequest
    from launch.ray_run import run

    req = ValidateRequest(model=model, config=config, tp=tp, pp=pp, dp=dp, ep=ep, backend=backend, address=address,
                          device=device, batch=batch, context=context, decode_steps=decode_steps, layers=layers,
                          checkpoint=checkpoint, phase_timeout_s=timeout, fault=fault, run_dir=run_dir,
                          command=shlex.join(["shardsim"] + list(argv[1:])), source_config=source_config)
    # Ray's raylet and DeepSpeed print to stdout; keep stdout for the report (and --json parseable).
    sys.stdout.flush()
    saved_stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        record = run(req, spec, layout, quiet=as_json)
    finally:
        sys.stdout.flush()
        os.dup2(saved_stdout, 1)
        os.close(saved_stdout)
    if as_json:
        sys.stdout.write(json.dumps(record, indent=2, default=str) + "\n")
    else:
        render_validation(record, console)
    return 0 if record["passed"] else 1


def render_validation(record: dict, console) -> None:
    from rich.table import Table

    lay = record["layout"]
    console.print(f"[bold]validate[/] {record['model']} · TP={lay['tp']} PP={lay['pp']} DP={lay['dp']} EP={lay['ep']} "
                  f"· {record['backend']} on {record['device']} · context {record['context']} "
                  f"({record['prompt_tokens']} prompt + {record['decode_steps']} decode) × batch {record['batch']}")
    table = Table(show_edge=False, header_style="bold")
    for col in ("rank", "term", "predicted B", "measured B", "diff B", "diff %", "verdict"):
        table.add_column(col, justify="left" if col in ("rank", "term", "verdict") else "right")
    from .report import group_runs

    same = lambda r: json.dumps([r.get("error"), r["comparison"]], sort_keys=True, default=str)  # noqa: E731
    for run, label in group_runs(record["ranks"], same):
        r = run[0]
        if r.get("error"):
            table.add_row(label, "—", "", "", "", "", f"[red]FAILED: {r['error']}[/]")
            continue
        for term, row in r["comparison"].items():
            if row["measured"] is None:
                table.add_row(label, term, f"{row['predicted']:,}", "—", "", "", "[yellow]not measured[/]")
                continue
            verdict = "[green]ok[/]" if row["ok"] else "[red]MISMATCH[/]"
            low = row.get("predicted_low", row["predicted"])
            shown = f"{row['predicted']:,}" if low == row["predicted"] else f"{low:,} … {row['predicted']:,}"
            table.add_row(label if term == "weights" else "", term, shown,
                          f"{row['measured']:,}", f"{row['diff']:+,}", f"{row['diff_pct']:+.2f}", verdict)
    console.print(table)
    meas = [r["measured"] for r in record["ranks"] if r["measured"].get("rss_anon")]
    if meas:
        console.print(f"RSS per rank: anon {min(m['rss_anon'] for m in meas) / 2**20:,.0f}–{max(m['rss_anon'] for m in meas) / 2**20:,.0f} MiB, "
                      f"file-backed {min(m['rss_file'] for m in meas) / 2**20:,.0f}–{max(m['rss_file'] for m in meas) / 2**20:,.0f} MiB")
    lg = record.get("logits")
    if lg:
        if "max_rel_l2_error" in lg:
            console.print(f"logits vs unsharded reference over {lg['positions']} positions: ‖Δ‖₂/‖ref‖₂ median "
                          f"{100 * lg['median_rel_l2_error']:.2f} % (≤ {100 * lg['tolerance']:.0f} %), worst "
                          f"{100 * lg['max_rel_l2_error']:.2f} % (≤ {100 * lg['tolerance_any_position']:.0f} %) · "
                          f"prefill argmax {'agrees' if lg['prefill_argmax_agrees'] else 'differs'} · "
                          + ("[green]ok[/]" if lg["ok"] else "[red]MISMATCH[/]"))
        else:
            console.print(f"[red]logits check failed: {lg.get('error')}[/]")
    for rank, cause in record.get("failed", {}).items():
        console.print(f"[red]rank {rank} failed: {cause}[/]")
    t = record["timings"]
    console.print("times: " + " · ".join(f"{k[:-2]} {v:.1f} s" for k, v in t.items()))
    console.print(f"results: {record['run_dir']}/results.jsonl")
    console.print("[bold green]PASSED[/]: weights and KV cache match to the byte on every rank, activations within "
                  "±25 % of the prediction, logits match the unsharded reference" if record["passed"] else "[bold red]FAILED[/]")
