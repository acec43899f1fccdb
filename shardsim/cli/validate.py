"""``shardsim validate``: prove a plan with real sharded runs (Ray workers, one per rank), predicted vs measured."""

from __future__ import annotations

import os
import shlex
import sys
from dataclasses import dataclass
from typing import Any, Optional

import typer

from shardsim.cli import build, common
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


@dataclass(frozen=True)
class ValidateOptions:
    """``validate``'s options, as given (None: not given)."""

    model: Optional[str] = None
    config: Optional[str] = None
    layout: Any = None  # build.LayoutOptions
    backend: str = "torch"
    address: Optional[str] = None
    device: str = "cpu"
    batch: int = 1
    context: Optional[int] = None
    decode_steps: int = 4
    layers: Optional[int] = None
    checkpoint: Optional[str] = None
    timeout: float = 300.0
    run_dir: Optional[str] = None
    inject_fault: Optional[str] = None
    train: bool = False
    train_run: Any = None  # validate_train.TrainRun


def validate_request(o: ValidateOptions):
    """The ``ValidateRequest`` (``shardsim.launch.session.request``): the model as run, the validated layout, and
    (with --train) the training setup; every refusal of a validation here, before anything heavy starts."""
    from shardsim.core.layout import Layout, validate_layout
    from shardsim.launch.serve.registry import check_backend
    from shardsim.launch.session import request
    from shardsim.presets import preset_config, read_config, resolve_model

    lo = o.layout
    spec = resolve_model(o.model, o.config)
    if o.layers is not None:
        spec = spec.truncated(o.layers)
    if spec.quant.method != "none":
        raise ShardsimError(f"{spec.name} is quantized ({spec.quant.method}); validation runs bf16 checkpoints only")
    where = {"address": o.address, "device": o.device, "layers": o.layers, "checkpoint": o.checkpoint,
             "phase_timeout_s": o.timeout, "run_dir": o.run_dir, "command": shlex.join(["shardsim"] + sys.argv[1:])}
    if o.train:
        if o.context is not None or o.batch != 1 or o.decode_steps != 4:
            raise ShardsimError("--context, --batch and --decode-steps are inference options; with --train use "
                                "--seq-len, --micro-batch and --steps")
        from shardsim.cli.validate_train import train_request

        return train_request(spec, o.model, o.config, Layout(tp=lo.tp, pp=lo.pp, dp=lo.dp, ep=lo.ep),
                             o.train_run, {**where, "fault": request.parse_fault(o.inject_fault, train=True)})
    r = o.train_run
    if r.micro_batch is not None or r.seq_len is not None or r.steps != 2 or r.grad_accum is not None \
            or r.fsdp is not None:
        raise ShardsimError("--steps, --micro-batch, --seq-len, --grad-accum and --fsdp are options of validate "
                            "--train")
    layout = validate_layout(spec, Layout(tp=lo.tp, pp=lo.pp, dp=lo.dp, ep=lo.ep, zero=lo.zero))
    context = common.resolve_context(o.context, common.VALIDATE_CONTEXT)
    check_backend(o.backend, layout, o.device, spec.num_kv_heads, spec.is_moe, spec.linear is not None)
    request.check_run(layout, context, o.decode_steps, o.batch, o.timeout)
    fault = request.parse_fault(o.inject_fault)
    source_config = read_config(o.config) if o.config else preset_config(o.model)
    return request.ValidateRequest(model=spec, layout=layout, backend=o.backend, batch=o.batch, context=context,
                                   decode_steps=o.decode_steps, fault=fault, source_config=source_config, **where)


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
    real training steps) and measures. Exit codes: 0 passed, 1 did not pass or could not finish (a full disk), 2
    bad input, 130 / 143 stopped by Ctrl-C / SIGTERM; a run that started ends with a record in its results.jsonl."""
    from shardsim.cli.validate_train import TrainRun

    request = validate_request(ValidateOptions(
        model, config, build.LayoutOptions(tp, pp, dp, ep, zero), backend, address, device, batch, context,
        decode_steps, layers, checkpoint, timeout, run_dir, inject_fault, train,
        TrainRun(backend=backend, zero=zero, fsdp=fsdp, steps=steps, micro_batch=micro_batch, seq_len=seq_len,
                 grad_accum=grad_accum)))
    try:
        import ray  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        raise ShardsimError(f"validation needs the validation stack ({exc.name} is missing); run bin/test once or "
                            "pip install 'shardsim[validate]' after the CPU torch wheel") from None
    if request.setup is not None:
        from shardsim.launch.train.run import run_train
        from shardsim.render.train_text import render_train_validation

        return _report(lambda: run_train(request, quiet=as_json), render_train_validation, as_json)
    from shardsim.launch.serve.run import run
    from shardsim.render.validation_text import render_validation

    _report(lambda: run(request, quiet=as_json), render_validation, as_json)


EXIT_FAILED = 1
"""The run did not pass, or could not finish for a reason of its machine (a full disk): one line, a record."""
EXIT_SIGNAL = {"SIGINT": 130, "SIGTERM": 143}
"""128 + the signal's number, as a shell reports a command a signal stopped (bash(1), "EXIT STATUS")."""


def _report(run_it, render, as_json: bool) -> None:
    """Run a validation with stdout pointed at stderr (Ray's raylet and DeepSpeed print to stdout; the report and
    --json keep it), then print its record. Exit codes: 0 passed; 1 did not pass, or failed (a full disk: one
    line, a ``failed`` record); 2 bad input (``shardsim.cli.main``); 130 / 143 stopped by SIGINT / SIGTERM (one
    line, an ``interrupted`` record)."""
    from shardsim.launch.session.lifecycle import RunFailed
    from shardsim.launch.session.signals import RunInterrupted

    sys.stdout.flush()
    saved_stdout = os.dup(1)
    os.dup2(2, 1)
    failed = None
    try:
        record = run_it()
    except RunInterrupted as exc:  # workers stopped, an 'interrupted' record appended: one line, 128 + signal
        sys.stderr.write(f"shardsim: {exc}\n")
        raise typer.Exit(EXIT_SIGNAL.get(exc.signal_name, 143)) from None
    except RunFailed as exc:  # a 'failed' record appended where the disk still took it
        if exc.record is None:
            sys.stderr.write(f"shardsim: error: {exc}\n")
            raise typer.Exit(EXIT_FAILED) from None
        record, failed = exc.record, str(exc)
    finally:
        sys.stdout.flush()
        os.dup2(saved_stdout, 1)
        os.close(saved_stdout)
    if as_json:
        common.print_json(record)
    else:
        render(record, common.console())
    if failed:  # the run finished but its result record was not kept: the verdict above, then the one line
        sys.stderr.write(f"shardsim: error: {failed}\n")
    if failed or not record["passed"]:
        raise typer.Exit(EXIT_FAILED)


def register(app) -> None:
    app.command()(validate)
