"""Clusters built on demand and how ranks sit on them: nodes, links, TP groups that cross nodes, the topology graph."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from shardsim.constants import MAX_GPU_BYTES, MIN_GPU_BYTES
from shardsim.core.layout import Layout, tp_groups
from shardsim.core.placement import GpuSlot, Placement
from shardsim.core.memory.runtime import FABRICS, Fabric
from shardsim.errors import ShardsimError
from shardsim.hardware.catalog import resolve_gpu
from shardsim.hardware.specs import PCIE_GEN4_X16_GBPS, ClusterSpec, GPUSpec, LinkSpec
from shardsim.units import GiB, ceil_div, parse_size


def _count(label: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ShardsimError(f"{label} must be a whole number >= 1, got {value!r}")
    return value


def _intra_link(gpu: GPUSpec) -> LinkSpec:
    """NVLink (per direction: half the datasheet's both-directions figure) if the card has it, else its PCIe."""
    if gpu.nvlink_GBps > 0:
        # 8-GPU HGX boards of sm80 and newer (A100, H100, H200, B200) connect every GPU through NVSwitch (NVIDIA
        # HGX A100 / H100 / B200 platform briefs); V100's DGX-1 is a hybrid cube mesh of direct links.
        switched = _capability(gpu) >= (8, 0)
        return LinkSpec(kind="NVLink / NVSwitch" if switched else "NVLink", fabric="nvswitch" if switched else "nvlink",
                        bandwidth_GBps=gpu.nvlink_GBps / 2,
                        source=f"catalog nvlink_GBps {gpu.nvlink_GBps:g} (both directions) / 2")
    if gpu.pcie_GBps > 0:
        return LinkSpec(kind="PCIe", fabric="pcie", bandwidth_GBps=gpu.pcie_GBps, source="catalog pcie_GBps (per direction)")
    return LinkSpec(kind="PCIe Gen4 x16 (assumed)", fabric="pcie", bandwidth_GBps=PCIE_GEN4_X16_GBPS, source="card's link unknown")


def _capability(gpu: GPUSpec) -> tuple[int, int]:
    """The GPU's compute capability as (major, minor); (0, 0) when the catalog does not know it."""
    if not gpu.compute_capability:
        return (0, 0)
    major, minor = gpu.compute_capability.split(".")
    return int(major), int(minor)


def link_fabric(link: LinkSpec) -> str:
    """The link's fabric: as given, else from its kind ("NVSwitch" → nvswitch, "NVLink" → nvlink, else pcie)."""
    if link.fabric:
        return link.fabric
    kind = link.kind.lower()
    return "nvswitch" if "nvswitch" in kind else "nvlink" if "nvlink" in kind else "pcie"


def fabric_of(cluster: ClusterSpec, interconnect: str | None = None) -> Fabric:
    """The wiring the runtime model needs; ``interconnect`` (--interconnect) overrides the cluster's."""
    if interconnect is not None and interconnect not in FABRICS:
        raise ShardsimError(f"--interconnect {interconnect!r:.40} is not known; accepted: {', '.join(FABRICS)}")
    capability = _capability(cluster.gpu)
    return Fabric(interconnect or link_fabric(cluster.intra_node_link), cluster.gpus_per_node,
                  capability if capability != (0, 0) else None)


DEFAULT_INTER_NODE = LinkSpec(kind="InfiniBand NDR 400Gb/s", bandwidth_GBps=50.0,
                              source="400 Gb/s per port per direction = 50 GB/s, one NIC per GPU")
"""Inter-node link cluster_for_gpu assumes. NDR InfiniBand is 400 Gb/s per port per direction = 50 GB/s, and
HGX/DGX H100 nodes carry one NDR NIC per GPU (DGX H100 user guide: 8x ConnectX-7), so 50 GB/s per GPU."""


def cluster_for_gpu(gpu: GPUSpec | str, world_size: int, gpus_per_node: int = 8) -> ClusterSpec:
    """As many ``gpu`` as ``world_size`` needs, ``gpus_per_node`` per node (one smaller node if one suffices)."""
    spec = resolve_gpu(gpu)
    per_node = min(_count("gpus_per_node", gpus_per_node), _count("world_size", world_size))
    nodes = ceil_div(world_size, per_node)
    short = (spec.aliases[0] if spec.aliases else spec.name).lower()
    return ClusterSpec(name=f"{short}-{nodes}x{per_node}", gpu=spec, nodes=nodes, gpus_per_node=per_node,
                       description=f"generated for {world_size} GPUs: {nodes} node(s) x {per_node} {spec.name}",
                       intra_node_link=_intra_link(spec), inter_node_link=DEFAULT_INTER_NODE if nodes > 1 else None)


def custom_gpu(capacity_bytes: int | str, name: str | None = None) -> GPUSpec:
    """A card known only by its memory (bytes, or a size such as '46068MiB'); other figures are unknown (0)."""
    size = parse_size(capacity_bytes) if isinstance(capacity_bytes, str) else capacity_bytes
    if isinstance(size, bool) or not isinstance(size, int) or not MIN_GPU_BYTES <= size <= MAX_GPU_BYTES:
        raise ShardsimError(f"GPU capacity {capacity_bytes!r:.40} is out of range; accepted: {MIN_GPU_BYTES // GiB} GiB "
                            f"… {MAX_GPU_BYTES // GiB // 1024} TiB, written like 80GiB or 46068MiB")
    label = name.strip() if name and name.strip() else f"custom-{size / GiB:.2f}GiB"
    return GPUSpec(name=label, capacity_bytes=size, capacity_basis="user", source={"capacity_bytes": "user input"})


def check_fits_cluster(cluster: ClusterSpec, world_size: int) -> None:
    """Refuse a layout needing more GPUs than the cluster has."""
    if _count("world_size", world_size) > cluster.world_size:
        raise ShardsimError(f"layout needs {world_size} GPUs; cluster '{cluster.name}' has {cluster.world_size}")


def placement_of(cluster: ClusterSpec) -> Placement:
    """Where ranks run on ``cluster`` (``core.placement``)."""
    return Placement(cluster.gpus_per_node)


def rank_location(rank: int, cluster: ClusterSpec) -> GpuSlot:
    """The node and local GPU of a global rank of ``cluster`` (``core.placement``), refused outside it."""
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < cluster.world_size:
        raise ShardsimError(f"rank {rank!r} is outside cluster '{cluster.name}' (ranks 0..{cluster.world_size - 1})")
    return placement_of(cluster).slot(rank)


def tp_group_crossings(cluster: ClusterSpec, layout: Layout) -> list[str]:
    """One warning per TP group of ``layout`` (``core.layout.tp_groups``) whose ranks span nodes of ``cluster``."""
    check_fits_cluster(cluster, layout.world_size)
    intra, inter = cluster.intra_node_link, cluster.inter_node_link
    over = (f"{inter.kind} ({inter.bandwidth_GBps:g} GB/s per GPU vs {intra.bandwidth_GBps:g} GB/s {intra.kind})"
            if inter else "the inter-node network")
    warnings = []
    placement = placement_of(cluster)
    for members in tp_groups(layout):
        first, last = members[0], members[-1]
        lo, hi = placement.nodes_of(members)
        if lo != hi:
            nodes = f"node {lo} and node {hi}" if hi == lo + 1 else f"nodes {lo}–{hi}"
            warnings.append(f"TP group ranks {first}–{last} spans {nodes} over {over}: every all-reduce crosses it")
    return warnings


def link_between(cluster: ClusterSpec, rank_a: int, rank_b: int) -> LinkSpec:
    """The link class two distinct ranks talk over: intra-node if they share a node, else inter-node."""
    same_node = rank_location(rank_a, cluster).node == rank_location(rank_b, cluster).node
    if rank_a == rank_b:
        raise ShardsimError(f"ranks {rank_a} and {rank_b} are the same GPU; give two different ranks")
    inter = cluster.inter_node_link  # ClusterSpec sets it whenever nodes > 1
    return cluster.intra_node_link if same_node else inter  # type: ignore[return-value]


def topology_graph(cluster: ClusterSpec) -> Any:
    """networkx.Graph: ('gpu', node, local) per GPU, ('switch', node) per node, ('network',) between nodes.
    Edge ``bandwidth_GBps`` is per GPU per direction; switch-network edges add ``aggregate_GBps`` (x gpus_per_node)."""
    import networkx as nx
    graph = nx.Graph(name=cluster.name)
    intra, inter = cluster.intra_node_link, cluster.inter_node_link
    if cluster.nodes > 1 and inter is not None:
        graph.add_node(("network",), kind="network", link=inter.kind)
    for node in range(cluster.nodes):
        switch = ("switch", node)
        graph.add_node(switch, kind="switch", node=node, link=intra.kind)
        for local in range(cluster.gpus_per_node):
            gpu, rank = ("gpu", node, local), node * cluster.gpus_per_node + local
            graph.add_node(gpu, kind="gpu", node=node, local=local, rank=rank, gpu=cluster.gpu.name,
                           capacity_bytes=cluster.gpu.capacity_bytes)
            graph.add_edge(gpu, switch, kind=intra.kind, bandwidth_GBps=intra.bandwidth_GBps)
        if cluster.nodes > 1 and inter is not None:
            graph.add_edge(switch, ("network",), kind=inter.kind, bandwidth_GBps=inter.bandwidth_GBps,
                           aggregate_GBps=inter.bandwidth_GBps * cluster.gpus_per_node)
    return graph
