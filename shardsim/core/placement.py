"""Placement: where each rank runs. The one place that knows rank → node and GPU.

Ranks fill node 0 first, ``gpus_per_node`` to a node (torchrun's and Ray's default packing, and how
``CUDA_VISIBLE_DEVICES`` numbers a node's GPUs): rank r runs on node r // gpus_per_node, GPU r % gpus_per_node.
Together with the rank order of ``core.layout`` (TP fastest) this keeps a TP group inside a node whenever
tp ≤ gpus_per_node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable


@dataclass(frozen=True, slots=True)
class GpuSlot:
    """Where a rank runs: its node and its GPU inside the node."""

    node: int
    local_gpu: int


@dataclass(frozen=True, slots=True)
class Placement:
    """Ranks packed onto nodes of ``gpus_per_node`` GPUs."""

    gpus_per_node: int = 8

    def slot(self, rank: int) -> GpuSlot:
        return GpuSlot(rank // self.gpus_per_node, rank % self.gpus_per_node)

    def node_of(self, rank: int) -> int:
        return rank // self.gpus_per_node

    def same_node(self, rank_a: int, rank_b: int) -> bool:
        return rank_a // self.gpus_per_node == rank_b // self.gpus_per_node

    def spans_nodes(self, members: Iterable[int]) -> bool:
        """Whether a group's ranks sit on more than one node."""
        nodes = {rank // self.gpus_per_node for rank in members}
        return len(nodes) > 1

    def nodes_of(self, members: Iterable[int]) -> tuple[int, int]:
        """The first and last node a group's ranks sit on."""
        nodes = [rank // self.gpus_per_node for rank in members]
        return min(nodes), max(nodes)
