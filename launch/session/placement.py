"""Placing one worker per rank on the Ray cluster actually joined, and naming the ranks that cannot run.

Ray schedules an actor on one node that has its whole request free, so a fractional request that divides the
cluster's total CPUs can still leave a rank with nowhere to go (2 + 1 CPUs, 4 ranks at 0.75 CPU: the 1-CPU node
takes one, the 2-CPU node two). ``cpu_request`` picks the largest request that packs ``world`` actors onto the
nodes as they are (Σ floor(node CPUs / request) ≥ world); ``check_fits`` refuses before any actor starts when no
request does, or when there are fewer GPUs than ranks. After start, ``ready`` gives every actor a few seconds to
answer and names those that did not, with what they asked for; ``frozen`` tells a stopped worker process
(SIGSTOP, state ``T`` in /proc) from one merely waiting on a collective.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from shardsim.errors import ShardsimError

MIN_CPU_REQUEST = 0.01


@dataclass(frozen=True, slots=True)
class NodeResources:
    node: str
    cpus: float
    gpus: float


def alive_nodes() -> list[NodeResources]:
    """The CPUs and GPUs each alive node of the joined Ray cluster offers."""
    import ray

    out = []
    for node in ray.nodes():
        if node.get("Alive"):
            res = node.get("Resources", {})
            out.append(NodeResources(node.get("NodeManagerAddress", "?"), float(res.get("CPU", 0)),
                                     float(res.get("GPU", 0))))
    return out


def cpu_request(nodes: list[NodeResources], world: int) -> float | None:
    """The largest CPU request (≤ 1) that places ``world`` actors, one node each, on ``nodes``; None if none does."""
    if sum(n.cpus for n in nodes) <= 0:
        return None
    candidates = {1.0} | {n.cpus / k for n in nodes for k in range(1, world + 1) if n.cpus / k <= 1.0}
    for request in sorted(candidates, reverse=True):
        if request >= MIN_CPU_REQUEST and sum(int(n.cpus / request + 1e-9) for n in nodes) >= world:
            return request
    return None


def check_fits(nodes: list[NodeResources], world: int, device: str) -> float:
    """The per-actor CPU request, or a one-line refusal naming what the cluster lacks."""
    described = ", ".join(f"{n.node}: {n.cpus:g} CPU / {n.gpus:g} GPU" for n in nodes) or "no alive node"
    if device == "cuda":
        gpus = sum(int(n.gpus) for n in nodes)
        if gpus < world:
            raise ShardsimError(f"--device cuda needs one GPU per rank: {world} ranks, the Ray cluster has {gpus} GPUs "
                                f"({described})")
    request = cpu_request(nodes, world)
    if request is None:
        raise ShardsimError(f"the Ray cluster cannot place {world} ranks ({described}); give it more CPUs or use "
                            "fewer ranks")
    return request


@dataclass(frozen=True, slots=True)
class Readiness:
    """The workers' process ids and node addresses (rank → pid, rank → address), and the ranks that did not answer,
    each with the reason."""

    pids: dict[int, int]
    missing: dict[int, str]
    nodes: dict[int, str] = field(default_factory=dict)


def ready(actors: dict, timeout_s: float, request: str, between=lambda: None) -> Readiness:
    """Ask every actor once for its process id; name those that did not answer within ``timeout_s``
    (unschedulable or dead). ``between`` runs between one-second waits (the driver's signal check)."""
    import time

    import ray

    refs = {actors[r].measure.remote(): r for r in actors}
    deadline = time.time() + timeout_s
    done, pending = [], list(refs)
    while pending and time.time() < deadline:
        now_done, pending = ray.wait(pending, num_returns=len(pending), timeout=min(1.0, deadline - time.time()))
        done += now_done
        between()
    missing, pids, nodes = {}, {}, {}
    for ref in pending:
        missing[refs[ref]] = (f"its worker was not scheduled within {timeout_s:.0f} s: it asks for {request} and no "
                              "node has that free")
    for ref in done:
        try:
            answer = ray.get(ref)
            pids[refs[ref]], nodes[refs[ref]] = answer.get("pid"), answer.get("node")
        except Exception as exc:  # noqa: BLE001 - reported per rank
            missing[refs[ref]] = f"its worker failed to start: {str(exc).splitlines()[0][:200]}"
    return Readiness(pids, missing, nodes)


def frozen(pid: int | None) -> bool:
    """Whether a local worker process is stopped (SIGSTOP / SIGTSTP), per /proc/<pid>/stat."""
    if not pid:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] in ("T", "t")


def slow_bf16_cpu(cpuinfo: str | None = None) -> bool:
    """Whether this host's CPU lacks the instructions torch needs for its oneDNN bf16 matrix multiply (x86:
    AVX-512 BW, VL and DQ — ``mkldnn_bf16_device_check`` in aten/src/ATen/native/mkldnn/Utils.h; Arm: the BF16
    extension). Without them torch falls back to a scalar bf16 GEMM: measured on a 2-core AVX2 EPYC, torch 2.13.0,
    one thread, 0.26 GFLOP/s for a backward's grad-input product against 70 GFLOP/s for the fp32 product. Reads
    /proc/cpuinfo's flags (``cpuinfo``: its text, for tests); False where they cannot be read."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return False
    flags = next((set(line.split(":", 1)[1].split()) for line in cpuinfo.splitlines()
                  if line.split(":", 1)[0].strip() in ("flags", "Features")), None)
    if flags is None:
        return False
    return not ({"avx512bw", "avx512vl", "avx512dq"} <= flags or "bf16" in flags)
