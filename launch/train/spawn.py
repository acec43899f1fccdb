"""Spawn training ranks without Ray (torch.multiprocessing, gloo on 127.0.0.1): the backends' own test harness
(``tests/validation/test_train_backends.py``); ``shardsim validate --train`` runs them on Ray
(``shardsim.launch.train.run``)."""

from __future__ import annotations

from shardsim.launch.session.prebuild import remove_shm_buffers
from shardsim.launch.session.results import free_port
from shardsim.launch.train.registry import TRAIN_BACKENDS
from shardsim.launch.train.states import TrainStates


def _rank_main(rank: int, world_size: int, port: int, backend: str, kwargs: dict, out_dir: str) -> None:
    """One spawned rank: gloo process group on 127.0.0.1, one backend run (its registry entry with ``kwargs``), its
    ``TrainStates`` written as JSON."""
    import json
    import os
    from importlib import import_module

    import torch
    import torch.distributed as dist

    os.environ.update(RANK=str(rank), WORLD_SIZE=str(world_size), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
                      LOCAL_RANK=str(rank), LOCAL_SIZE=str(world_size))
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // world_size))
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        record = TRAIN_BACKENDS[backend]
        states = getattr(import_module(record.runner), record.entry)(**kwargs)
        path = os.path.join(out_dir, f"rank{rank}.json")
        with open(path + ".part", "w") as f:     # whole or absent: run_on_ranks trusts a file that exists
            json.dump(states.as_dict(), f, default=str)
        os.replace(path + ".part", path)
        # no rank tears the group down while a peer is still inside a collective (gloo aborts the process when a
        # pair's socket closes under a pending operation)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def run_on_ranks(backend: str, world_size: int, out_dir: str, **kwargs) -> list[TrainStates]:
    """Spawns ``world_size`` ranks (``torch.multiprocessing.spawn``, gloo on a free local port) that each run
    the entry of ``backend`` in ``registry.TRAIN_BACKENDS`` (``run_fsdp`` for "fsdp", ``run_deepspeed`` for
    "deepspeed") with ``kwargs``; returns their states in rank order. Set TORCH_EXTENSIONS_DIR beforehand for
    DeepSpeed (inherited by the ranks)."""
    import json
    import os
    import warnings

    import torch.multiprocessing as mp

    paths = [os.path.join(out_dir, f"rank{rank}.json") for rank in range(world_size)]
    for path in paths:          # a file left by an earlier run in the same folder is not this run's result
        if os.path.exists(path):
            os.unlink(path)
    port = free_port()
    try:
        mp.spawn(_rank_main, args=(world_size, port, backend, kwargs, out_dir), nprocs=world_size, join=True)
    except mp.ProcessExitedException as died:
        # A rank killed by a signal after every rank wrote its states died in teardown (interpreter exit racing
        # DeepSpeed's and gloo's threads: one SIGABRT in CI, 2026-12-05), not in what is measured; anything else
        # is a failed run.
        if died.signal_name is None or not all(os.path.exists(path) for path in paths):
            raise
        warnings.warn(f"rank {died.error_index} died by {died.signal_name} after every rank wrote its states; "
                      "the states are kept", RuntimeWarning, stacklevel=2)
    finally:
        remove_shm_buffers(port)   # DeepSpeed's CPU all-reduce buffers in /dev/shm outlive the ranks
    out = []
    for rank in range(world_size):
        with open(os.path.join(out_dir, f"rank{rank}.json")) as f:
            out.append(TrainStates(**json.load(f)))
    return out
