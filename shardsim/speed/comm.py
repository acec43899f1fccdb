"""The collectives of one forward step, sized exactly and timed on the link the cluster spec names.

Per step and rank (Megatron-style tensor parallelism, Shoeybi et al. 2019, arXiv:1909.08053, §3; vLLM
``RowParallelLinear`` all-reduces its output, ``VocabParallelEmbedding`` all-reduces the looked-up rows,
``LogitsProcessor`` gathers the vocabulary slices):

- TP all-reduce of T·H bf16 activations twice per decoder layer (after o_proj / out_proj and after the MLP or the
  MoE block) and once after the embedding (first stage);
- TP all-gather of the sampled sequences' logits, S·V bf16 (last stage);
- EP all-to-all when the expert group spans data-parallel replicas (ep > tp: vLLM ``--enable-expert-parallel``
  with dp > 1; with ep ≤ tp every rank of the TP group already holds every token, and the MoE block ends in the
  TP all-reduce): each token's hidden state to its k experts and back, T·k·H bf16 per rank each way, (n−1)/n of it leaving the rank (GShard, Lepikhin et al. 2020,
  arXiv:2006.16668, §2.2: dispatch and combine);
- PP send/recv of the stage's output, hidden states and residual, 2·T·H bf16 (vLLM ``IntermediateTensors``
  ``{"hidden_states", "residual"}``, ``model_executor/models/qwen2.py`` ``Qwen2Model.forward``, which Qwen3 reuses).

Time: NCCL's own model (``src/graph/tuning.cc``, ``ncclTopoTuneModel`` and ``ncclTopoGetAlgoTime``, NVIDIA/nccl
@01afd20): time = latency + bytes / algorithm bandwidth, latency = baseLat + nsteps·hwLat of the link class,
algorithm bandwidth = bus bandwidth · n / nsteps, with nsteps = 2(n−1) for a ring all-reduce (each rank sends and
receives 2(n−1)/n of the buffer: nccl-tests ``doc/PERFORMANCE.md``, busbw = algbw · 2(n−1)/n) and n−1 for an
all-gather or all-to-all ((n−1)/n of the buffer). NCCL picks the faster of its LL protocol (low latency, a quarter
of the bandwidth for all-reduce, a third for intra-node all-gather) and Simple; LL128, on by default only on
Volta / Ampere NVLink, is not modelled. The bus bandwidth is the cluster spec's per-GPU, per-direction link figure
(``hardware.specs.LinkSpec``): the intra-node link when the group sits in one node, else the inter-node one.
vLLM's custom all-reduce (one-shot / two-shot over NVLink for small messages) is faster than this at decode sizes;
the fitted per-step overhead (``speed.fitted``) absorbs what remains.
"""

from __future__ import annotations

from dataclasses import dataclass

from shardsim.constants import ACTIVATION_BYTES

NCCL_BASE_LATENCY_US = {"LL": 3.6, "Simple": 8.4}
"""Ring baseLat per protocol, µs (NVIDIA/nccl src/graph/tuning.cc@01afd20 ``baseLat`` Ring {LL, LL128, Simple} =
{3.6, 10.0, 8.4})."""
NCCL_HW_LATENCY_US = {"nvlink": {"LL": 0.47, "Simple": 3.4}, "pci": {"LL": 1.0, "Simple": 5.7},
                      "net": {"LL": 2.7, "Simple": 9.6}}
"""Ring hwLat per link class and protocol, µs per step (NVIDIA/nccl src/graph/tuning.cc@01afd20 ``hwLat``:
NVLINK Ring {.47, 1.9, 3.4}, PCI Ring {1.0, 2.5, 5.7}, NET Ring {2.7, 4.0, 9.6})."""
NCCL_LL_BANDWIDTH_SHARE = {"all_reduce": 1 / 4, "all_gather": 1 / 3, "all_to_all": 1 / 3, "send_recv": 1 / 3}
"""LL's share of the bus bandwidth (tuning.cc@01afd20: ring LL ``busBw *= 1/4`` for all-reduce or more than one
node, else ``1/3``; multi-node groups take 1/4 below)."""


@dataclass(frozen=True, slots=True)
class Link:
    """A link class as a collective sees it: bus bandwidth per GPU and direction (GB/s) and NCCL's hardware class
    (``nvlink``, ``pci`` or ``net``), with where the figure comes from."""

    bandwidth_GBps: float
    hw: str
    source: str = ""


