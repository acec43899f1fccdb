"""Hardware: the GPU catalog, cluster specs and topology (YAML data under ``cluster_specs/``, validated by pydantic).

PyYAML is imported inside the loaders, networkx inside ``topology_graph``.

May import: shardsim.core, shardsim.cluster_specs (data), shardsim.files, shardsim.constants, shardsim.units,
shardsim.errors.
"""

from shardsim.hardware.catalog import (
    ENV_SPECS_DIR,
    gpu_catalog,
    list_clusters,
    load_cluster,
    resolve_gpu,
    specs_dir,
)
from shardsim.hardware.specs import ClusterSpec, GPUSpec, LinkSpec
from shardsim.hardware.topology import (
    DEFAULT_INTER_NODE,
    check_fits_cluster,
    cluster_for_gpu,
    custom_gpu,
    link_between,
    rank_location,
    topology_graph,
    tp_group_crossings,
)

__all__ = [
    "ENV_SPECS_DIR", "ClusterSpec", "DEFAULT_INTER_NODE", "GPUSpec", "LinkSpec", "check_fits_cluster",
    "cluster_for_gpu", "custom_gpu", "gpu_catalog", "link_between", "list_clusters", "load_cluster", "rank_location",
    "resolve_gpu", "specs_dir", "topology_graph", "tp_group_crossings",
]
