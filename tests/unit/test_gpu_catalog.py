"""The GPU catalog's data (cluster_specs/gpus.yaml): every figure sourced, capacities ordered, the names drivers
print (nvidia-smi, torch, rocm-smi) accepted by --gpu, an ambiguous name refused, the cluster files of the newer GPUs."""

from __future__ import annotations

import pytest

from shardsim import hardware as C
from shardsim.errors import ShardsimError
from shardsim.hardware import specs
from shardsim.hardware.catalog import BUILTIN_DIR
from shardsim.units import GiB, MiB


@pytest.fixture(autouse=True)
def _builtin_specs(monkeypatch):
    monkeypatch.delenv(C.ENV_SPECS_DIR, raising=False)


DEVICE_NAMES = {
    "NVIDIA H100 80GB HBM3": "H100-SXM-80GB",
    "NVIDIA H100 PCIe": "H100-PCIe-80GB",
    "NVIDIA H200": "H200-141GB",
    "NVIDIA A100-SXM4-80GB": "A100-80GB",
    "NVIDIA A100-SXM4-40GB": "A100-40GB",
    "NVIDIA L40S": "L40S-48GB",
    "NVIDIA GeForce RTX 4090": "RTX-4090-24GB",
    "NVIDIA A10": "A10-24GB",
    "Tesla V100-SXM2-32GB": "V100-32GB",
    "Tesla T4": "T4-16GB",
    "NVIDIA H20": "H20-96GB",
    "NVIDIA RTX PRO 6000 Blackwell Server Edition": "RTX-PRO-6000-96GB",
    "NVIDIA L4": "L4-24GB",
    "NVIDIA B200": "B200-180GB",
    "NVIDIA GB200": "GB200-186GB",
    "NVIDIA H100 NVL": "H100-NVL-94GB",
    "AMD Instinct MI300X": "MI300X-192GB",
    "AMD Instinct MI325X": "MI325X-256GB",
}
"""What ``nvidia-smi --query-gpu=name`` / ``torch.cuda.get_device_name()`` / rocm-smi print → the catalog entry."""

REQUIRED = ("capacity_bytes", "memory_bandwidth_GBps", "fp16_tflops", "nvlink_GBps", "pcie_GBps",
            "compute_capability", "price_per_gpu_hour_usd")
"""Figures every GPU carries, each with a source (bf16_tflops too, except on Volta / Turing, which have no BF16)."""

KNOWN_GAPS = {
    ("H100-PCIe-80GB", "nvidia_smi_total_bytes"), ("V100-32GB", "nvidia_smi_total_bytes"),
    ("MI300X-192GB", "nvidia_smi_total_bytes"), ("MI325X-256GB", "nvidia_smi_total_bytes"),  # AMD: no nvidia-smi
    ("H100-NVL-94GB", "purchase_price_usd"), ("MI325X-256GB", "purchase_price_usd"),  # no public price found
}
"""Figures left out because no source was found (or none exists); a new gap must be added here on purpose."""

NEW_GPUS = {
    # name: (capacity in MiB as the runtime reports it, nvidia-smi MiB or None, nominal GiB)
    "L4-24GB": (23612293120 / MiB, 23034, 24),
    "H100-NVL-94GB": (95330, 95830, 94),
    "B200-180GB": (182631, 183359, 180),
    "GB200-186GB": (188733, 189471, 186),
    "MI300X-192GB": (196592, None, 192),
    "MI325X-256GB": (262124, None, 256),
}


def test_every_gpu_has_every_figure_with_a_source():
    for name, gpu in C.gpu_catalog().items():
        for field in REQUIRED + ("bf16_tflops", "nvidia_smi_total_bytes", "purchase_price_usd"):
            if (name, field) in KNOWN_GAPS:
                assert getattr(gpu, field) is None, f"{name}.{field} is now known: drop it from KNOWN_GAPS"
                continue
            if field == "bf16_tflops" and gpu.compute_capability in ("7.0", "7.5"):
                assert gpu.bf16_tflops == 0 and gpu.source["bf16_tflops"].strip()  # no BF16, and said so
                continue
            assert getattr(gpu, field) is not None, (name, field)
            assert gpu.source.get(field, "").strip(), (name, field)
        # a figure given is a figure sourced (the model refuses otherwise; this keeps the catalog honest too)
        for field in specs._FIGURES:
            if field in gpu.model_fields_set:
                assert gpu.source.get(field, "").strip(), (name, field)
        assert gpu.memory_bandwidth_GBps > 0 and gpu.fp16_tflops > 0
        assert gpu.nominal and gpu.nominal_bytes and gpu.capacity_basis == "cuda"


