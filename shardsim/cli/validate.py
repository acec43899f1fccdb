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
) -> None:
    """Prove a plan: Ray starts one worker per rank, each loads its real shard, runs inference (or, with --train,
    real training steps) and measures."""
    from shardsim.core.layout import Layout, validate_layout
    from shardsim.launch import request
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
        return _validate_train(spec, model, config, Layout(tp=tp, pp=pp, dp=dp, ep=ep), zero, backend, address,
                               device, layers, checkpoint, timeout, run_dir, as_json, steps, micro_batch, seq_len)
    if micro_batch is not None or seq_len is not None or steps != 2:
        raise ShardsimError("--steps, --micro-batch and --seq-len are options of validate --train")
    layout = validate_layout(spec, Layout(tp=tp, pp=pp, dp=dp, ep=ep, zero=zero))
    context = common.resolve_context(context, common.VALIDATE_CONTEXT)
    request.check_backend(backend, layout, device, spec.num_kv_heads, spec.is_moe)
    request.check_run(layout, context, decode_steps, batch, timeout)
    fault = request.parse_fault(inject_fault)
    source_config = read_config(config) if config else preset_config(model)
    try:
        import ray  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        raise ShardsimError(f"validation needs the validation stack ({exc.name} is missing); run bin/test once or "
                            "pip install 'shardsim[validate]' after the CPU torch wheel") from None
    from shardsim.launch.driver import ValidateRequest
    from shardsim.launch.ray_run import run

    req = ValidateRequest(model=model, config=config, tp=tp, pp=pp, dp=dp, ep=ep, backend=backend, address=address,
                          device=device, batch=batch, context=context, decode_steps=decode_steps, layers=layers,
                          checkpoint=checkpoint, phase_timeout_s=timeout, fault=fault, run_dir=run_dir,
                          command=shlex.join(["shardsim"] + sys.argv[1:]), source_config=source_config)
    from shardsim.render.validation_text import render_validation

    _report(lambda: run(req, spec, layout, quiet=as_json), render_validation, as_json)


def _validate_train(spec, model, config, layout, zero, backend, address, device, layers, checkpoint, timeout,
                    run_dir, as_json, steps, micro_batch, seq_len) -> None:
    """validate --train: real training steps through DeepSpeed ZeRO 1/2/3 or FSDP2 on every rank, states compared
    to the byte (``launch/train_run.py``)."""
    from shardsim.core.layout import validate_layout
    from shardsim.core.train.setup import TrainSetup, check_setup
    from shardsim.presets import preset_config, read_config

    if backend not in ("deepspeed", "fsdp", "torch"):
        raise ShardsimError(f"--backend {backend!r:.40} does not train here; accepted with --train: deepspeed, fsdp, "
                            "torch (TP with DTensor)")
    if backend == "deepspeed" and zero not in (1, 2, 3):
        raise ShardsimError("validate --train --backend deepspeed needs --zero 1, 2 or 3")
    if backend == "fsdp" and zero:
        raise ShardsimError("--zero is DeepSpeed's; --backend fsdp shards with FSDP2")
    if backend == "torch" and (layout.dp > 1 or layout.pp > 1 or layout.ep > 1 or layout.tp < 2):
        raise ShardsimError("validate --train --backend torch runs tensor parallel: --tp 2+, --dp/--pp/--ep 1")
    if backend != "torch" and (layout.tp > 1 or layout.pp > 1 or layout.ep > 1):
        raise ShardsimError("validate --train shards over data parallel ranks (--dp); --tp/--pp/--ep are not run "
                            "(--backend torch runs --tp)")
    if backend == "torch" and spec.tie_word_embeddings:
        raise ShardsimError(f"{spec.name} ties its embeddings; --backend torch splits embed_tokens and lm_head "
                            "differently: use an untied model (8b, 14b, 32b)")
    if not 1 <= steps <= 100:
        raise ShardsimError(f"--steps {steps} is out of range; accepted: 1 … 100")
    setup = TrainSetup(framework=backend, zero=zero, micro_batch=micro_batch or 1, seq_len=seq_len or 64)
    if not 2 <= setup.seq_len <= 8192 or setup.micro_batch > 64:
        raise ShardsimError("validate --train runs --seq-len 2 … 8192 and --micro-batch 1 … 64")
    layout = validate_layout(spec, layout)
    setup = check_setup(spec, layout, setup)
    request_check = __import__("shardsim.launch.request", fromlist=["check_run"])
    request_check.check_run(layout, 2, 0, 1, timeout)
    try:
        import ray  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        raise ShardsimError(f"validation needs the validation stack ({exc.name} is missing); run bin/test once") from None
    from shardsim.launch.driver import ValidateRequest
    from shardsim.launch.train_run import run_train

    req = ValidateRequest(model=model, config=config, dp=layout.dp, backend=backend, address=address, device=device,
                          layers=layers, checkpoint=checkpoint, phase_timeout_s=timeout, run_dir=run_dir,
                          command=shlex.join(["shardsim"] + sys.argv[1:]),
                          source_config=read_config(config) if config else preset_config(model))
    from shardsim.render.train_text import render_train_validation

    _report(lambda: run_train(req, spec, layout, setup, steps, quiet=as_json), render_train_validation, as_json)


def _report(run_it, render, as_json: bool) -> None:
    """Run a validation with stdout pointed at stderr (Ray's raylet and DeepSpeed print to stdout; the report and
    --json keep it), then print its record; exit 1 when it did not pass, 130/143 when a signal stopped it."""
    from shardsim.launch.ray_run import RunInterrupted

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
