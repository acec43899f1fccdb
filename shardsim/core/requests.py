"""The typed requests: what every command turns its options into, in its first lines, and what the planner, the
engines, the review and the validation workers take (pickled to the workers as they are).

- ``ServeRequest(model, layout, workload, hardware, engine)``: serving memory, with an engine's own figures when
  ``engine`` is set;
- ``TrainRequest(model, layout, setup, hardware)``: training memory.

Each part is itself one frozen record built once: the model (``core.model.ModelSpec``), every parallel degree
(``core.layout.Layout``), what is held besides the weights (``core.workload.Workload``), the training choices
(``core.train.setup.TrainSetup``), the GPUs (``Hardware``) and the engine with its knobs (``EngineChoice``, the
knobs model of the engine's registry entry, ``engines.registry``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from shardsim.core.layout import Layout
from shardsim.core.memory.runtime import DEFAULT_FABRIC, Fabric
from shardsim.core.model import ModelSpec, QuantConfig
from shardsim.core.workload import Workload


@dataclass(frozen=True, slots=True)
class Hardware:
    """The GPUs a request plans for: one card's name, capacity (as the CUDA runtime reports it), compute
    capability and nvidia-smi total, how the nodes are wired, and the cluster spec they came from (None when a
    measurement row names a card without a cluster)."""

    gpu_name: str
    capacity_bytes: int
    compute_capability: str | None = None
    nvidia_smi_bytes: int | None = None
    fabric: Fabric = DEFAULT_FABRIC
    cluster: Any = None  # hardware.ClusterSpec
    warnings: tuple[str, ...] = ()

    @property
    def cluster_name(self) -> str:
        return self.cluster.name if self.cluster is not None else ""


@dataclass(frozen=True, slots=True)
class EngineChoice:
    """An engine by its registry name, with its knobs model (only the knobs given are set)."""

    name: str
    knobs: Any  # the engine's Knobs model (engines.registry.Engine.knobs)

    def given(self) -> dict:
        """The knobs that were set, by field name."""
        return self.knobs.model_dump(exclude_unset=True)


@dataclass(frozen=True, slots=True)
class ServeRequest:
    model: ModelSpec
    layout: Layout  # validated (core.layout.validate_layout)
    workload: Workload
    hardware: Hardware
    engine: EngineChoice | None = None

    @property
    def quant(self) -> QuantConfig:
        """The weight format served: the workload's override, else the checkpoint's own."""
        return self.workload.quant if self.workload.quant is not None else self.model.quant

    def with_layout(self, layout: Layout) -> "ServeRequest":
        return replace(self, layout=layout)

    def with_engine(self, engine: EngineChoice | None) -> "ServeRequest":
        return replace(self, engine=engine)


@dataclass(frozen=True, slots=True)
class TrainRequest:
    model: ModelSpec
    layout: Layout
    setup: Any  # core.train.setup.TrainSetup
    hardware: Hardware