def test_capacity_is_at_most_the_smi_total_and_the_nominal_size():
    for name, gpu in C.gpu_catalog().items():
        assert gpu.capacity_bytes <= gpu.nominal_bytes, name
        if gpu.nvidia_smi_total_bytes is not None:
            assert gpu.capacity_bytes <= gpu.nvidia_smi_total_bytes <= gpu.nominal_bytes, name
            assert gpu.nvidia_smi_total_bytes % MiB == 0, name  # nvidia-smi prints whole MiB


@pytest.mark.parametrize("name", sorted(NEW_GPUS))
def test_new_gpus_capacities(name):
    gpu = C.gpu_catalog()[name]
    cuda_mib, smi_mib, nominal_gib = NEW_GPUS[name]
    assert gpu.capacity_bytes == round(cuda_mib * MiB)
    assert gpu.nvidia_smi_total_bytes == (None if smi_mib is None else smi_mib * MiB)
    assert gpu.nominal == f"{nominal_gib}GB" and gpu.nominal_bytes == nominal_gib * GiB


def test_headline_figures_of_the_new_gpus():
    cat = C.gpu_catalog()
    b200, gb200, l4, nvl = cat["B200-180GB"], cat["GB200-186GB"], cat["L4-24GB"], cat["H100-NVL-94GB"]
    assert (b200.bf16_tflops, b200.memory_bandwidth_GBps, b200.nvlink_GBps, b200.compute_capability) == \
        (2250, 8000, 1800, "10.0")
    assert (gb200.bf16_tflops, gb200.memory_bandwidth_GBps, gb200.nvlink_GBps) == (2500, 8000, 1800)
    assert (l4.bf16_tflops, l4.memory_bandwidth_GBps, l4.nvlink_GBps, l4.pcie_GBps) == (121, 300, 0, 31.5)
    assert nvl.nvlink_GBps == 0 and "bridge" in nvl.source["nvlink_GBps"]  # pairs only, as H100-PCIe
    for amd in ("MI300X-192GB", "MI325X-256GB"):
        gpu = cat[amd]
        assert gpu.bf16_tflops == 1307.4 and gpu.fp8 and gpu.nvlink_GBps == 896
        assert "Infinity Fabric" in gpu.source["nvlink_GBps"]
        assert "not a CUDA" in gpu.source["compute_capability"]
    assert all(g.fp8 for g in (b200, gb200, l4, nvl))


@pytest.mark.parametrize("device_name, expected", sorted(DEVICE_NAMES.items()))
def test_driver_names_resolve(device_name, expected):
    gpu = C.resolve_gpu(device_name)
    assert gpu.name == expected
    assert device_name in gpu.device_names
    # case, spaces, hyphens and underscores do not matter
    for variant in (device_name.lower(), device_name.upper(), f"  {device_name}  ", device_name.replace(" ", "-"),
                    device_name.replace(" ", "_"), device_name.replace("-", " ")):
        assert C.resolve_gpu(variant) is gpu, variant


def test_every_name_alias_and_device_name_resolves_to_its_own_gpu():
    for name, gpu in C.gpu_catalog().items():
        for text in (name, *gpu.aliases, *gpu.device_names):
            assert C.resolve_gpu(text) is gpu, text


@pytest.mark.parametrize("text, expected", [
    ("NVIDIA H100", "H100-SXM-80GB"),        # vendor word dropped: "h100" is the SXM's alias
    ("H100 80GB HBM3", "H100-SXM-80GB"),     # words of one GPU's names only
    ("GeForce RTX 4090", "RTX-4090-24GB"),
    ("AMD MI300X", "MI300X-192GB"),
    ("Instinct MI325X", "MI325X-256GB"),
    ("L4 24GB", "L4-24GB"),
    ("h100 nvl", "H100-NVL-94GB"),
    ("B200", "B200-180GB"),
    ("gb200", "GB200-186GB"),                # not B200: whole words only
])
def test_partial_and_vendor_less_names(text, expected):
    assert C.resolve_gpu(text).name == expected


