"""shardsim.hardware: the GPU catalog, cluster files, and topology reasoning."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from shardsim import hardware as C
from shardsim.core.layout import Layout
from shardsim.errors import ShardsimError
from shardsim.hardware import specs
from shardsim.hardware.catalog import BUILTIN_DIR
from shardsim.units import GiB, MiB

SPECS = BUILTIN_DIR

REQUIRED_ALIASES = {
    "h100": "H100-SXM-80GB", "h100-sxm": "H100-SXM-80GB", "h100-pcie": "H100-PCIe-80GB", "h200": "H200-141GB",
    "a100-40gb": "A100-40GB", "a100-80gb": "A100-80GB", "a100": "A100-80GB", "l40s": "L40S-48GB",
    "rtx4090": "RTX-4090-24GB", "a10": "A10-24GB", "v100": "V100-32GB", "t4": "T4-16GB", "h20": "H20-96GB",
    "rtx-pro-6000": "RTX-PRO-6000-96GB",
}
REQUIRED_CLUSTERS = {"h100-1x8", "h100-2x8", "h100-4x8", "h200-1x8", "a100-80gb-1x8", "a100-40gb-1x8", "l40s-1x4",
                     "h20-1x8", "rtx4090-1x8", "a10-1x4", "t4-1x4", "h100-pcie-1x8", "v100-1x8"}

GOOD_CLUSTER = """\
name: tiny
description: test cluster
gpu: h100
nodes: 1
gpus_per_node: 4
intra_node_link:
  kind: NVLink
  bandwidth_GBps: 450
  source: datasheet
