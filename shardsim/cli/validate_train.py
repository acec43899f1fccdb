"""``shardsim validate MODEL --train``: real training steps on every rank (DeepSpeed ZeRO 1/2/3, FSDP2 through
accelerate, torch-native TP / pipelining), each state compared with the prediction to the byte
(``launch/train/run.py``); the refusals of what this validation cannot run, each in one line."""

from __future__ import annotations

from dataclasses import dataclass

from shardsim.errors import ShardsimError

BACKENDS = ("deepspeed", "fsdp", "torch")


@dataclass(frozen=True)
class TrainRun:
    """What ``validate --train`` was asked to run, as given on the command line (None: the default)."""

    backend: str
    zero: int
    fsdp: str | None
    steps: int
    micro_batch: int | None
    seq_len: int | None
    grad_accum: int | None


def _check_backend(spec, layout, run: TrainRun) -> None:
    backend = run.backend
    if backend not in BACKENDS:
        raise ShardsimError(f"--backend {backend!r:.40} does not train here; accepted with --train: deepspeed, fsdp, "
                            "torch (TP with DTensor, PP with torch.distributed.pipelining)")
    if backend == "deepspeed" and run.zero not in (1, 2, 3):
        raise ShardsimError("validate --train --backend deepspeed needs --zero 1, 2 or 3")
    if backend != "deepspeed" and run.zero:
        raise ShardsimError(f"--zero is DeepSpeed's; --backend {backend} does not take it")
    if run.fsdp is not None and backend != "fsdp":
        raise ShardsimError("--fsdp is a mode of --backend fsdp")
    if run.fsdp == "hybrid":
        raise ShardsimError("validate --train --fsdp hybrid needs accelerate's 2-D device mesh, which accelerate 1.15 "
                            "builds only on GPUs (ParallelismConfig refuses MULTI_CPU); accepted: full, grad-op")
    if backend == "torch" and (layout.dp > 1 or layout.ep > 1 or layout.tp * layout.pp < 2):
        raise ShardsimError("validate --train --backend torch runs tensor and/or pipeline parallel: --tp and --pp "
                            "with tp × pp ≥ 2, --dp/--ep 1")
    if backend != "torch" and (layout.tp > 1 or layout.pp > 1 or layout.ep > 1):
        raise ShardsimError("validate --train shards over data parallel ranks (--dp); --tp/--pp/--ep are not run "
                            "(--backend torch runs --tp and --pp)")
    if backend == "torch" and spec.linear is not None:
        raise ShardsimError(f"{spec.name} is a hybrid: --backend torch runs Qwen3's decoder layers by hand "
                            "(Qwen3Model.forward, the Megatron TP split); validate --train a hybrid with --backend "
                            "deepspeed or fsdp")
    if backend == "torch" and spec.tie_word_embeddings:
        raise ShardsimError(f"{spec.name} ties its embeddings; --backend torch splits embed_tokens and lm_head "
                            "apart (TP: different placements, PP: different stages): use an untied model (8b, 14b, "
                            "32b)")
    if run.grad_accum is not None and layout.pp == 1:
        raise ShardsimError("--grad-accum is the pipeline's micro-batches per step here; it needs --pp 2 or more")
    if not 1 <= run.steps <= 100:
        raise ShardsimError(f"--steps {run.steps} is out of range; accepted: 1 … 100")


def _setup(spec, layout, run: TrainRun):
    from shardsim.core.layout import validate_layout
    from shardsim.core.train.setup import TrainSetup, check_setup

    grad_accum = run.grad_accum if run.grad_accum is not None else layout.pp
    setup = TrainSetup(framework=run.backend, zero=run.zero, fsdp=run.fsdp or "full", micro_batch=run.micro_batch or 1,
                       seq_len=run.seq_len or 64, grad_accum=grad_accum)
    if not 2 <= setup.seq_len <= 8192 or setup.micro_batch > 64:
        raise ShardsimError("validate --train runs --seq-len 2 … 8192 and --micro-batch 1 … 64")
    if not layout.pp <= grad_accum <= 64:
        raise ShardsimError(f"--grad-accum {grad_accum} is out of range; accepted: {layout.pp} … 64 (a 1F1B step "
                            "runs at least as many micro-batches as there are stages)")
    layout = validate_layout(spec, layout)
    return layout, check_setup(spec, layout, setup)


def train_request(spec, model, config, layout, run: TrainRun, where: dict):
    """The ``ValidateRequest`` of a training validation: what was asked checked, the layout validated, the setup
    built (``where``: the run's place, folders and command)."""
    from shardsim.launch.session.request import ValidateRequest, check_run
    from shardsim.presets import preset_config, read_config

    _check_backend(spec, layout, run)
    layout, setup = _setup(spec, layout, run)
    check_run(layout, 2, 0, 1, where["phase_timeout_s"])
    if where.get("fault") is not None and where["fault"].rank >= layout.world_size:
        raise ShardsimError(f"--inject-fault names rank {where['fault'].rank}; this layout has ranks 0 … "
                            f"{layout.world_size - 1}")
    return ValidateRequest(model=spec, layout=layout, setup=setup, steps=run.steps, backend=run.backend,
                           source_config=read_config(config) if config else preset_config(model), **where)
