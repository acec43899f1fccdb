"""The training frameworks a validation runs, one record each, and the job every rank is handed.

A framework's runner module exposes ``run_rank(job, layout, coords) -> TrainStates`` (the Ray workers call it)
and its own entry with the framework's keyword arguments (``spawn`` calls it, in the backends' tests). Adding a
framework is its runner module and one line in ``TRAIN_BACKENDS``; the refusals of what ``validate --train`` runs
are the command's (``shardsim.cli.validate_train``). Imports no torch or Ray.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TrainJob:
    """What every rank trains: the checkpoint, the framework and its options, the steps and their shape."""

    checkpoint_dir: str
    framework: str
    zero: int
    fsdp: str
    grad_accum: int
    steps: int
    micro_batch: int
    seq_len: int
    seed: int


@dataclass(frozen=True, slots=True)
class TrainBackend:
    """One training framework: ``runner`` the module that runs it on a rank (``run_rank`` and ``entry``),
    ``pipeline_runner`` the one that runs it when the layout has pipeline stages (None: it has none), and
    ``deepspeed_op``: DeepSpeed's CPU communication op is built before the timed phases."""

    name: str
    runner: str
    entry: str
    pipeline_runner: str | None = None
    deepspeed_op: bool = False

    def runner_for(self, layout) -> str:
        """The module that runs this framework on ``layout``'s ranks."""
        return self.pipeline_runner if layout.pp > 1 and self.pipeline_runner else self.runner


TRAIN_BACKENDS: dict[str, TrainBackend] = {
    "deepspeed": TrainBackend("deepspeed", "shardsim.launch.backends.train_ds", "run_deepspeed", deepspeed_op=True),
    "fsdp": TrainBackend("fsdp", "shardsim.launch.backends.train_fsdp", "run_fsdp"),
    "torch": TrainBackend("torch", "shardsim.launch.backends.train_tp", "run_torch_tp",
                          pipeline_runner="shardsim.launch.backends.train_pp"),
}
