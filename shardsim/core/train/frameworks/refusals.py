"""Refusals several frameworks share, each raised by the frameworks that lack the feature (called from their
``check``, in the order ``setup.check_setup`` has always checked them)."""

from __future__ import annotations

from shardsim.core.layout import Layout
from shardsim.core.train.choices import TrainSetup
from shardsim.errors import ShardsimError


def refuse_zero(s: TrainSetup, instead: str) -> None:
    """--zero belongs to DeepSpeed; ``instead`` names what this framework shards with."""
    if s.zero:
        raise ShardsimError(f"--zero is DeepSpeed's; with --framework {s.framework} use " + instead)


def refuse_model_parallel(s: TrainSetup, layout: Layout) -> None:
    """Frameworks that replicate the whole model on every rank: no TP, CP or SP."""
    if layout.tp > 1 or layout.cp > 1 or s.sequence_parallel:
        raise ShardsimError(f"--framework {s.framework} has no tensor, context or sequence parallelism here; "
                            "use --framework megatron for --tp/--cp/--sequence-parallel")


def refuse_pipeline(s: TrainSetup, layout: Layout) -> None:
    if layout.pp > 1:
        raise ShardsimError(f"--framework {s.framework} has no pipeline parallelism; use --framework megatron or "
                            "deepspeed (ZeRO 0/1) for --pp")


def refuse_distributed_optimizer(s: TrainSetup) -> None:
    if s.distributed_optimizer:
        raise ShardsimError("--distributed-optimizer is Megatron's; DeepSpeed shards the optimizer with --zero 1")
