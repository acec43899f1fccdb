"""Runtime memory of a rank outside the model's tensors, by component and by how the GPUs are wired.

Components (figures and their sources in ``shardsim.constants``):
- CUDA context and lazily loaded kernels; cuBLAS + cuBLASLt workspace (aten/src/ATen/cuda/CublasHandlePool.cpp).
- NCCL, per communicator the rank belongs to (``communicators``): each ring channel holds LL + LL128 + Simple
  buffers on the receiving GPU plus the sender's header, both aligned to 2 MiB (nccl src/transport/p2p.cc@v2.27.7-1,
  ``p2pRecvSetup`` / ``p2pSendSetup``; CUDA_IPC_MIN in src/include/comm.h) = 12 MiB per channel over P2P (NVLink or
  PCIe); over the network with GPUDirect RDMA the LL128 + Simple send buffers and all receive buffers sit on the GPU
  (src/transport/net.cc); SHM keeps its buffers in host memory (src/transport/shm.cc). With cuMem (NCCL's default
  on CUDA ≥ 12 drivers) each channel's small device structures round up to 2 MiB granules (src/include/alloc.h,
  src/channel.cc): ``NCCL_CUMEM_CHANNEL_BYTES``. Channels: ``NCCL_CHANNELS_NVLINK`` on NVLink/NVSwitch,
  ``NCCL_CHANNELS_PCIE`` on PCIe.
- NVLS (NVLink SHARP) on NVSwitch systems for groups of more than two GPUs on sm90+: channels × 2 × 1 MiB × GPUs in
  the group (src/transport/nvls.cc@v2.21.5-1+, ``ncclNvlsBufferSetup``).
- vLLM's custom all-reduce (TP group of 2, 4, 6 or 8 GPUs in one node, all-to-all NVLink beyond 2): 2 × 8 MiB IPC
  buffers + 8 MiB rank data (vllm/distributed/device_communicators/custom_all_reduce.py), and its symmetric-memory
  all-reduce buffer on multicast-capable (NVSwitch) sm90/sm100 GPUs (symm_mem.py, all_reduce_utils.py
  ``SYMM_MEM_ALL_REDUCE_MAX_SIZES``).
- Pipeline send/recv: ``p2p channels per peer`` × 12 MiB per neighbour inside a node (src/graph/paths.cc,
  ``ncclTopoComputeP2pChannels``), shared network buffers across nodes (src/transport/net.cc).

These are estimates of what NCCL and the engine allocate; the report shows them with ``RUNTIME_UNCERTAINTY``.
"""

from __future__ import annotations

from dataclasses import dataclass

from shardsim.constants import (
    CUBLAS_WORKSPACE_BYTES,
    CUDA_CONTEXT_BYTES,
    CUSTOM_ALLREDUCE_BYTES,
    NCCL_CHANNELS_NVLINK,
    NCCL_CHANNELS_PCIE,
    NCCL_CUMEM_CHANNEL_BYTES,
    NCCL_NET_CHANNEL_BYTES,
    NCCL_NET_P2P_BYTES,
    NCCL_NVLS_BYTES_PER_CHANNEL_PEER,
    NCCL_NVLS_CHANNELS,
    NCCL_P2P_CHANNEL_BYTES,
    SYMM_MEM_ALLREDUCE_BYTES,
)
from shardsim.core.layout import Layout, rank_groups
from shardsim.core.placement import Placement

FABRICS = ("nvswitch", "nvlink", "pcie")
"""How the GPUs of a node are wired: all-to-all NVLink through NVSwitch, NVLink without a switch (bridges, a
hybrid cube mesh), or PCIe only."""


@dataclass(frozen=True, slots=True)
class Fabric:
    """The wiring the runtime depends on: the node's fabric, GPUs per node, and the GPU's compute capability
    (major, minor) (None: unknown)."""

    intra: str = "nvswitch"
    gpus_per_node: int = 8
    compute_capability: tuple[int, int] | None = (9, 0)

    @property
    def placement(self) -> Placement:
        """Where the ranks run on these nodes (``core.placement``)."""
        return Placement(self.gpus_per_node)

    @property
    def multicast(self) -> bool:
        """NVLS / symmetric-memory multicast: NVSwitch and sm90 or newer."""
        return self.intra == "nvswitch" and self.compute_capability is not None and self.compute_capability >= (9, 0)


