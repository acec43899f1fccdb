"""A replica's pipeline of stages as the cost of one step (``Pipeline``): each stage's roofline, collectives and
per-layer floor, combined over its micro-batches.

A step of a pipeline runs as m = min(pp, sequences) micro-batches (vLLM keeps pp batches in flight); one token
of a request takes max(Σ stage times, m × the slowest stage) — the first when micro-batches are too few to fill the
pipeline (the bubble), the second when they are enough (Huang et al. 2019, GPipe, arXiv:1811.06965, §2.2) — plus
the per-step overhead; each stage's time carries the per-layer floor of its layers (``roofline``), but for a
micro-batch of decodes alone that the engine replays as one whole CUDA graph (``graph_decode_max``): the graph
issues the layers' kernels back to back, with no host launch between them for the floor to stand for.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass

from shardsim.core.layout import rank_groups, rank_of
from shardsim.errors import ShardsimError
from shardsim.speed import comm, roofline, work
from shardsim.speed.fitted import speed_fit
from shardsim.speed.memo import Memo
from shardsim.units import DTYPE_BYTES


def _stage_links(serve, pp_rank: int, memo: Memo) -> comm.StageLinks:
    """The links of stage ``pp_rank``'s tp rank 0 of replica 0: its TP and EP groups and the hop to the next stage."""
    lay, cluster = serve.layout, serve.hardware.cluster
    first = rank_of(lay, 0, 0, pp_rank)
    groups = rank_groups(first, lay)
    fabric = serve.hardware.fabric.intra
    nxt = None
    if groups.pp_next is not None:
        nxt = memo.link(cluster, (first, groups.pp_next), fabric)
    return comm.StageLinks(memo.link(cluster, groups.tp, fabric), memo.link(cluster, groups.ep, fabric), nxt)


@dataclass(frozen=True, slots=True)
class Pipeline:
    """The stages of one replica, their links, the GPU and the fitted values: the cost of one step."""

    stages: tuple
    links: tuple
    layout: object
    vocab: int
    peaks: roofline.GpuPeaks
    eff: roofline.Efficiency
    alike: tuple[int, ...] = ()  # per stage, the first stage that costs the same (``same_cost``); () none alike
    graph_decode_max: int = 0  # the largest decode-only micro-batch replayed as one CUDA graph (0: none)

    def micro_batches(self, shape: work.StepShape) -> int:
        return max(1, min(self.layout.pp, math.ceil(shape.decode + shape.prefill_done)))

    def stage_seconds(self, shape: work.StepShape) -> list[float]:
        """Each stage's time for one micro-batch of ``shape`` (GPU roofline plus collectives)."""
        m = self.micro_batches(shape)
        sub = work.StepShape(shape.decode / m, shape.decode_keys, shape.prefill / m, shape.prefill_keys,
                             shape.prefill_done / m, shape.prefill_kv_read / m)
        out = []
        for i, (stage, links) in enumerate(zip(self.stages, self.links)):
            if self.alike and self.alike[i] < i:
                out.append(out[self.alike[i]])
                continue
            gpu = roofline.gpu_seconds(work.step_work(stage, sub), self.peaks, self.eff)
            colls = comm.step_collectives(stage, self.layout, links, sub.tokens, sub.sequences, self.vocab,
                                          stage.pp_rank == 0)
            out.append(gpu + sum(c.seconds for c in colls) + self.layer_seconds(stage, sub))
        return out

    def graphed(self, sub: work.StepShape) -> bool:
        """Whether the micro-batch ``sub`` replays one whole CUDA graph: decodes alone, at most ``graph_decode_max``."""
        return sub.prefill == 0 and sub.decode <= self.graph_decode_max

    def layer_seconds(self, stage, sub: work.StepShape) -> float:
        """The per-layer floor of the micro-batch ``sub`` on ``stage``: its layers' and MoE layers' fitted overheads;
        none when ``sub`` replays one whole CUDA graph (``graphed``)."""
        if self.graphed(sub):
            return 0.0
        return stage.layers * self.eff.layer_overhead_s + stage.moe_layers * self.eff.moe_layer_overhead_s

    def gpu_seconds(self, shape: work.StepShape) -> float:
        """The stages' share of a step: max(Σ stage times, m × the slowest stage) (module docstring)."""
        times = self.stage_seconds(shape)
        return max(sum(times), self.micro_batches(shape) * max(times))

    def host_seconds(self, shape: work.StepShape) -> float:
        """The host's share of a step: the fitted per-step overhead and the per-sequence one of each sampled
        sequence."""
        return self.eff.step_overhead_s + shape.sequences * self.eff.seq_overhead_s

    def __call__(self, shape: work.StepShape) -> float:
        return self.gpu_seconds(shape) + self.host_seconds(shape)


def pipeline_of(serve, kv_dtype_bytes: int, engine: str | None,
                memo: Memo | None = None) -> tuple[Pipeline, tuple[str, ...]]:
    """The cost model of ``serve`` (a ``core.requests.ServeRequest``) and the rows its fitted values came from."""
    memo = memo or Memo()
    spec, lay = serve.model, serve.layout
    if spec.speculative_tokens:
        raise ShardsimError("speed does not model speculative decoding (MTP acceptance rates are not measured); "
                            "drop --speculative-tokens")
    if lay.zero:
        raise ShardsimError("speed models engines that keep whole weight shards; drop --zero")
    quant = serve.quant
    ssm = DTYPE_BYTES.get(serve.workload.state_dtype or spec.state_dtype or serve.workload.dtype, 2)
    stages = memo.layout_stages(spec, lay, serve.workload.dtype, quant, kv_dtype_bytes, ssm)
    links = tuple(_stage_links(serve, p, memo) for p in range(lay.pp))
    peaks = roofline.gpu_peaks(serve.hardware.cluster.gpu, serve.workload.dtype, quant.method)
    fit = speed_fit(engine)
    key = (id(stages), links)  # kept while the stages are (``Memo.layout_stages``), which the entry holds
    alike = memo.alike.get(key)
    if alike is None or alike[0] is not stages:
        alike = memo.alike[key] = (stages, same_cost(stages, links))
    return Pipeline(stages, links, lay, spec.vocab_size, peaks, fit.efficiency(), alike[1]), fit.rows


def same_cost(stages: tuple, links: tuple) -> tuple[int, ...]:
    """For each stage, the first stage whose step costs the same: a stage's time depends on its ``StageWork`` (of
    which the pipeline position only as first stage or not) and its links, so middle stages of equal layer mixes
    are timed once."""
    first: dict = {}
    return tuple(first.setdefault((_COST_FIELDS(stage), stage.pp_rank == 0, link), i)
                 for i, (stage, link) in enumerate(zip(stages, links)))


_COST_FIELDS = operator.attrgetter(*(f for f in work.StageWork.__slots__ if f != "pp_rank"))
