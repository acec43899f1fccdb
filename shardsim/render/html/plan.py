"""The report of one plan: ``PlanPage`` holds the records, ``plan_html`` renders them, ``write_plan_html`` writes
the file (``shardsim plan … --html FILE``).

The records are the ones ``shardsim plan`` prints: the ``PlanReport`` (``core.plan.plan_request``), the engine's
``EngineReport`` (``engines.run.engine_report``, with ``--engine``), the ``Verdict`` (``core.verdict.plan_verdict``),
plus the fit grid (``grid.fit_grid``) and, when the caller has them, a speed report (``speed.estimate``), speed
points for the frontier and a validation record. Nothing is recomputed while rendering. Sections, in order:
``sizing``, ``ranks``, ``fit-grid``, ``engine``, ``cost`` (with a price or a speed report), ``frontier`` (with speed
points), ``provenance``, ``arithmetic``.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from typing import Any

from shardsim.render.html.cost import as_speed, cost_section, frontier_section, speed_points
from shardsim.render.html.document import Section, page
from shardsim.render.html.engine import engine_section
from shardsim.render.html.grid import FitGrid, fit_grid, grid_section
from shardsim.render.html.memory import ranks_section
from shardsim.render.html.provenance import arithmetic_section, provenance_section
from shardsim.render.html.sizing import gpu_count_text, plan_card
from shardsim.render.html.write import write_atomic


@dataclass(frozen=True)
class PlanPage:
    """What a plan's report shows: the request and the records computed from it."""

    request: Any                 # core.requests.ServeRequest
    report: Any                  # core.records.PlanReport
    verdict: Any                 # core.verdict.Verdict
    engine: Any = None           # engines.common.EngineReport (with --engine)
    grid: FitGrid | None = None  # grid.fit_grid(request)
    speed: Any = None            # speed.estimate.SpeedReport (or its to_dict) at the plan's own load
    frontier: tuple = ()         # speed reports of a sweep (e.g. of concurrency), for the frontier chart
    frontier_labels: tuple = ()  # one label per frontier point (default: its users per replica)
    validation: dict | None = None  # a ``shardsim validate --json`` record of the same plan
    command_line: str = ""


def build_plan_page(request, command_line: str = "", speed=None, frontier=(), validation=None,
                    fix_layout=None) -> PlanPage:
    """The records of a ``ServeRequest`` as ``shardsim plan`` computes them (``fix_layout(tp) -> bool``: whether the
    plan fits at that TP, the fix ``core.verdict.plan_verdict`` offers), the fit grid included."""
    from shardsim.core.plan import plan_request
    from shardsim.core.verdict import plan_verdict

    report = plan_request(request)
    engine = None
    if request.engine is not None:
        from shardsim.engines.run import engine_report

        engine = engine_report(request)
    return PlanPage(request, report, plan_verdict(report, engine, fix_layout), engine, fit_grid(request), speed,
                    tuple(frontier), (), validation, command_line)


def sections(p: PlanPage) -> list[Section]:
    """The report's sections in order; cost and frontier only when there is something to show."""
    report, speed = p.report, as_speed(p.speed)
    lay = report.layout
    out = [
        Section("sizing", "Sizing", "How many GPUs, of which kind, and whether the plan fits (shardsim.core.verdict: "
                                    "FITS, BORDERLINE, DOES NOT FIT or WILL NOT START, with the reason and the fix).",
                [plan_card(report, p.verdict)]),
        ranks_section(report),
        grid_section(p.grid, report.model.max_position_embeddings),
        engine_section(p.engine, report.model, lay),
        cost_section(p.request.hardware.cluster, lay.world_size, speed),
        frontier_section(speed_points(p.frontier, list(p.frontier_labels) or None)),
        provenance_section(report, p.engine, speed, p.validation),
        arithmetic_section(report, p.verdict, p.engine, speed, p.command_line),
    ]
    return [s for s in out if s is not None]


def footer() -> str:
    """The release of shardsim that wrote the report, when, and how to read its figures."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        release = version("shardsim")
    except PackageNotFoundError:
        release = "(not installed)"
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (f"shardsim {release} · {stamp} · exact figures are counted to the byte; estimates carry their "
            "bands (Provenance)")


def plan_html(p: PlanPage) -> str:
    """The whole report of a plan, as one self-contained HTML document."""
    report = p.report
    lay = report.layout
    title = f"{report.model.name}: {gpu_count_text(lay.world_size, lay.dp, report.gpu_name)} · {p.verdict.status}"
    subtitle = [f"context {report.workload.context:,} × batch {report.workload.batch} · {lay.describe()}"
                + (f" · {p.engine.engine} {p.engine.version}" if p.engine is not None else "")]
    return page(title, subtitle, sections(p), footer())


def write_plan_html(p: PlanPage, path) -> Any:
    """Write the plan's report to ``path`` atomically (``write.write_atomic``); the path written."""
    return write_atomic(path, plan_html(p))