@pytest.mark.parametrize("text, fits", [
    ("A100 SXM4", ("A100-40GB", "A100-80GB")),
    ("24GB", ("RTX-4090-24GB", "A10-24GB", "L4-24GB")),
    ("NVIDIA 80GB", ("H100-SXM-80GB", "H100-PCIe-80GB", "A100-80GB")),
])
def test_an_ambiguous_name_is_refused_naming_every_candidate(text, fits):
    with pytest.raises(ShardsimError) as err:
        C.resolve_gpu(text)
    msg = str(err.value)
    assert msg.startswith(f"GPU {text!r} is ambiguous") and "\n" not in msg
    for name in fits:
        assert name in msg


@pytest.mark.parametrize("text", ["xyz", "NVIDIA", "pcie", "H100 80GB PCIe HBM3", "B300", "MI355X", ""])
def test_unknown_names_are_refused_listing_the_known_ones(text):
    with pytest.raises(ShardsimError) as err:
        C.resolve_gpu(text)
    msg = str(err.value)
    assert msg.startswith(f"unknown GPU {text!r}; known: h100, ")
    for alias in ("l4", "h100-nvl", "b200", "gb200", "mi300x", "mi325x"):
        assert alias in msg
    assert "nvidia-smi" in msg


def _catalog_text() -> str:
    return (BUILTIN_DIR / "gpus.yaml").read_text()


def test_a_name_used_by_two_gpus_is_refused(tmp_path, monkeypatch):
    # the L4's driver name, respelt, given to the L40S as well
    text = _catalog_text().replace('device_names: ["NVIDIA L40S"]', 'device_names: ["NVIDIA L40S", "nvidia-l4"]')
    (tmp_path / "gpus.yaml").write_text(text)
    monkeypatch.setenv(C.ENV_SPECS_DIR, str(tmp_path))
    with pytest.raises(ShardsimError, match=r"GPU 'L4-24GB': name or alias 'NVIDIA L4' already used by 'L40S-48GB'"):
        C.gpu_catalog()


def test_spellings_of_one_name_on_one_gpu_are_allowed(tmp_path, monkeypatch):
    text = _catalog_text().replace("aliases: [l4]", "aliases: [l4, L-4, nvidia_l4]")
    (tmp_path / "gpus.yaml").write_text(text)
    monkeypatch.setenv(C.ENV_SPECS_DIR, str(tmp_path))
    assert C.resolve_gpu("NVIDIA L4").aliases == ("l4", "L-4", "nvidia_l4")


NEW_CLUSTERS = {
    # name: (gpu, nodes × gpus per node, fabric, per-direction GB/s)
    "l4-1x8": ("L4-24GB", (1, 8), "pcie", 31.5),
    "h100-nvl-1x2": ("H100-NVL-94GB", (1, 2), "nvlink", 300),
    "b200-1x8": ("B200-180GB", (1, 8), "nvswitch", 900),
    "gb200-nvl72": ("GB200-186GB", (1, 72), "nvswitch", 900),
    "mi300x-1x8": ("MI300X-192GB", (1, 8), "nvlink", 448),
    "mi325x-1x8": ("MI325X-256GB", (1, 8), "nvlink", 448),
}


@pytest.mark.parametrize("name", sorted(NEW_CLUSTERS))
def test_cluster_files_of_the_new_gpus(name):
    gpu, shape, fabric, gbps = NEW_CLUSTERS[name]
    c = C.load_cluster(name)
    assert c.gpu.name == gpu and (c.nodes, c.gpus_per_node) == shape
    link = c.intra_node_link
    assert (link.fabric, link.bandwidth_GBps) == (fabric, gbps) and link.source.strip()
    if fabric == "pcie":
        assert link.bandwidth_GBps <= c.gpu.pcie_GBps
    elif c.gpu.nvlink_GBps:
        assert link.bandwidth_GBps == c.gpu.nvlink_GBps / 2  # the datasheet's both-directions figure, halved
    assert name in {x.name for x in C.list_clusters()}
