"""Self-contained HTML reports for buyers: one file, no network at all (inline CSS, inline SVG charts, no scripts,
no fonts, images or links outside the file), readable on screen and printed to PDF.

``plan.py`` builds the report of one plan (``PlanPage``: the ``PlanReport``, the engine's report, the verdict, the
context × batch fit grid of ``grid.py`` and, when given, speed figures); ``review.py`` the report of a capacity
review. Each section is one module that takes records and renders them (``sizing``, ``memory``, ``grid``,
``engine``, ``cost``, ``provenance``); ``document.py`` and ``style.py`` are the page, ``svg.py`` the charts,
``write.py`` the atomic file write. Every text is escaped (``document.esc``).

May import: shardsim.core, shardsim.engines, shardsim.capacity, shardsim.hardware, shardsim.speed, shardsim.units,
shardsim.errors, shardsim.render.tables, shardsim.render.plan_text.
"""

from __future__ import annotations

import importlib

_WHERE = {"PlanPage": "plan", "plan_html": "plan", "write_plan_html": "plan", "review_html": "review",
          "write_review_html": "review", "fit_grid": "grid"}
"""Each public name and its module, imported on first use (the plan's report does not load the review's)."""

__all__ = list(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