def link_of(cluster, members: tuple[int, ...] | range, interconnect: str | None = None) -> Link:
    """The link a group of global ranks talks over on ``cluster`` (a ``hardware.specs.ClusterSpec``): the intra-node
    link when every member sits in one node, else the inter-node link (NCCL's NET class)."""
    per_node = cluster.gpus_per_node
    nodes = {rank // per_node for rank in members}
    if len(nodes) > 1 and cluster.inter_node_link is not None:
        inter = cluster.inter_node_link
        return Link(inter.bandwidth_GBps, "net", f"{inter.kind}: {inter.source}")
    intra = cluster.intra_node_link
    fabric = interconnect or intra.fabric or ("nvswitch" if "nvswitch" in intra.kind.lower() else
                                              "nvlink" if "nvlink" in intra.kind.lower() else "pcie")
    return Link(intra.bandwidth_GBps, "pci" if fabric == "pcie" else "nvlink", f"{intra.kind}: {intra.source}")


def collective_seconds(kind: str, nbytes: float, ranks: int, link: Link) -> float:
    """NCCL's time for ``kind`` (all_reduce, all_gather, all_to_all, send_recv) of ``nbytes`` (the full buffer:
    the all-reduced tensor, the gathered output, the rank's outgoing all-to-all data) over ``ranks`` ranks."""
    if ranks <= 1 or nbytes <= 0:
        return 0.0
    steps = {"all_reduce": 2 * (ranks - 1), "all_gather": ranks - 1, "all_to_all": ranks - 1, "send_recv": 1}[kind]
    ratio = ranks / steps if kind != "send_recv" else 1.0
    best = float("inf")
    for proto in ("LL", "Simple"):
        share = 1.0
        if proto == "LL":
            share = 1 / 4 if link.hw == "net" else NCCL_LL_BANDWIDTH_SHARE[kind]
        latency = (NCCL_BASE_LATENCY_US[proto] + steps * NCCL_HW_LATENCY_US[link.hw][proto]) * 1e-6
        algo_bw = link.bandwidth_GBps * 1e9 * share * ratio
        best = min(best, latency + nbytes / algo_bw)
    return best


@dataclass(frozen=True, slots=True)
class Collective:
    """One kind of collective in a step: how many, of how many bytes each, over how many ranks, and their time."""

    name: str
    count: int
    nbytes: float
    ranks: int
    seconds: float  # all of them together

    def to_dict(self) -> dict:
        return {"name": self.name, "count": self.count, "bytes": self.nbytes, "ranks": self.ranks,
                "seconds": self.seconds}


@dataclass(frozen=True, slots=True)
class StageLinks:
    """The links of one stage's groups: its TP group, its EP group and its link to the next stage."""

    tp: Link
    ep: Link
    next_stage: Link | None


def step_collectives(stage, layout, links: StageLinks, tokens: float, sampled: float, vocab: int,
                     is_first: bool) -> list[Collective]:
    """The collectives of one step of ``tokens`` tokens and ``sampled`` sampled sequences on a rank of ``stage``
    (a ``work.StageWork``), by kind (formulas in the module docstring)."""
    hidden = stage.hidden_size * ACTIVATION_BYTES
    out: list[Collective] = []
    if layout.tp > 1:
        reduces = 2 * stage.layers + (1 if is_first else 0)
        size = tokens * hidden
        out.append(Collective("tp all-reduce", reduces, size, layout.tp,
                              reduces * collective_seconds("all_reduce", size, layout.tp, links.tp)))
        if stage.lm_head_flops_per_sequence:
            size = sampled * vocab * ACTIVATION_BYTES
            out.append(Collective("tp logits all-gather", 1, size, layout.tp,
                                  collective_seconds("all_gather", size, layout.tp, links.tp)))
    if layout.ep > layout.tp and stage.moe_layers:
        size = tokens * stage.top_k * hidden * (layout.ep - 1) / layout.ep
        count = 2 * stage.moe_layers
        out.append(Collective("ep all-to-all", count, size, layout.ep,
                              count * collective_seconds("all_to_all", size, layout.ep, links.ep)))
    if links.next_stage is not None:
        size = 2 * tokens * hidden
        out.append(Collective("pp send/recv", 1, size, 2, collective_seconds("send_recv", size, 2, links.next_stage)))
    return out
