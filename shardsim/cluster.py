"""GPU catalog and cluster topologies: which card, how many per node, and how they are wired.

Data: YAML under ``cluster_specs/`` -- ``gpus.yaml`` (the catalog) and one file per cluster; every figure there
carries a ``source``. Sizes are bytes (int). ``LinkSpec.bandwidth_GBps`` is per GPU and per direction in GB/s
(10**9 B/s), what a collective's bus bandwidth is bounded by; ``GPUSpec.nvlink_GBps`` keeps the datasheet's
both-directions total (H100: 900), so an NVLink link is half of it (450). Importing this module loads pydantic
only: PyYAML is imported by the loaders, networkx by ``topology_graph``.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ShardsimError
from .units import GiB, ceil_div, parse_size

ENV_SPECS_DIR = "SHARDSIM_CLUSTER_SPECS"  # a directory of cluster YAML files to use instead of the built-in one
CATALOG_FILE = "gpus.yaml"
_BUILTIN_DIR = Path(__file__).resolve().parent.parent / "cluster_specs"

PCIE_GEN4_X16_GBPS = 31.5
"""PCIe 4.0 x16: 16 GT/s x 16 lanes x 128/130 encoding / 8 bits = 31.5 GB/s per direction (card of unknown link)."""

_FIGURES = ("capacity_bytes", "nvidia_smi_total_bytes", "memory_bandwidth_GBps", "bf16_tflops", "fp16_tflops",
            "nvlink_GBps", "pcie_GBps", "compute_capability", "price_per_gpu_hour_usd", "purchase_price_usd")
"""Measured or quoted GPUSpec figures: each one given needs a ``source`` entry (``nominal`` is the product name's)."""


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    def __hash__(self) -> int:  # pydantic's frozen hash breaks on dict fields (``source``); hash the content
        return hash(self.model_dump_json())


class GPUSpec(_Frozen):
    """One GPU model. ``capacity_bytes`` is what the CUDA runtime reports (torch ``total_memory``)."""

    name: str = Field(min_length=1)
    aliases: tuple[str, ...] = ()
    nominal: str | None = None
    nominal_bytes: int | None = Field(default=None, gt=0)
    capacity_bytes: int = Field(gt=0)
    capacity_basis: Literal["cuda", "nvidia-smi", "user"] = "cuda"
    nvidia_smi_total_bytes: int | None = Field(default=None, gt=0)
    memory_bandwidth_GBps: float = Field(default=0.0, ge=0)
    bf16_tflops: float = Field(default=0.0, ge=0)
    fp16_tflops: float = Field(default=0.0, ge=0)
    fp8: bool = False
    nvlink_GBps: float = Field(default=0.0, ge=0)
    pcie_GBps: float = Field(default=0.0, ge=0)
    compute_capability: str | None = Field(default=None, pattern=r"^\d+\.\d+$")
    price_per_gpu_hour_usd: float | None = Field(default=None, ge=0)
    purchase_price_usd: float | None = Field(default=None, ge=0)
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
    bandwidth_GBps: float = Field(gt=0)
    source: str = Field(min_length=1)


class ClusterSpec(_Frozen):
    """``nodes`` x ``gpus_per_node`` of one GPU, an intra-node link and (when nodes > 1) an inter-node one. In YAML
    ``gpu`` is a catalog name or alias; optional price overrides (``price_per_gpu_hour_usd``; ``purchase_price_usd``
    for the whole cluster) need an entry in ``source``."""

    name: str = Field(min_length=1)
    description: str = ""
    gpu: GPUSpec
    nodes: int = Field(gt=0)
    gpus_per_node: int = Field(gt=0)
    intra_node_link: LinkSpec
    inter_node_link: LinkSpec | None = None
    price_per_gpu_hour_usd: float | None = Field(default=None, ge=0)
    purchase_price_override_usd: float | None = Field(default=None, ge=0, alias="purchase_price_usd")
    source: dict[str, str] = Field(default_factory=dict)

    @field_validator("gpu", mode="before")
    @classmethod
    def _resolve(cls, value: Any) -> Any:
        return resolve_gpu(value) if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> ClusterSpec:
        if self.nodes > 1 and self.inter_node_link is None:
            raise ValueError(f"field 'inter_node_link' is required when nodes > 1 (nodes: {self.nodes})")
        overrides = {"price_per_gpu_hour_usd": self.price_per_gpu_hour_usd,
                     "purchase_price_usd": self.purchase_price_override_usd}
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


def specs_dir() -> Path:
    """``$SHARDSIM_CLUSTER_SPECS`` if set, else ``<repo>/cluster_specs`` next to this package."""
    env = os.environ.get(ENV_SPECS_DIR, "").strip()
    return Path(env).expanduser() if env else _BUILTIN_DIR


def _show(path: Path) -> str:
    """The path relative to the working directory when it lies below it, as the user would type it."""
    full, cwd = path.resolve(), Path.cwd().resolve()
    return str(full.relative_to(cwd)) if full.is_relative_to(cwd) else str(path)


def _read_yaml(path: Path) -> tuple[Any, Any]:
    """(data, node tree) of a YAML file; the node tree maps error locations back to line numbers."""
    import yaml
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ShardsimError(f"{_show(path)}: cannot read file: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        # Fast path: libyaml's C loader when present. The node tree (for line numbers) is composed only when a
        # validation error needs it (``_LazyNode``): composing in pure Python costs ~60 ms per catalog.
        fast = getattr(yaml, "CSafeLoader", None)
        if fast is not None:
            try:
                return yaml.load(text, Loader=fast), _LazyNode(text)
            except (yaml.YAMLError, RecursionError):
                pass  # let the pure-Python loader produce the error with its marks
        loader = yaml.SafeLoader(text)  # its reader already rejects unprintable characters
        node = loader.get_single_node()
        return (loader.construct_document(node) if node is not None else None), node
    except (yaml.YAMLError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f" line {mark.line + 1}:" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ShardsimError(f"{_show(path)}:{where} invalid YAML: {problem}") from None


class _LazyNode:
    """A YAML text whose node tree is composed on first use."""

    def __init__(self, text: str):
        self.text = text

    def compose(self) -> Any:
        import yaml

        try:
            return yaml.SafeLoader(self.text).get_single_node()
        except (yaml.YAMLError, RecursionError):
            return None


def _line_of(node: Any, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the key at ``loc`` (a pydantic error location) in a composed YAML tree."""
    if isinstance(node, _LazyNode):
        node = node.compose()
    line = None
    for key in loc:
        kind = getattr(node, "id", None)
        if kind == "mapping":
            hit = next(((k, v) for k, v in node.value if str(k.value) == str(key)), None)
            if hit is None:
                break
            line, node = hit[0].start_mark.line + 1, hit[1]
        elif kind == "sequence" and isinstance(key, int) and key < len(node.value):
            line, node = node.value[key].start_mark.line + 1, node.value[key]
        else:
            break
    return line


def _invalid(path: Path, exc: ValidationError, node: Any, base: tuple[Any, ...] = (), what: str = "") -> ShardsimError:
    """One line: file, line, field and pydantic's reason for the first error (plus a count of the rest)."""
    err = exc.errors()[0]
    loc = tuple(p for p in err["loc"] if p != "LinkSpec")
    line = _line_of(node, base + loc) or _line_of(node, base)
    parts = [_show(path)] + [f"line {line}"] * bool(line) + [what] * bool(what)
    parts += ["field " + repr(".".join(str(p) for p in loc))] * bool(loc)
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return ShardsimError(": ".join(parts + [str(err["msg"]).removeprefix("Value error, ")]) + more)


@functools.lru_cache(maxsize=8)
def _catalog_at(path_str: str) -> dict[str, GPUSpec]:
    path = Path(path_str)
    data, node = _read_yaml(path)
    if not isinstance(data, dict) or not isinstance(data.get("gpus"), list) or set(data) != {"gpus"}:
        raise ShardsimError(f"{_show(path)}: expected exactly one top-level key 'gpus:' holding a list of GPUs")
    catalog: dict[str, GPUSpec] = {}
    seen: dict[str, str] = {}
    for i, entry in enumerate(data["gpus"]):
        label = f"GPU {entry.get('name')!r}" if isinstance(entry, dict) and entry.get("name") else f"GPU #{i + 1}"
        try:
            gpu = GPUSpec.model_validate(entry)
        except ValidationError as exc:
            raise _invalid(path, exc, node, ("gpus", i), label) from None
        for key in {k.lower() for k in (gpu.name, *gpu.aliases)}:
            if key in seen:
                raise ShardsimError(f"{_show(path)}: {label}: name or alias {key!r} already used by {seen[key]!r}")
            seen[key] = gpu.name
        catalog[gpu.name] = gpu
    return catalog


def _catalog() -> dict[str, GPUSpec]:
    """The catalog in specs_dir(), or the built-in one when that directory has none; parsed once, cached."""
    own = specs_dir() / CATALOG_FILE
    return _catalog_at(str(own if own.is_file() else _BUILTIN_DIR / CATALOG_FILE))


def gpu_catalog() -> dict[str, GPUSpec]:
    """Every catalog GPU keyed by canonical name."""
    return dict(_catalog())


def resolve_gpu(name: str | GPUSpec) -> GPUSpec:
    """A catalog GPU by name or alias, case-insensitively; a GPUSpec is returned as is."""
    if isinstance(name, GPUSpec):
        return name
    key, catalog = str(name).strip().lower(), _catalog()
    for gpu in catalog.values():
        if key == gpu.name.lower() or key in (a.lower() for a in gpu.aliases):
            return gpu
    known = ", ".join(g.aliases[0] if g.aliases else g.name for g in catalog.values())
    raise ShardsimError(f"unknown GPU {str(name)!r}; known: {known} (or a full name such as H100-SXM-80GB)")


def _cluster_files() -> list[Path]:
    folder = specs_dir()
    if not folder.is_dir():
        raise ShardsimError(f"cluster specs directory {str(folder)!r} does not exist; set {ENV_SPECS_DIR} to one")
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.name != CATALOG_FILE)


def _load_cluster_file(path: Path) -> ClusterSpec:
    data, node = _read_yaml(path)
    if not isinstance(data, dict):
        raise ShardsimError(f"{_show(path)}: expected a mapping of cluster fields, got {type(data).__name__}")
    try:
        return ClusterSpec.model_validate(data)
    except ValidationError as exc:
        raise _invalid(path, exc, node) from None


def _declared_name(path: Path) -> str | None:
    """The lower-cased ``name:`` a cluster file declares; None when it does not parse."""
    try:
        data = _read_yaml(path)[0]
    except ShardsimError:
        return None
    return str(data.get("name", "")).strip().lower() if isinstance(data, dict) else None


def load_cluster(name_or_path: str | os.PathLike[str]) -> ClusterSpec:
    """A cluster from a YAML path, or by file stem / ``name`` among the files in specs_dir()."""
    text = str(name_or_path).strip()
    path = Path(text).expanduser()
    looks_like_path = path.suffix in (".yaml", ".yml") or "/" in text or os.sep in text
    if looks_like_path and path.is_file():
        return _load_cluster_file(path)
    files = _cluster_files()
    known = ", ".join(p.stem for p in files)
    if looks_like_path and path.parent != Path("."):
        raise ShardsimError(f"cluster file {text!r} not found; give a YAML path or a cluster name: {known}")
    key = (path.stem if looks_like_path else text).lower()  # a bare 'x.yaml' is also looked up in specs_dir()
    match = next((p for p in files if p.stem.lower() == key), None) or next(
        (p for p in files if key and _declared_name(p) == key), None)
    if match is None:
        raise ShardsimError(f"unknown cluster {text!r}; known: {known} (or a path to a YAML file)")
    return _load_cluster_file(match)


def list_clusters() -> list[ClusterSpec]:
    """Every cluster file in specs_dir() (not the GPU catalog), sorted by name."""
    return sorted((_load_cluster_file(p) for p in _cluster_files()), key=lambda c: c.name)


def _count(label: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ShardsimError(f"{label} must be a whole number >= 1, got {value!r}")
    return value


def _intra_link(gpu: GPUSpec) -> LinkSpec:
    """NVLink (per direction: half the datasheet's both-directions figure) if the card has it, else its PCIe."""
    if gpu.nvlink_GBps > 0:
        return LinkSpec(kind="NVLink", bandwidth_GBps=gpu.nvlink_GBps / 2,
                        source=f"catalog nvlink_GBps {gpu.nvlink_GBps:g} (both directions) / 2")
    if gpu.pcie_GBps > 0:
        return LinkSpec(kind="PCIe", bandwidth_GBps=gpu.pcie_GBps, source="catalog pcie_GBps (per direction)")
    return LinkSpec(kind="PCIe Gen4 x16 (assumed)", bandwidth_GBps=PCIE_GEN4_X16_GBPS, source="card's link unknown")


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
    if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
        raise ShardsimError(f"GPU capacity must be positive bytes or a size like 80GiB, got {capacity_bytes!r}")
    label = name.strip() if name and name.strip() else f"custom-{size / GiB:.2f}GiB"
    return GPUSpec(name=label, capacity_bytes=size, capacity_basis="user", source={"capacity_bytes": "user input"})


def check_fits_cluster(cluster: ClusterSpec, world_size: int) -> None:
    """Refuse a layout needing more GPUs than the cluster has."""
    if _count("world_size", world_size) > cluster.world_size:
        raise ShardsimError(f"layout needs {world_size} GPUs; cluster '{cluster.name}' has {cluster.world_size}")


def rank_location(rank: int, cluster: ClusterSpec) -> tuple[int, int]:
    """(node, local GPU) of a global rank; ranks fill node 0 first."""
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < cluster.world_size:
        raise ShardsimError(f"rank {rank!r} is outside cluster '{cluster.name}' (ranks 0..{cluster.world_size - 1})")
    return rank // cluster.gpus_per_node, rank % cluster.gpus_per_node


def tp_group_crossings(cluster: ClusterSpec, tp: int, world_size: int) -> list[str]:
    """One warning per TP group whose ranks span nodes (ranks are tp-fastest: group g = g*tp .. g*tp+tp-1)."""
    _count("tp", tp)
    check_fits_cluster(cluster, world_size)
    if world_size % tp:
        raise ShardsimError(f"world size {world_size} is not a multiple of tp={tp}")
    intra, inter = cluster.intra_node_link, cluster.inter_node_link
    over = (f"{inter.kind} ({inter.bandwidth_GBps:g} GB/s per GPU vs {intra.bandwidth_GBps:g} GB/s {intra.kind})"
            if inter else "the inter-node network")
    warnings = []
    for group in range(world_size // tp):
        first, last = group * tp, group * tp + tp - 1
        lo, hi = first // cluster.gpus_per_node, last // cluster.gpus_per_node
        if lo != hi:
            nodes = f"node {lo} and node {hi}" if hi == lo + 1 else f"nodes {lo}–{hi}"
            warnings.append(f"TP group ranks {first}–{last} spans {nodes} over {over}: every all-reduce crosses it")
    return warnings


def link_between(cluster: ClusterSpec, rank_a: int, rank_b: int) -> LinkSpec:
    """The link class two distinct ranks talk over: intra-node if they share a node, else inter-node."""
    (node_a, _), (node_b, _) = rank_location(rank_a, cluster), rank_location(rank_b, cluster)
    if rank_a == rank_b:
        raise ShardsimError(f"ranks {rank_a} and {rank_b} are the same GPU; give two different ranks")
    inter = cluster.inter_node_link  # ClusterSpec sets it whenever nodes > 1
    return cluster.intra_node_link if node_a == node_b else inter  # type: ignore[return-value]


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
