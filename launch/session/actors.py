"""Ray and the workers of a run: start a local Ray instance or join ``--address``, one actor per rank of the
flow's worker class (placed by ``placement``), where their process group meets, and their teardown.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

from shardsim.launch.session import placement
from shardsim.launch.session.prebuild import remove_shm_buffers
from shardsim.launch.session.progress import Progress
from shardsim.launch.session.request import ValidateRequest
from shardsim.launch.session.signals import Interrupted, reclaim_signals
from shardsim.launch.session.worker import Rendezvous

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
        except SystemExit as exc:  # SIGTERM met Ray's own handler (sys.exit(15)) while ray.init ran
            if exc.code != signal.SIGTERM:
                raise
            raise Interrupted("SIGTERM") from None
        finally:
            reclaim_signals()
    return started


def start_actors(worker_class: type, req: ValidateRequest, world: int, build: Path, cpus: float) -> dict:
    """One ``worker_class`` actor per rank: ``cpus`` each (``placement.check_fits``: a request every rank can be
    placed with on the nodes joined), and one GPU each on CUDA."""
    import ray

    if req.device == "cuda":
        actor = ray.remote(num_gpus=1, num_cpus=cpus, max_restarts=0)(worker_class)
    else:
        actor = ray.remote(num_cpus=cpus, max_restarts=0)(worker_class)
    env = {"OMP_NUM_THREADS": "1", "TORCH_EXTENSIONS_DIR": str(build / "torch_extensions"),
           "PYTHONPATH": os.pathsep.join(sys.path)}
    if os.environ.get("SHARDSIM_TRACK_DETAIL"):
        env["SHARDSIM_TRACK_DETAIL"] = "1"
    return {r: actor.remote(r, world, env, req.fault) for r in range(world)}


def meeting_point(actors: dict, nodes: dict[int, str], timeout_s: float) -> Rendezvous:
    """Where the process group meets: rank 0's node address and a port free there, asked of rank 0's actor (an
    address of the driver's machine is, for a rank on another host, its own loopback); each rank's local rank and
    size among the ranks on its node (``nodes``: rank → node address)."""
    import ray

    where = ray.get(actors[0].rendezvous.remote(), timeout=timeout_s)
    by_node: dict[str, list[int]] = {}
    for rank in sorted(actors):
        by_node.setdefault(nodes.get(rank, where["addr"]), []).append(rank)
    local = {rank: (i, len(members)) for members in by_node.values() for i, rank in enumerate(members)}
    return Rendezvous(where["addr"], int(where["port"]), local, len(by_node))


def stop_actors(actors: dict, progress: Progress, meeting: Rendezvous | None) -> None:
    """Kill every actor, stop the progress display, and remove DeepSpeed's shared-memory buffers of the run on this
    node (named by the process group's address and port)."""
    import ray

    for actor in actors.values():
        try:
            ray.kill(actor)
        except Exception:  # noqa: BLE001
            pass
    progress.stop()
    if meeting is not None:
        remove_shm_buffers(meeting.port, meeting.addr)


def start_workers(worker_class: type, req: ValidateRequest, build: Path, cpus: float, state, progress: Progress,
                  actors: dict) -> None:
    """Start one actor per rank into ``actors`` (filled in place, so the caller's ``finally`` stops whatever
    started), wait for each to answer, and find where their process group meets; into ``state``
    (``phases.RunState``): the ranks that did not start, each worker's process id and node, the driver's node and
    the meeting point."""
    import ray

    from shardsim.launch.session.signals import check_signals

    world = req.layout.world_size
    progress.phase("start", range(world), "running")
    actors.update(start_actors(worker_class, req, world, build, cpus))
    readiness = placement.ready(actors, min(START_TIMEOUT_S, req.phase_timeout_s), f"{cpus:g} CPU", check_signals)
    state.failed.update(readiness.missing)
    if readiness.missing:
        return
    state.pids, state.nodes = readiness.pids, readiness.nodes
    state.here = ray.util.get_node_ip_address()
    try:
        state.meeting = meeting_point(actors, readiness.nodes, START_TIMEOUT_S)
    except Exception as exc:  # noqa: BLE001 - rank 0 gone or silent since it answered: reported as its failure
        cause = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        state.failed[0] = f"phase 'start': rank 0 did not name its node's address and port: {cause}"
