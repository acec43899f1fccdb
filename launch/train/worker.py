"""One rank of a training validation: joins the process group (``session.worker.RankWorker.setup``), then runs
real training steps through the framework's runner (``registry.TRAIN_BACKENDS``) and reports what it holds.
"""

from __future__ import annotations

import time
from importlib import import_module

from shardsim.launch.session.worker import RankWorker
from shardsim.launch.train.registry import TRAIN_BACKENDS, TrainJob


class TrainWorker(RankWorker):
    """A rank of a training run: the setup of every rank, then ``train``."""

    def train(self, job: TrainJob) -> dict:
        """Real training steps on this rank through DeepSpeed ZeRO (``job.zero``), FSDP2 through accelerate
        (``job.fsdp``) or torch-native TP / pipelining (``job.grad_accum`` micro-batches a step); what the framework
        holds afterwards (``shardsim.launch.train.states.TrainStates``)."""
        self.inject_fault("train")
        self.find_checkpoint(job.checkpoint_dir)
        t0 = time.time()
        runner = import_module(TRAIN_BACKENDS[job.framework].runner_for(self.layout))
        states = runner.run_rank(job, self.layout, self.coords)
        return {"rank": self.rank, "train_s": time.time() - t0, **states.as_dict()}
