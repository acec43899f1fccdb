"""Runtime memory of a rank outside the model's tensors: CUDA context, cuBLAS workspace, NCCL buffers.

All figures come from ``shardsim.constants`` (with their sources). NCCL memory is counted per communicator the
rank belongs to (a group of size > 1): the TP group, one point-to-point link per pipeline neighbour, the EP
group, and the DP group when weights are sharded over it (ZeRO-3 all-gathers) or experts span it. Each costs
channels × ring peers × (Simple + LL128 + LL buffers) (NCCL docs, NCCL_BUFFSIZE; ``src/transport/p2p.cc``).
These are estimates: the report shows them with ``RUNTIME_UNCERTAINTY``.
"""

from __future__ import annotations

from dataclasses import dataclass

from shardsim.constants import (
    CUBLAS_WORKSPACE_BYTES,
    CUDA_CONTEXT_BYTES,
    NCCL_BUFFSIZE_BYTES,
    NCCL_CHANNELS,
    NCCL_LL128_BYTES,
    NCCL_LL_BYTES,
    NCCL_RING_PEERS,
)
from shardsim.core.layout import Layout, rank_groups


def nccl_communicator_bytes() -> int:
    """Buffers one NCCL communicator allocates on a rank."""
    return NCCL_CHANNELS * NCCL_RING_PEERS * (NCCL_BUFFSIZE_BYTES + NCCL_LL128_BYTES + NCCL_LL_BYTES)


@dataclass(frozen=True, slots=True)
class RuntimeBytes:
    cuda_context: int
    cublas_workspace: int
    nccl: int
    communicators: tuple[str, ...]

    @property
    def total(self) -> int:
        return self.cuda_context + self.cublas_workspace + self.nccl


def communicators(rank: int, layout: Layout, moe: bool) -> tuple[str, ...]:
    """Names of the NCCL communicators ``rank`` takes part in, from its groups (``layout.rank_groups``)."""
    groups = rank_groups(rank, layout)
    out = []
    if len(groups.tp) > 1:
        out.append(f"tp{len(groups.tp)}")
    if groups.pp_prev is not None:
        out.append("pp-prev")
    if groups.pp_next is not None:
        out.append("pp-next")
    if layout.ep > 1 and layout.ep != layout.tp:
        out.append(f"ep{layout.ep}")
    if len(groups.dp) > 1 and (layout.zero or (moe and layout.ep > layout.tp)):
        out.append(f"dp{len(groups.dp)}")
    return tuple(out)


def runtime_bytes(rank: int, layout: Layout, moe: bool) -> RuntimeBytes:
    comms = communicators(rank, layout, moe)
    return RuntimeBytes(CUDA_CONTEXT_BYTES, CUBLAS_WORKSPACE_BYTES, len(comms) * nccl_communicator_bytes(), comms)
