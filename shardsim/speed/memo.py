"""What many speed estimates of one model share (``Memo``): a review estimates every layout of every cluster."""

from __future__ import annotations

from dataclasses import replace

from shardsim.speed import comm, work


class Memo:
    """What many estimates of one model share (a review estimates every layout of every cluster): an engine's
    start-up report and a stage's costs are pure functions of the fields their keys name, so layouts met again on
    another cluster of the same GPU and fabric take them from here. Keys hold the model by identity: a memo lives
    no longer than the review whose model records it serves."""

    def __init__(self):
        self.reports: dict[tuple, object] = {}
        self.stages: dict[tuple, work.StageWork] = {}
        self.layouts: dict[tuple, tuple] = {}
        self.links: dict[tuple, tuple] = {}
        self.alike: dict[tuple, tuple] = {}  # (stages, links) → the stages and their ``pipeline.same_cost``

    @staticmethod
    def _report_key(serve) -> tuple:
        hw = serve.hardware
        return (id(serve.model), serve.layout, hw.capacity_bytes, hw.gpu_name, hw.compute_capability,
                hw.nvidia_smi_bytes, hw.fabric, serve.workload, serve.quant, serve.engine.name,
                tuple(sorted(serve.engine.given().items())))

    def report(self, serve):
        """The engine's start-up report of ``serve`` (a ``core.requests.ServeRequest``)."""
        from shardsim.engines.run import engine_report

        key = self._report_key(serve)
        if key not in self.reports:
            self.reports[key] = engine_report(serve, suggest_fix=False)
        return self.reports[key]

    def seed(self, serve, report) -> None:
        """Take ``report`` as the engine's report of ``serve``: a review's estimate of an option runs on the very
        report its memory verdict came from (one replica's, with the knobs the review set), not a second one."""
        self.reports[self._report_key(serve)] = report

    def stage(self, spec, layout, dtype: str, quant, kv_dtype_bytes: int, pp_rank: int, ssm: int,
              place: tuple | None = None) -> work.StageWork:
        """Stage ``pp_rank`` of ``layout`` (``place``: its ``work.stage_place`` where the caller has it)."""
        place = place or work.stage_place(layout, pp_rank)  # stages alike in it cost alike, whatever the layout
        key = (id(spec), place, dtype, quant, kv_dtype_bytes, ssm)
        hit = self.stages.get(key)
        if hit is None:
            hit = self.stages[key] = work.placed_stage_work(spec, place, dtype, quant, kv_dtype_bytes, pp_rank, ssm)
        if hit.pp_rank == pp_rank:
            return hit
        at = self.stages.get(key + (pp_rank,))  # the same stage at another pipeline position, met before
        if at is None:
            at = self.stages[key + (pp_rank,)] = replace(hit, pp_rank=pp_rank)
        return at

    def layout_stages(self, spec, layout, dtype: str, quant, kv_dtype_bytes: int, ssm: int) -> tuple:
        """Every stage of ``layout`` (``stage``), kept per layout's stage places (``work.stage_places``): a review
        meets a layout on every GPU type, and its stages again with every count of replicas."""
        places = work.stage_places(layout)
        key = (id(spec), places, dtype, quant, kv_dtype_bytes, ssm)
        hit = self.layouts.get(key)
        if hit is None:
            hit = self.layouts[key] = tuple(self.stage(spec, layout, dtype, quant, kv_dtype_bytes, p, ssm, place)
                                            for p, place in enumerate(places))
        return hit

    def link(self, cluster, members, interconnect: str | None):
        """``comm.link_of`` of a group of global ranks (a range or tuple): groups met again on another layout of the
        same cluster take it from here (the entry holds the cluster, so its identity is not reused while kept)."""
        key = (id(cluster), members, interconnect)
        hit = self.links.get(key)
        if hit is None or hit[0] is not cluster:
            hit = self.links[key] = (cluster, comm.link_of(cluster, members, interconnect))
        return hit[1]
