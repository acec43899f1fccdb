"""One rank of a validation run, the part both validations share: the injected fault, the process group and the
rank's TP / pipeline groups, the measured result.

The process group meets on rank 0's node (``Rendezvous``): rank 0's actor names its node's address and a port free
there (``rendezvous``), so ranks on other hosts dial a reachable address, never their own loopback. When the ranks
span several nodes, gloo (and NCCL) bind to the interface that holds the node's address (``GLOO_SOCKET_IFNAME``,
unless set): gloo's default, the address the host name resolves to, is often 127.0.0.1 (/etc/hosts), which a peer on
another host cannot reach.

The flows wrap a subclass in a Ray actor (one per rank): ``shardsim.launch.serve.worker.ServeWorker`` adds
``load`` and ``forward``, ``shardsim.launch.train.worker.TrainWorker`` adds ``train``. Every phase returns plain
data so that partial results survive a failure elsewhere.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass, field
from datetime import timedelta

SIOCGIFADDR = 0x8915
"""ioctl that reads an interface's IPv4 address (linux/sockios.h)."""


@dataclass(frozen=True)
class Rendezvous:
    """Where the process group meets (rank 0's node address and a port free there) and each rank's local rank and
    local size among the ranks of its node (rank → (local rank, local size): DeepSpeed's CPU accelerator reads
    LOCAL_RANK / LOCAL_SIZE)."""

    addr: str
    port: int
    local: dict = field(default_factory=dict)
    nodes: int = 1

    @property
    def where(self) -> str:
        return f"{self.addr}:{self.port}"


def node_address() -> str:
    """This process's node address as Ray knows it (the ``--node-ip-address`` its node started with); 127.0.0.1
    outside Ray."""
    try:
        import ray

        return ray.util.get_node_ip_address()
    except Exception:  # noqa: BLE001 - no Ray (a check run without it): a one-machine world
        return "127.0.0.1"


def interface_of(address: str) -> str | None:
    """The network interface that holds IPv4 ``address`` (None when none does)."""
    import fcntl
    import socket
    import struct

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for _, name in socket.if_nameindex():
            try:
                raw = fcntl.ioctl(s.fileno(), SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
            except OSError:
                continue
            if socket.inet_ntoa(raw[20:24]) == address:
                return name
    return None


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
        self.node = node_address()
        self.result: dict = {"rank": rank, "pid": os.getpid(), "node": self.node}

    def inject_fault(self, phase: str) -> None:
        """Kill (SIGKILL) or freeze (SIGSTOP) this worker when the run's injected fault names this rank and phase."""
        if self.fault is not None and self.fault.rank == self.rank and self.fault.phase == phase:
            os.kill(os.getpid(), signal.SIGSTOP if self.fault.action == "stop" else signal.SIGKILL)

    def rendezvous(self) -> dict:
        """Rank 0's part of the meeting point: this node's address and a TCP port free on it now."""
        from shardsim.launch.session.results import free_port

        return {"addr": self.node, "port": free_port("")}

    def _meet(self, where: Rendezvous | int) -> Rendezvous:
        """The process group's variables (MASTER_ADDR / PORT, RANK, WORLD_SIZE, LOCAL_RANK / SIZE) and, across
        nodes, the interface gloo and NCCL bind to. A bare port (a one-process check) meets on this machine."""
        if isinstance(where, int):
            where = Rendezvous(os.environ.get("MASTER_ADDR", "127.0.0.1"), where)
        local_rank, local_size = where.local.get(self.rank, (self.rank, self.world_size))
        os.environ.update({"MASTER_ADDR": where.addr, "MASTER_PORT": str(where.port), "RANK": str(self.rank),
                           "WORLD_SIZE": str(self.world_size), "LOCAL_RANK": str(local_rank),
                           "LOCAL_SIZE": str(local_size)})
        interface = interface_of(self.node) if where.nodes > 1 else None
        if interface:
            os.environ.setdefault("GLOO_SOCKET_IFNAME", interface)
            os.environ.setdefault("NCCL_SOCKET_IFNAME", interface)
        return where

    def setup(self, where: Rendezvous | int, request) -> dict:
        """Join the torch.distributed group (gloo on CPU, nccl on CUDA) at ``where`` and build the TP/MoE groups;
        ``request`` (the run's ``session.request.ValidateRequest``: its model, validated layout, device and phase
        timeout) arrives pickled as the driver holds it. A rank that cannot join names the address it dialled."""
        spec, layout, timeout_s, device = request.model, request.layout, request.phase_timeout_s, request.device
        import torch
        import torch.distributed as dist

        from shardsim.core.layout import rank_coords, rank_groups, tp_groups

        self.inject_fault("setup")
        t0 = time.time()
        torch.set_num_threads(1)
        where = self._meet(where)
        self.device = device
        backend = "nccl" if device == "cuda" else "gloo"
        try:
            dist.init_process_group(backend, rank=self.rank, world_size=self.world_size,
                                    timeout=timedelta(seconds=timeout_s))
        except Exception as exc:  # noqa: BLE001 - one line naming the address dialled, for the run's report
            cause = next((line.strip() for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            raise RuntimeError(f"rank {self.rank} on {self.node} cannot join the process group at {where.where} "
                               f"(rank 0's node): {cause[:200]}") from None
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

    def find_checkpoint(self, path) -> None:
        """Refuse in one line a checkpoint folder this rank's node does not see (the driver's cache on a disk the
        other hosts do not mount)."""
        if not os.path.isdir(path):
            raise FileNotFoundError(f"checkpoint folder {path} is not on node {self.node}: put SHARDSIM_CACHE (or "
                                    "--checkpoint) on a filesystem every node mounts")

    def measure(self) -> dict:
        return dict(self.result)

    def shutdown(self) -> None:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
