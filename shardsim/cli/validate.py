"""``shardsim validate``: prove a plan with real sharded runs (Ray workers, one per rank), predicted vs measured."""

from __future__ import annotations

import os
import shlex
import sys

import typer

from shardsim.cli import common
from shardsim.cli.options import (
    AddressOpt,
    BackendOpt,
    BatchOpt,
    CheckpointOpt,
    ConfigOpt,
    ContextOpt,
    DecodeStepsOpt,
    DeviceOpt,
    DpOpt,
    EpOpt,
    FaultOpt,
    FsdpOpt,
    GradAccumOpt,
    JsonOpt,
    LayersOpt,
    MicroBatchOpt,
    ModelArg,
    PpOpt,
    RunDirOpt,
    SeqLenOpt,
    StepsOpt,
    TimeoutOpt,
    TpOpt,
    TrainOpt,
    ZeroOpt,
)
from shardsim.errors import ShardsimError


def validate(
    model: ModelArg = None, config: ConfigOpt = None,
    tp: TpOpt = 1, pp: PpOpt = 1, dp: DpOpt = 1, ep: EpOpt = 1, zero: ZeroOpt = 0,
    backend: BackendOpt = "torch", address: AddressOpt = None, device: DeviceOpt = "cpu",
    batch: BatchOpt = 1, context: ContextOpt = None, decode_steps: DecodeStepsOpt = 4, layers: LayersOpt = None,
    checkpoint: CheckpointOpt = None, timeout: TimeoutOpt = 300.0, run_dir: RunDirOpt = None,
    inject_fault: FaultOpt = None, as_json: JsonOpt = False,
    train: TrainOpt = False, steps: StepsOpt = 2, micro_batch: MicroBatchOpt = None, seq_len: SeqLenOpt = None,
    grad_accum: GradAccumOpt = None, fsdp: FsdpOpt = None,
) -> None:
    """Prove a plan: Ray starts one worker per rank, each loads its real shard, runs inference (or, with --train,
    real training steps) and measures."""
    from shardsim.core.layout import Layout, validate_layout
    from shardsim.launch.serve.registry import check_backend
    from shardsim.launch.session import request
    from shardsim.presets import preset_config, read_config, resolve_model

    spec = resolve_model(model, config)
    if layers is not None:
        spec = spec.truncated(layers)
    if spec.quant.method != "none":
        raise ShardsimError(f"{spec.name} is quantized ({spec.quant.method}); validation runs bf16 checkpoints only")
    if train:
        if context is not None or batch != 1 or decode_steps != 4 or inject_fault:
            raise ShardsimError("--context, --batch, --decode-steps and --inject-fault are inference options; with "
                                "--train use --seq-len, --micro-batch and --steps")
        from shardsim.cli.validate_train import TrainRun, validate_train

        run = TrainRun(backend=backend, zero=zero, fsdp=fsdp, steps=steps, micro_batch=micro_batch, seq_len=seq_len,
                       grad_accum=grad_accum)
        return validate_train(spec, model, config, Layout(tp=tp, pp=pp, dp=dp, ep=ep), run,
                              {"address": address, "device": device, "layers": layers, "checkpoint": checkpoint,
                               "phase_timeout_s": timeout, "run_dir": run_dir}, as_json, _report)
    if micro_batch is not None or seq_len is not None or steps != 2 or grad_accum is not None or fsdp is not None:
        raise ShardsimError("--steps, --micro-batch, --seq-len, --grad-accum and --fsdp are options of validate "
                            "--train")
    layout = validate_layout(spec, Layout(tp=tp, pp=pp, dp=dp, ep=ep, zero=zero))
    context = common.resolve_context(context, common.VALIDATE_CONTEXT)
    check_backend(backend, layout, device, spec.num_kv_heads, spec.is_moe)
    request.check_run(layout, context, decode_steps, batch, timeout)
    fault = request.parse_fault(inject_fault)
    source_config = read_config(config) if config else preset_config(model)
    try:
        import ray  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        raise ShardsimError(f"validation needs the validation stack ({exc.name} is missing); run bin/test once or "
                            "pip install 'shardsim[validate]' after the CPU torch wheel") from None
    from shardsim.launch.serve.run import run
    from shardsim.launch.session.request import ValidateRequest

    req = ValidateRequest(model=model, config=config, tp=tp, pp=pp, dp=dp, ep=ep, backend=backend, address=address,
                          device=device, batch=batch, context=context, decode_steps=decode_steps, layers=layers,
                          checkpoint=checkpoint, phase_timeout_s=timeout, fault=fault, run_dir=run_dir,
                          command=shlex.join(["shardsim"] + sys.argv[1:]), source_config=source_config)
    from shardsim.render.validation_text import render_validation

    _report(lambda: run(req, spec, layout, quiet=as_json), render_validation, as_json)


def _report(run_it, render, as_json: bool) -> None:
    """Run a validation with stdout pointed at stderr (Ray's raylet and DeepSpeed print to stdout; the report and
    --json keep it), then print its record; exit 1 when it did not pass, 130/143 when a signal stopped it."""
    from shardsim.launch.session.signals import RunInterrupted

    sys.stdout.flush()
    saved_stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        record = run_it()
    except RunInterrupted as exc:  # workers stopped, an 'interrupted' record appended: one line, 128 + signal
        sys.stderr.write(f"shardsim: {exc}\n")
        raise typer.Exit(130 if exc.signal_name == "SIGINT" else 143) from None
    finally:
        sys.stdout.flush()
        os.dup2(saved_stdout, 1)
        os.close(saved_stdout)
    if as_json:
        common.print_json(record)
    else:
        render(record, common.console())
    if not record["passed"]:
        raise typer.Exit(1)


def register(app) -> None:
    app.command()(validate)
