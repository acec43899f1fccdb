"""The records of the hardware catalog: a GPU, a link class, a cluster (pydantic, validated once).

Sizes are bytes (int). ``LinkSpec.bandwidth_GBps`` is per GPU and per direction in GB/s (10**9 B/s), what a
collective's bus bandwidth is bounded by; ``GPUSpec.nvlink_GBps`` keeps the datasheet's both-directions total (H100:
900), so an NVLink link is half of it (450). Every figure of the YAML data carries a ``source``.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, field_validator, model_validator

from shardsim.constants import MAX_BANDWIDTH_GBPS, MAX_GPU_BYTES, MAX_PRICE_USD, MAX_WORLD_SIZE, MIN_GPU_BYTES
from shardsim.units import GiB

PCIE_GEN4_X16_GBPS = 31.5
"""PCIe 4.0 x16: 16 GT/s x 16 lanes x 128/130 encoding / 8 bits = 31.5 GB/s per direction (card of unknown link)."""

_FIGURES = ("capacity_bytes", "nvidia_smi_total_bytes", "memory_bandwidth_GBps", "bf16_tflops", "fp16_tflops",
            "nvlink_GBps", "pcie_GBps", "compute_capability", "price_per_gpu_hour_usd", "purchase_price_usd")
"""Measured or quoted GPUSpec figures: each one given needs a ``source`` entry (``nominal`` is the product name's)."""


class _Frozen(BaseModel):
    # numbers are StrictInt / StrictFloat (no "8" for 8, no true for 1) and finite (no .inf / .nan from YAML)
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    def __hash__(self) -> int:  # pydantic's frozen hash breaks on dict fields (``source``); hash the content
        return hash(self.model_dump_json())


class GPUSpec(_Frozen):
    """One GPU model. ``capacity_bytes`` is what the CUDA runtime reports (torch ``total_memory``)."""

    name: str = Field(min_length=1)
    aliases: tuple[str, ...] = ()
    # what the driver calls the card: nvidia-smi --query-gpu=name, torch.cuda.get_device_name(), rocm-smi's
    # market name ("NVIDIA H100 80GB HBM3", "AMD Instinct MI300X"); looked up like aliases, kept apart so the
    # catalog table lists the short aliases
    device_names: tuple[str, ...] = ()
    nominal: str | None = None
    nominal_bytes: StrictInt | None = Field(default=None, ge=MIN_GPU_BYTES, le=MAX_GPU_BYTES)
    capacity_bytes: StrictInt = Field(ge=MIN_GPU_BYTES, le=MAX_GPU_BYTES)
    capacity_basis: Literal["cuda", "nvidia-smi", "user"] = "cuda"
    nvidia_smi_total_bytes: StrictInt | None = Field(default=None, ge=MIN_GPU_BYTES, le=MAX_GPU_BYTES)
    memory_bandwidth_GBps: StrictFloat = Field(default=0.0, ge=0, le=MAX_BANDWIDTH_GBPS)
    bf16_tflops: StrictFloat = Field(default=0.0, ge=0, le=1e6)
    fp16_tflops: StrictFloat = Field(default=0.0, ge=0, le=1e6)
    fp8: StrictBool = False
    nvlink_GBps: StrictFloat = Field(default=0.0, ge=0, le=MAX_BANDWIDTH_GBPS)
    pcie_GBps: StrictFloat = Field(default=0.0, ge=0, le=MAX_BANDWIDTH_GBPS)
    compute_capability: str | None = Field(default=None, pattern=r"^\d{1,2}\.\d{1,2}$")
    price_per_gpu_hour_usd: StrictFloat | None = Field(default=None, ge=0, le=MAX_PRICE_USD)
    purchase_price_usd: StrictFloat | None = Field(default=None, ge=0, le=MAX_PRICE_USD)
    source: dict[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _check(self) -> GPUSpec:
        unknown = sorted(set(self.source) - set(_FIGURES))
        if unknown:
            raise ValueError(f"source names unknown figure(s) {unknown}; figures: {', '.join(_FIGURES)}")
        missing = [f for f in _FIGURES if f in self.model_fields_set and getattr(self, f) is not None
                   and not self.source.get(f, "").strip()]
        if missing:
            raise ValueError(f"no source given for {', '.join(missing)}; add a URL, log line or 'datasheet'")
        # Marketed GPU "GB" is the DRAM fitted, which is binary: an "80GB" H100 carries 80 GiB of HBM.
        m = re.fullmatch(r"(\d+)\s*GB", self.nominal or "")
        if (self.nominal or self.nominal_bytes) and (m is None or int(m.group(1)) * GiB != self.nominal_bytes):
            raise ValueError(f"nominal {self.nominal!r} must read like '80GB', with nominal_bytes = 80 * 2**30")
        if self.capacity_bytes > (self.nominal_bytes or self.capacity_bytes):
            raise ValueError("capacity_bytes exceeds nominal_bytes: a size is probably in the wrong unit")
        if self.capacity_bytes > (self.nvidia_smi_total_bytes or self.capacity_bytes):
            raise ValueError("capacity_bytes exceeds nvidia_smi_total_bytes: the CUDA total is never larger")
        return self


class LinkSpec(_Frozen):
    """A link class: ``bandwidth_GBps`` is per GPU, per direction, in GB/s."""

    kind: str = Field(min_length=1)
    # How the node's GPUs are wired (intra-node links only): NCCL's transports and channels, NVLS and vLLM's
    # all-reduce buffers depend on it (core/memory/runtime.py). None: from the kind's words.
    fabric: Literal["nvswitch", "nvlink", "pcie"] | None = None
    bandwidth_GBps: StrictFloat = Field(gt=0, le=MAX_BANDWIDTH_GBPS)
    source: str = Field(min_length=1)


class ClusterSpec(_Frozen):
    """``nodes`` x ``gpus_per_node`` of one GPU, an intra-node link and (when nodes > 1) an inter-node one. In YAML
    ``gpu`` is a catalog name or alias; optional price overrides (``price_per_gpu_hour_usd``; ``purchase_price_usd``
    for the whole cluster) need an entry in ``source``."""

    name: str = Field(min_length=1)
    description: str = ""
    gpu: GPUSpec
    nodes: StrictInt = Field(gt=0, le=MAX_WORLD_SIZE)
    gpus_per_node: StrictInt = Field(gt=0, le=1024)
    intra_node_link: LinkSpec
    inter_node_link: LinkSpec | None = None
    price_per_gpu_hour_usd: StrictFloat | None = Field(default=None, ge=0, le=MAX_PRICE_USD)
    purchase_price_override_usd: StrictFloat | None = Field(default=None, ge=0, le=MAX_PRICE_USD, alias="purchase_price_usd")
    # CPU memory of one node (``host_memory: 2TiB``): the default budget of optimizer / parameter offload in
    # ``shardsim train`` (--host-memory overrides it); needs a source like the prices
    host_memory_bytes: StrictInt | None = Field(default=None, ge=0, le=1 << 50, alias="host_memory")
    source: dict[str, str] = Field(default_factory=dict)

    @field_validator("host_memory_bytes", mode="before")
    @classmethod
    def _host_memory(cls, value: Any) -> Any:
        """``2TiB`` / ``1.5 TB`` as ``units.parse_size`` reads sizes; a whole number of bytes as is."""
        if isinstance(value, str):
            from shardsim.units import parse_size

            try:
                return parse_size(value)
            except Exception:
                raise ValueError(f"host_memory {value!r:.40} is not a size; accepted e.g. 2TiB, 512GiB") from None
        return value

    @model_validator(mode="after")
    def _check(self) -> ClusterSpec:
        if self.nodes * self.gpus_per_node > MAX_WORLD_SIZE:
            raise ValueError(f"{self.nodes} nodes × {self.gpus_per_node} GPUs exceeds the limit of "
                             f"{MAX_WORLD_SIZE:,} GPUs per cluster")
        if self.nodes > 1 and self.inter_node_link is None:
            raise ValueError(f"field 'inter_node_link' is required when nodes > 1 (nodes: {self.nodes})")
        overrides = {"price_per_gpu_hour_usd": self.price_per_gpu_hour_usd,
                     "purchase_price_usd": self.purchase_price_override_usd, "host_memory": self.host_memory_bytes}
        if set(self.source) - set(overrides):
            raise ValueError(f"source may only name {', '.join(overrides)}, got {sorted(self.source)}")
        for key, value in overrides.items():
            if value is not None and not self.source.get(key, "").strip():
                raise ValueError(f"field '{key}' needs a source: add source: {{{key}: <URL or note>}}")
        return self

    @property
    def world_size(self) -> int:
        return self.nodes * self.gpus_per_node

    @property
    def price_per_hour_usd(self) -> float | None:
        """Whole cluster per hour: world_size x (the file's GPU-hour override, else the catalog's; None: unknown)."""
        each = self.gpu.price_per_gpu_hour_usd if self.price_per_gpu_hour_usd is None else self.price_per_gpu_hour_usd
        return None if each is None else each * self.world_size

    @property
    def purchase_price_usd(self) -> float | None:
        """Whole cluster: the file's override, else world_size x the catalog's per-GPU purchase price."""
        if self.purchase_price_override_usd is not None:
            return self.purchase_price_override_usd
        each = self.gpu.purchase_price_usd
        return None if each is None else each * self.world_size


