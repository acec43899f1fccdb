"""Collectives of a step (``shardsim.speed.comm``): NCCL's ring cost model by hand, the counts per step, and the
links the cluster names."""

from __future__ import annotations

import pytest

from shardsim.cli import build
from shardsim.speed import comm
from shardsim.speed.estimate import SpeedRequest, SpeedWorkload, prepare

NVLINK = comm.Link(450.0, "nvlink")
NET = comm.Link(50.0, "net")


def test_ring_all_reduce_moves_2_n_minus_1_over_n_of_the_buffer():
    """64 MiB over 8 ranks on NVLink (450 GB/s a direction): Simple takes 8.4 + 14 × 3.4 = 56 µs plus
    2·7/8 · 64 MiB / 450 GB/s; LL a quarter of the bandwidth: slower at this size."""
    size = 64 * 2**20
    simple = 56e-6 + size * 2 * 7 / 8 / 450e9
    assert comm.collective_seconds("all_reduce", size, 8, NVLINK) == pytest.approx(simple)


def test_small_all_reduce_takes_the_low_latency_protocol():
    """8 KiB over 2 ranks: LL takes 3.6 + 2 × 0.47 µs + 8192 / (450 GB/s / 4); Simple 8.4 + 2 × 3.4 µs + 8192 /
    450 GB/s."""
    ll = 4.54e-6 + 8192 / (450e9 / 4)
    assert comm.collective_seconds("all_reduce", 8192, 2, NVLINK) == pytest.approx(ll)
    assert comm.collective_seconds("all_reduce", 8192, 1, NVLINK) == 0


def test_send_recv_on_the_network():
    """One hop of 2 MiB between nodes (NDR, 50 GB/s): Simple, 8.4 + 9.6 µs + 2 MiB / 50 GB/s."""
    size = 2 * 2**20
    assert comm.collective_seconds("send_recv", size, 2, NET) == pytest.approx(18e-6 + size / 50e9)


def _pipeline(model: str, tp: int, pp: int = 1, dp: int = 1, ep: int = 1):
    serve = build.serve_request(build.ModelOptions(model), build.LayoutOptions(tp, pp, dp, ep),
                                build.WorkloadOptions(2048, 1), build.HardwareOptions(gpu="h100"),
                                build.EngineOptions(None))
    return prepare(SpeedRequest(serve, SpeedWorkload(1024, 1024, 1)))[1]


def test_235b_tp8_pp2_collectives_and_links():
    """Stage 0 (ranks 0–7, node 0): 2 × 47 + 1 all-reduces in its NVSwitch TP group, a send of hidden states and
    residual (2 · T · 4,096 · 2 B) to stage 1 on node 1 over the network; stage 1: 2 × 47 all-reduces and the
    logits' all-gather."""
    pipe = _pipeline("235b", 8, 2)
    first, last = pipe.stages
    assert pipe.links[0].tp.hw == "nvlink" and pipe.links[0].next_stage.hw == "net"
    assert pipe.links[0].next_stage.bandwidth_GBps == 50 and pipe.links[1].next_stage is None
    names = {c.name: c for c in comm.step_collectives(first, pipe.layout, pipe.links[0], 10, 10, 151_936, True)}
    assert names["tp all-reduce"].count == 95 and names["tp all-reduce"].nbytes == 10 * 4096 * 2
    assert names["pp send/recv"].nbytes == 2 * 10 * 4096 * 2
    names = {c.name: c for c in comm.step_collectives(last, pipe.layout, pipe.links[1], 10, 10, 151_936, False)}
    assert names["tp all-reduce"].count == 94 and "tp logits all-gather" in names and "pp send/recv" not in names


def test_expert_all_to_all_only_when_experts_span_replicas():
    """30B-A3B (48 MoE layers, k = 8): EP 2 inside TP 2 moves no token; EP 4 over TP 2 × DP 2 dispatches and
    combines T · 8 · 2,048 · 2 B · 3/4 per layer each way."""
    inside = _pipeline("30b-a3b", 2, ep=2)
    assert not [c for c in comm.step_collectives(inside.stages[0], inside.layout, inside.links[0], 4, 4, 151_936, True)
                if c.name == "ep all-to-all"]
    across = _pipeline("30b-a3b", 2, dp=2, ep=4)
    a2a = [c for c in comm.step_collectives(across.stages[0], across.layout, across.links[0], 4, 4, 151_936, True)
           if c.name == "ep all-to-all"][0]
    assert (a2a.count, a2a.nbytes, a2a.ranks) == (96, 4 * 8 * 2048 * 2 * 3 / 4, 4)
