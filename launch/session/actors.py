"""Ray and the workers of a run: start a local Ray instance or join ``--address``, one actor per rank of the
flow's worker class (placed by ``placement``), and their teardown.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from shardsim.launch.session.prebuild import remove_shm_buffers
from shardsim.launch.session.progress import Progress
from shardsim.launch.session.request import ValidateRequest

from shardsim.errors import ShardsimError

START_TIMEOUT_S = 60.0  # seconds every worker has to be scheduled and answer before the phases start


def _check_reachable(address: str) -> None:
    """Fail fast (Ray itself retries for minutes) when nothing listens at HOST:PORT."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=3):
            return
    except ValueError:
        raise ShardsimError(f"--address {address!r} must be auto or HOST:PORT (the Ray head's GCS port, usually 6379)") from None
    except OSError as exc:
        raise ShardsimError(f"nothing answers at --address {address} ({exc.strerror or exc}); start a Ray head there or use auto") from None


def start_ray(req: ValidateRequest) -> bool:
    """Start a local Ray instance or join ``--address``; returns whether this run started it."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray_kwargs = {"include_dashboard": False, "log_to_driver": False}
    started = not ray.is_initialized()
    if started and req.address and req.address != "auto":
        _check_reachable(req.address)
    if started:
        try:
            if req.address:
                ray.init(address=req.address, **ray_kwargs)
            else:
                ray.init(num_cpus=max(2, os.cpu_count() or 2), **ray_kwargs)
        except Exception as exc:  # noqa: BLE001 - any failure to reach Ray is the user's input to fix
            where = f"the Ray cluster at {req.address}" if req.address else "a local Ray instance"
            raise ShardsimError(f"cannot start or reach {where}: {str(exc).splitlines()[0][:200]}") from None
    return started


def start_actors(worker_class: type, req: ValidateRequest, world: int, build: Path, cpus: float) -> dict:
    """One ``worker_class`` actor per rank: ``cpus`` each (``placement.check_fits``: a request every rank can be
    placed with on the nodes joined), and one GPU each on CUDA."""
    import ray

    if req.device == "cuda":
        actor = ray.remote(num_gpus=1, num_cpus=cpus, max_restarts=0)(worker_class)
    else:
        actor = ray.remote(num_cpus=cpus, max_restarts=0)(worker_class)
    env = {"MASTER_ADDR": "127.0.0.1", "LOCAL_SIZE": str(min(world, 8)), "OMP_NUM_THREADS": "1",
           "TORCH_EXTENSIONS_DIR": str(build / "torch_extensions"), "PYTHONPATH": os.pathsep.join(sys.path)}
    if os.environ.get("SHARDSIM_TRACK_DETAIL"):
        env["SHARDSIM_TRACK_DETAIL"] = "1"
    return {r: actor.remote(r, world, dict(env, LOCAL_RANK=str(r % 8)), req.fault) for r in range(world)}


def stop_actors(actors: dict, progress: Progress, port: int | None) -> None:
    """Kill every actor, stop the progress display, and remove DeepSpeed's shared-memory buffers of the run (named
    by the process group's ``port``)."""
    import ray

    for actor in actors.values():
        try:
            ray.kill(actor)
        except Exception:  # noqa: BLE001
            pass
    progress.stop()
    remove_shm_buffers(port)
