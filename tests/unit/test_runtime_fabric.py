"""Runtime memory by component and interconnect, arithmetic written out (core/memory/runtime.py)."""

from shardsim.core.layout import Layout, validate_layout
from shardsim.core.memory.runtime import Fabric, runtime_bytes
from shardsim.presets import get_preset

MiB = 1 << 20
H100_NVSWITCH = Fabric("nvswitch", 8, (9, 0))
H100_PCIE = Fabric("pcie", 8, (9, 0))
A100_NVSWITCH = Fabric("nvswitch", 8, (8, 0))


def test_tp4_on_nvswitch_h100():
    rt = runtime_bytes(0, validate_layout(get_preset("32b"), Layout(tp=4)), False, H100_NVSWITCH)
    # one TP communicator: 16 channels × (12 MiB P2P buffers + 6 MiB cuMem structures)
    assert rt.nccl == 16 * 18 * MiB
    # NVLS over 4 GPUs: 16 channels × 2 × 1 MiB × 4
    assert rt.nvls == 128 * MiB
    # vLLM custom all-reduce 2 × 8 MiB + 8 MiB; symmetric memory for TP4 on sm90: 32 MiB
    assert (rt.custom_allreduce, rt.symmetric_memory, rt.pipeline_p2p) == (24 * MiB, 32 * MiB, 0)


def test_pcie_has_no_nvls_custom_allreduce_beyond_two_or_symmetric_memory():
    spec = get_preset("32b")
    rt = runtime_bytes(0, validate_layout(spec, Layout(tp=4)), False, H100_PCIE)
    assert rt.nccl == 2 * 18 * MiB                      # 2 channels on PCIe
    assert (rt.nvls, rt.custom_allreduce, rt.symmetric_memory) == (0, 0, 0)
    rt2 = runtime_bytes(0, validate_layout(spec, Layout(tp=2)), False, H100_PCIE)
    assert rt2.custom_allreduce == 24 * MiB             # two PCIe GPUs: custom all-reduce still runs


def test_a100_has_no_multicast_and_tp2_no_nvls():
    spec = get_preset("32b")
    rt = runtime_bytes(0, validate_layout(spec, Layout(tp=8)), False, A100_NVSWITCH)
    assert (rt.nvls, rt.symmetric_memory) == (0, 0)     # sm80: no NVLS, no multicast symmetric memory
    rt2 = runtime_bytes(0, validate_layout(spec, Layout(tp=2)), False, H100_NVSWITCH)
    assert rt2.nvls == 0 and rt2.symmetric_memory == 64 * MiB   # NVLS needs > 2 GPUs; sm90 TP2 symm 64 MiB


def test_pipeline_neighbours_inside_and_across_nodes():
    spec = get_preset("235b")
    lay = validate_layout(spec, Layout(tp=4, pp=4))
    # ranks 0–3 stage 0 and 4–7 stage 1 share node 0; 8–11 stage 2 is on node 1
    inside = runtime_bytes(0, lay, True, H100_NVSWITCH)
    assert inside.pipeline_p2p == 16 * 12 * MiB          # next stage on the same node: 16 channels × 12 MiB
    across = runtime_bytes(4, lay, True, H100_NVSWITCH)
    assert across.pipeline_p2p == 16 * 12 * MiB + 2 * 16 * 128 * 1024   # prev inside, next across (shared net)


def test_tp_group_across_nodes_uses_network_buffers_and_no_intra_node_buffers():
    spec = get_preset("235b")
    lay = validate_layout(spec, Layout(tp=16))
    rt = runtime_bytes(0, lay, True, H100_NVSWITCH)
    assert rt.nccl == 16 * (20 + 6) * MiB
    assert (rt.nvls, rt.custom_allreduce, rt.symmetric_memory) == (0, 0, 0)
