"""One rank of a validation run, the part both validations share: the injected fault, the process group and the
rank's TP / pipeline groups, the measured result.

The flows wrap a subclass in a Ray actor (one per rank): ``shardsim.launch.serve.worker.ServeWorker`` adds
``load`` and ``forward``, ``shardsim.launch.train.worker.TrainWorker`` adds ``train``. Every phase returns plain
data so that partial results survive a failure elsewhere.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from datetime import timedelta


@dataclass
class Groups:
    """Process groups of one rank (None where the group has one member) and its pipeline neighbours, from
    ``layout.rank_groups``."""

    tp: object = None
    moe: object = None
    prev_stage_rank: int | None = None
    next_stage_rank: int | None = None
    last_stage_leader: int = 0


class RankWorker:
    """A rank's process: joins the process group (``setup``), reports what it measured (``measure``)."""

    def __init__(self, rank: int, world_size: int, env: dict[str, str], fault=None):
        os.environ.update(env)
        self.rank = rank
        self.world_size = world_size
        self.fault = fault
        self.model = None
        self.groups = None
        self.result: dict = {"rank": rank, "pid": os.getpid()}

    def inject_fault(self, phase: str) -> None:
        """Kill (SIGKILL) or freeze (SIGSTOP) this worker when the run's injected fault names this rank and phase."""
        if self.fault is not None and self.fault.rank == self.rank and self.fault.phase == phase:
            os.kill(os.getpid(), signal.SIGSTOP if self.fault.action == "stop" else signal.SIGKILL)

    def setup(self, master_port: int, request) -> dict:
        """Join the torch.distributed group (gloo on CPU, nccl on CUDA) and build the TP/MoE groups; ``request``
        (the run's ``session.request.ValidateRequest``: its model, validated layout, device and phase timeout)
        arrives pickled as the driver holds it."""
        spec, layout, timeout_s, device = request.model, request.layout, request.phase_timeout_s, request.device
        import torch
        import torch.distributed as dist

        from shardsim.core.layout import rank_coords, rank_groups, tp_groups

        self.inject_fault("setup")
        t0 = time.time()
        torch.set_num_threads(1)
        os.environ.update({"MASTER_ADDR": os.environ.get("MASTER_ADDR", "127.0.0.1"), "MASTER_PORT": str(master_port),
                           "RANK": str(self.rank), "WORLD_SIZE": str(self.world_size)})
        self.device = device
        backend = "nccl" if device == "cuda" else "gloo"
        dist.init_process_group(backend, rank=self.rank, world_size=self.world_size, timeout=timedelta(seconds=timeout_s))
        coords = rank_coords(self.rank, layout)
        mine = rank_groups(self.rank, layout)
        groups = Groups(prev_stage_rank=mine.pp_prev, next_stage_rank=mine.pp_next,
                        last_stage_leader=mine.last_stage_leader)
        # Every rank creates every TP group, in the same order (torch.distributed.new_group's contract).
        for members in tp_groups(layout):
            group = dist.new_group(list(members)) if len(members) > 1 else None
            if members == tuple(mine.tp):
                groups.tp = group
        # The MoE all-reduce sums partial expert outputs over the TP group: the torch backend runs ep ≤ tp.
        groups.moe = groups.tp
        self.spec, self.layout, self.coords, self.groups = spec, layout, coords, groups
        self.result.update({"setup_s": time.time() - t0})
        return {"rank": self.rank, "setup_s": self.result["setup_s"]}

    def measure(self) -> dict:
        return dict(self.result)

    def shutdown(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
