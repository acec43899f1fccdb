"""One entry point for the engine profiles: the request's engine (``engines.registry``) predicts, and when it will
not start, ``engines.suggest`` looks for one line of flags that would."""

from __future__ import annotations

from shardsim.engines.common import EngineReport
from shardsim.engines.registry import get_engine
from shardsim.errors import ShardsimError


def engine_report(request, suggest_fix: bool = True) -> EngineReport:
    """The report of ``request.engine`` for a ``requests.ServeRequest``; when it will not start (or starts only
    inside a band, ``start_risk``), ``suggestion`` holds one line of flags that would start without that risk."""
    if request.engine is None:
        raise ShardsimError("no --engine given: the planner's own figures are 'shardsim plan' without --engine")
    engine = get_engine(request.engine.name)
    report = engine.predict(request)
    if suggest_fix and (not report.starts or report.start_risk) and engine.suggest is not None:
        from shardsim.engines.suggest import suggest

        report.suggestion = suggest(engine, request, report)
    return report