DEFAULT_FABRIC = Fabric()
"""An HGX H100 node: 8 GPUs on NVSwitch, sm90."""


@dataclass(frozen=True, slots=True)
class RuntimeBytes:
    cuda_context: int
    cublas_workspace: int
    nccl: int
    communicators: tuple[str, ...]
    nvls: int = 0
    custom_allreduce: int = 0
    symmetric_memory: int = 0
    pipeline_p2p: int = 0

    @property
    def total(self) -> int:
        return (self.cuda_context + self.cublas_workspace + self.nccl + self.nvls + self.custom_allreduce
                + self.symmetric_memory + self.pipeline_p2p)

    def components(self) -> dict[str, int]:
        return {"cuda_context": self.cuda_context, "cublas_workspace": self.cublas_workspace, "nccl": self.nccl,
                "nvls": self.nvls, "custom_allreduce": self.custom_allreduce,
                "symmetric_memory": self.symmetric_memory, "pipeline_p2p": self.pipeline_p2p}


def _spans_nodes(members: range, fabric: Fabric) -> bool:
    return fabric.placement.spans_nodes((members[0], members[-1]))


def nccl_communicator_bytes(members: range, fabric: Fabric = DEFAULT_FABRIC) -> int:
    """Ring buffers and cuMem structures of one NCCL communicator on a rank of ``members`` (global ranks)."""
    channels = NCCL_CHANNELS_PCIE if fabric.intra == "pcie" else NCCL_CHANNELS_NVLINK
    per_channel = NCCL_NET_CHANNEL_BYTES if _spans_nodes(members, fabric) else NCCL_P2P_CHANNEL_BYTES
    return channels * (per_channel + NCCL_CUMEM_CHANNEL_BYTES)


def nvls_bytes(members: range, fabric: Fabric) -> int:
    """NVLS buffers of a communicator: NVSwitch + sm90, more than two GPUs, all in one node."""
    if not fabric.multicast or len(members) <= 2 or _spans_nodes(members, fabric):
        return 0
    return NCCL_NVLS_CHANNELS * NCCL_NVLS_BYTES_PER_CHANNEL_PEER * len(members)


def tp_allreduce_buffers(tp_members: range, fabric: Fabric) -> tuple[int, int]:
    """(custom all-reduce, symmetric memory) bytes vLLM allocates for its TP group."""
    tp = len(tp_members)
    if tp == 1 or _spans_nodes(tp_members, fabric):
        return 0, 0
    custom = CUSTOM_ALLREDUCE_BYTES if tp in (2, 4, 6, 8) and (fabric.intra != "pcie" or tp == 2) else 0
    symm = 0
    if fabric.multicast and fabric.compute_capability is not None:
        symm = SYMM_MEM_ALLREDUCE_BYTES.get(fabric.compute_capability[0], {}).get(tp, 0)
    return custom, symm


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


def _pipeline_bytes(rank: int, neighbour: int | None, fabric: Fabric) -> int:
    if neighbour is None:
        return 0
    if not fabric.placement.same_node(rank, neighbour):
        return NCCL_NET_P2P_BYTES
    channels = NCCL_CHANNELS_PCIE if fabric.intra == "pcie" else NCCL_CHANNELS_NVLINK
    return channels * NCCL_P2P_CHANNEL_BYTES


def runtime_bytes(rank: int, layout: Layout, moe: bool, fabric: Fabric = DEFAULT_FABRIC) -> RuntimeBytes:
    """Every runtime component of ``rank`` on ``fabric``."""
    groups = rank_groups(rank, layout)
    comms = communicators(rank, layout, moe)
    nccl = nvls = 0
    for name in comms:
        if name.startswith("pp-"):
            continue
        if name.startswith("tp"):
            members = groups.tp
        elif name.startswith("dp"):
            members = groups.dp
        else:
            members = groups.ep
        nccl += nccl_communicator_bytes(members, fabric)
        nvls += nvls_bytes(members, fabric)
    custom, symm = tp_allreduce_buffers(groups.tp, fabric)
    p2p = _pipeline_bytes(rank, groups.pp_prev, fabric) + _pipeline_bytes(rank, groups.pp_next, fabric)
    return RuntimeBytes(CUDA_CONTEXT_BYTES, CUBLAS_WORKSPACE_BYTES, nccl, comms, nvls, custom, symm, p2p)