"""


@pytest.fixture(autouse=True)
def _builtin_specs(monkeypatch):
    monkeypatch.delenv(C.ENV_SPECS_DIR, raising=False)


# ----------------------------------------------------------------- catalog


def test_catalog_has_every_required_gpu_and_alias():
    catalog = C.gpu_catalog()
    assert set(REQUIRED_ALIASES.values()) <= set(catalog)
    for alias, name in REQUIRED_ALIASES.items():
        assert C.resolve_gpu(alias).name == name
        assert C.resolve_gpu(alias.upper()).name == name


def test_every_gpu_resolves_by_name_and_every_alias_case_insensitively():
    for name, gpu in C.gpu_catalog().items():
        assert C.resolve_gpu(name) is gpu
        assert C.resolve_gpu(name.lower()) is gpu
        assert C.resolve_gpu(f"  {name.upper()} ") is gpu
        for alias in gpu.aliases:
            assert C.resolve_gpu(alias) is gpu
            assert C.resolve_gpu(alias.swapcase()) is gpu
    gpu = C.resolve_gpu("h100")
    assert C.resolve_gpu(gpu) is gpu


def test_h100_capacity_is_the_cuda_runtime_figure():
    h100 = C.resolve_gpu("h100")
    assert round(h100.capacity_bytes / GiB, 2) == 79.18
    assert h100.capacity_basis == "cuda"
    assert h100.nvidia_smi_total_bytes == 81559 * MiB
    assert h100.nominal == "80GB" and h100.nominal_bytes == 80 * GiB


@pytest.mark.parametrize("alias, gib", [("a100-80gb", 79.15), ("a100-40gb", 39.39), ("h200", 139.80),
                                        ("l40s", 44.52), ("h100-pcie", 79.11), ("t4", 14.76), ("h20", 95.00)])
def test_other_cuda_capacities(alias, gib):
    assert round(C.resolve_gpu(alias).capacity_bytes / GiB, 2) == gib


def test_every_figure_has_a_source_and_capacities_are_consistent():
    for gpu in C.gpu_catalog().values():
        for field in specs._FIGURES:
            if getattr(gpu, field) is not None:
                assert gpu.source.get(field, "").strip(), (gpu.name, field)
        assert gpu.capacity_bytes < gpu.nominal_bytes
        if gpu.nvidia_smi_total_bytes:
            assert gpu.capacity_bytes < gpu.nvidia_smi_total_bytes <= gpu.nominal_bytes
        assert gpu.memory_bandwidth_GBps > 0 and gpu.compute_capability
        assert gpu.bf16_tflops > 0 or gpu.compute_capability in ("7.0", "7.5")  # Volta/Turing: no BF16


def test_unknown_gpu_lists_known_ones():
    with pytest.raises(ShardsimError) as err:
        C.resolve_gpu("xyz")
    msg = str(err.value)
    assert msg.startswith("unknown GPU 'xyz'; known: h100, h100-pcie, ")
    for alias in ("h200", "a100-40gb", "l40s", "t4", "h20", "rtx-pro-6000"):
        assert alias in msg
    assert "\n" not in msg


def test_gpu_models_are_frozen_and_reject_unknown_fields():
    gpu = C.resolve_gpu("h100")
    with pytest.raises(Exception):
        gpu.capacity_bytes = 1  # type: ignore[misc]
    with pytest.raises(ValueError):
        C.GPUSpec(name="x", capacity_bytes=1, vram=2, source={"capacity_bytes": "x"})


def test_gpu_figure_without_source_is_refused():
    with pytest.raises(ValueError, match="no source given for memory_bandwidth_GBps"):
        C.GPUSpec(name="x", capacity_bytes=GiB, memory_bandwidth_GBps=100, source={"capacity_bytes": "log"})


def test_broken_catalog_names_file_gpu_and_field(tmp_path, monkeypatch):
    text = (SPECS / "gpus.yaml").read_text().replace("capacity_bytes: 85017624576", "capacity_bytes: 90000000000")
    (tmp_path / "gpus.yaml").write_text(text)
    (tmp_path / "c.yaml").write_text(GOOD_CLUSTER)
    monkeypatch.setenv(C.ENV_SPECS_DIR, str(tmp_path))
    with pytest.raises(ShardsimError) as err:
        C.gpu_catalog()
    msg = str(err.value)
    assert "gpus.yaml" in msg and "GPU 'H100-SXM-80GB'" in msg and "nominal_bytes" in msg and "line " in msg


def test_custom_gpu():
    gpu = C.custom_gpu(46068 * MiB)
    assert gpu.capacity_bytes == 46068 * MiB and gpu.capacity_basis == "user" and gpu.name.startswith("custom-")
    assert C.custom_gpu("24GiB", name="my-card").name == "my-card"
    with pytest.raises(ShardsimError):
        C.custom_gpu(0)
    cluster = C.cluster_for_gpu(gpu, 4)
    assert cluster.gpu is gpu and cluster.intra_node_link.bandwidth_GBps == pytest.approx(16 * 16 * 128 / 130 / 8, abs=0.01)  # PCIe 4.0 x16: 16 GT/s · 16 lanes · 128/130 / 8 bits


# ----------------------------------------------------------------- cluster files


def test_every_cluster_file_loads():
    files = sorted(p for p in SPECS.glob("*.yaml") if p.name != "gpus.yaml")
    clusters = C.list_clusters()
    assert len(clusters) == len(files)
    assert [c.name for c in clusters] == sorted(c.name for c in clusters)
    assert REQUIRED_CLUSTERS <= {c.name for c in clusters}
    for path in files:
        by_stem = C.load_cluster(path.stem)
        assert C.load_cluster(str(path)) == by_stem
        assert by_stem.intra_node_link.source and (by_stem.nodes == 1 or by_stem.inter_node_link.source)


def test_cluster_shapes_and_prices():
    c = C.load_cluster("h100-2x8")
    assert (c.nodes, c.gpus_per_node, c.world_size) == (2, 8, 16)
    assert c.gpu.name == "H100-SXM-80GB"
    assert c.intra_node_link.bandwidth_GBps == 450 and c.inter_node_link.bandwidth_GBps == 50
    assert c.price_per_hour_usd == pytest.approx(16 * c.gpu.price_per_gpu_hour_usd)
    assert c.purchase_price_usd == pytest.approx(16 * c.gpu.purchase_price_usd)
    assert C.load_cluster("L40S-1X4").intra_node_link.kind.startswith("PCIe")
    assert C.load_cluster("h100-4x8").world_size == 32


def test_price_overrides_need_a_source(tmp_path):
    path = tmp_path / "priced.yaml"
    path.write_text(GOOD_CLUSTER + "price_per_gpu_hour_usd: 2.0\npurchase_price_usd: 100000\n"
                    "source: {price_per_gpu_hour_usd: quote, purchase_price_usd: quote}\n")
    c = C.load_cluster(str(path))
    assert c.price_per_hour_usd == 8.0 and c.purchase_price_usd == 100000
    path.write_text(GOOD_CLUSTER + "purchase_price_usd: 100000\n")
    with pytest.raises(ShardsimError, match="purchase_price_usd"):
        C.load_cluster(str(path))


@pytest.mark.parametrize("body, field, line", [
    (GOOD_CLUSTER.replace("gpus_per_node: 4", "gpus_per_node: 0"), "field 'gpus_per_node'", 5),
    (GOOD_CLUSTER + "gpu_count: 8\n", "field 'gpu_count'", 10),
    (GOOD_CLUSTER.replace("bandwidth_GBps: 450", "bandwidth_GBps: fast"), "field 'intra_node_link.bandwidth_GBps'", 8),
    (GOOD_CLUSTER.replace("gpu: h100", "gpu: h1000"), "field 'gpu'", 3),
])
def test_bad_cluster_file_names_file_field_and_line(tmp_path, body, field, line):
    path = tmp_path / "bad.yaml"
    path.write_text(body)
    with pytest.raises(ShardsimError) as err:
        C.load_cluster(str(path))
    msg = str(err.value)
    assert "bad.yaml" in msg and field in msg and f"line {line}" in msg and "\n" not in msg


def test_bad_cluster_messages_say_what_is_accepted(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD_CLUSTER.replace("gpus_per_node: 4", "gpus_per_node: 0"))
    with pytest.raises(ShardsimError, match=r"bad\.yaml: line 5: field 'gpus_per_node': Input should be greater than 0"):
        C.load_cluster(str(path))
    path.write_text(GOOD_CLUSTER.replace("gpu: h100", "gpu: h1000"))
    with pytest.raises(ShardsimError, match="unknown GPU 'h1000'; known: h100"):
        C.load_cluster(str(path))


def test_broken_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\nnodes: [1, 2\ngpus_per_node: 8\n")
    with pytest.raises(ShardsimError) as err:
        C.load_cluster(str(path))
    assert "broken.yaml" in str(err.value) and "invalid YAML" in str(err.value) and "line " in str(err.value)


@pytest.mark.parametrize("text", ["", "- a\n- b\n", "just a string\n", "a: \x01\n", "[" * 5000, "nodes: 2\n"])
def test_odd_files_only_raise_shardsim_error(tmp_path, text):
    path = tmp_path / "odd.yaml"
    path.write_text(text)
    with pytest.raises(ShardsimError, match="odd.yaml"):
        C.load_cluster(str(path))


def test_multi_node_cluster_needs_inter_node_link(tmp_path):
    path = tmp_path / "two.yaml"
    path.write_text(GOOD_CLUSTER.replace("nodes: 1", "nodes: 2"))
    with pytest.raises(ShardsimError, match="two.yaml: field 'inter_node_link' is required when nodes > 1"):
        C.load_cluster(str(path))


def test_unknown_cluster_lists_known_ones():
    with pytest.raises(ShardsimError) as err:
        C.load_cluster("h100-9x8")
    assert "unknown cluster 'h100-9x8'; known: " in str(err.value) and "h100-2x8" in str(err.value)
    with pytest.raises(ShardsimError, match="not found"):
        C.load_cluster("missing/nowhere.yaml")


def test_specs_dir_env_var_and_lookup_by_declared_name(tmp_path, monkeypatch):
    (tmp_path / "file-stem.yaml").write_text(GOOD_CLUSTER)
    (tmp_path / "zz-broken.yaml").write_text("name: [\n")
    monkeypatch.setenv(C.ENV_SPECS_DIR, str(tmp_path))
    assert C.specs_dir() == tmp_path
    assert C.load_cluster("tiny").name == "tiny"          # by the name inside the file
    assert C.load_cluster("file-stem").name == "tiny"     # by file stem
    assert "H100-SXM-80GB" in C.gpu_catalog()              # no gpus.yaml there: built-in catalog
    with pytest.raises(ShardsimError, match="zz-broken.yaml"):
        C.list_clusters()


# ----------------------------------------------------------------- topology reasoning


def test_cluster_for_gpu_layouts():
    c = C.cluster_for_gpu("h100", 16)
    assert (c.nodes, c.gpus_per_node) == (2, 8) and c.name == "h100-2x8"
    assert c.intra_node_link.bandwidth_GBps == 450 and c.inter_node_link.bandwidth_GBps == 50
    small = C.cluster_for_gpu("t4", 3)
    assert (small.nodes, small.gpus_per_node, small.inter_node_link) == (1, 3, None)
    assert small.intra_node_link.kind == "PCIe" and small.intra_node_link.bandwidth_GBps == 15.75
    assert C.cluster_for_gpu("a100", 24, gpus_per_node=4).nodes == 6
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ShardsimError):
            C.cluster_for_gpu("h100", bad)


def test_tp_group_crossings():
    c = C.load_cluster("h100-2x8")
    assert C.tp_group_crossings(c, Layout(tp=8, dp=2)) == []
    (warning,) = C.tp_group_crossings(c, Layout(tp=16))
    assert warning.startswith("TP group ranks 0–15 spans node 0 and node 1 over InfiniBand NDR 400Gb/s "
                              "(50 GB/s per GPU vs 450 GB/s NVLink")
    assert warning.endswith("every all-reduce crosses it")
    assert C.tp_group_crossings(c, Layout(tp=4, pp=2, dp=2)) == []
    # TP12 × DP2 on 8-GPU nodes: ranks 0–11 straddle nodes 0–1, ranks 12–23 nodes 1–2
    warnings = C.tp_group_crossings(C.load_cluster("h100-4x8"), Layout(tp=12, dp=2))
    assert [w.split(" spans")[0] for w in warnings] == ["TP group ranks 0–11", "TP group ranks 12–23"]
    assert "nodes 0–3" in C.tp_group_crossings(C.load_cluster("h100-4x8"), Layout(tp=32))[0]


def test_check_fits_cluster():
    c = C.load_cluster("h100-2x8")
    C.check_fits_cluster(c, 16)
    with pytest.raises(ShardsimError, match="^layout needs 32 GPUs; cluster 'h100-2x8' has 16$"):
        C.check_fits_cluster(c, 32)
    with pytest.raises(ShardsimError):
        C.tp_group_crossings(c, Layout(tp=8, dp=4))


def test_rank_location_and_link_between():
    c = C.load_cluster("h100-2x8")
    # 8 GPUs per node: rank 9 = node 1, GPU 1; rank 15 = node 1, GPU 7
    assert [(s.node, s.local_gpu) for s in (C.rank_location(r, c) for r in (0, 9, 15))] == [(0, 0), (1, 1), (1, 7)]
    assert C.link_between(c, 0, 7) == c.intra_node_link
    assert C.link_between(c, 7, 8) == c.inter_node_link
    for bad in (-1, 16):
        with pytest.raises(ShardsimError):
            C.rank_location(bad, c)
    with pytest.raises(ShardsimError):
        C.link_between(c, 3, 3)


def test_topology_graph():
    c = C.load_cluster("h100-2x8")
    g = C.topology_graph(c)
    gpus = [n for n, d in g.nodes(data=True) if d["kind"] == "gpu"]
    assert len(gpus) == 16 and set(gpus) == {("gpu", n, l) for n in range(2) for l in range(8)}
    assert sorted(g.nodes[n]["rank"] for n in gpus) == list(range(16))
    for local in range(8):
        edge = g.edges[("gpu", 1, local), ("switch", 1)]
        assert edge["bandwidth_GBps"] == 450 and edge["kind"] == "NVLink 4 / NVSwitch"
    uplink = g.edges[("switch", 0), ("network",)]
    assert uplink["bandwidth_GBps"] == 50 and uplink["aggregate_GBps"] == 400
    import networkx as nx
    path = nx.shortest_path(g, ("gpu", 0, 3), ("gpu", 1, 5))
    assert min(g.edges[a, b]["bandwidth_GBps"] for a, b in zip(path, path[1:])) == 50
    single = C.topology_graph(C.load_cluster("h100-1x8"))
    assert ("network",) not in single and single.number_of_nodes() == 9


def test_import_is_light():
    code = ("import sys, shardsim.hardware; "
            "assert 'networkx' not in sys.modules and 'yaml' not in sys.modules, sorted(sys.modules)")
    root = Path(C.__file__).resolve().parent.parent
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root, env={"PYTHONPATH": str(root)})


def test_specs_are_hashable_and_comparable():
    c = C.load_cluster("h100-1x8")
    assert hash(c) == hash(C.load_cluster("h100-1x8")) and c == C.load_cluster("h100-1x8")
    assert len({C.resolve_gpu("h100"), C.resolve_gpu("H100-SXM-80GB"), C.resolve_gpu("h200")}) == 2


def test_bare_yaml_name_is_looked_up_in_specs_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert C.load_cluster("h100-1x8.yaml").name == "h100-1x8"
    with pytest.raises(ShardsimError, match="unknown cluster"):
        C.load_cluster("nope.yaml")
