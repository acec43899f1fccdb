"""Memory per GPU: the plan's ranks as stacked bars against the GPU's capacity and as the terminal's table, and a
review's options as bars of what each needs against its budget.

Plan: the ``PlanReport``'s ``RankBytes`` per rank (weights with the ZeRO-3 gather buffer, KV cache, recurrent state
of a hybrid, activations, runtime; total and free), identical ranks of one stage and node in one row as the
terminal groups them (``render.plan_text.rank_groups``), GiB as the terminal prints them (``units.gib_text``).
Review: each ``capacity.records.Option``'s ``peak_bytes`` (the worst rank's need), ``budget_bytes`` (the capacity,
or vLLM's fraction of it) and the GPU's capacity.
"""

from __future__ import annotations

from shardsim.render.html.document import Raw, Section, para, table
from shardsim.render.html.svg import Bar, stacked_bars
from shardsim.render.plan_text import rank_groups
from shardsim.units import gib_text


def rank_terms(report, b) -> list[tuple[str, int]]:
    """The terms of one rank's ``RankBytes`` in drawing order (state only for a hybrid)."""
    terms = [("weights", b.weights + b.zero_gather), ("kv cache", b.kv_cache)]
    if report.model.is_hybrid:
        terms.append(("state", b.state))
    return terms + [("activations", b.activations), ("runtime", b.runtime)]


def _where(group) -> str:
    r = group[0]
    return f"{r.node}:{r.local_gpu}" if len(group) == 1 else f"{r.node}:{r.local_gpu}–{group[-1].local_gpu}"


def plan_rank_rows(report) -> list[list]:
    """The terminal's plan table, one row per group of identical ranks: ranks, node:gpu, layers, each term, total,
    free (GiB)."""
    rows = []
    for group, label in rank_groups(report):
        r = group[0]
        rows.append([label, _where(group), f"{r.layers[0]}–{r.layers[1]}",
                     *(gib_text(v) for _, v in rank_terms(report, r.bytes)), gib_text(r.bytes.total),
                     gib_text(r.free_bytes)])
    return rows


def ranks_section(report) -> Section:
    """Per-rank memory: the bars, the table, and the most loaded rank's runtime by component."""
    groups = rank_groups(report)
    bars = [Bar(label, tuple(rank_terms(report, g[0].bytes)), report.capacity_bytes,
                note=f"{gib_text(g[0].bytes.total)} of {gib_text(report.capacity_bytes)} GiB")
            for g, label in groups]
    names = [name for name, _ in rank_terms(report, report.peak.bytes)]
    headers = ["ranks", "node:gpu", "layers", *names, "total", "free"]
    body = [stacked_bars(bars, names),
            table(headers, plan_rank_rows(report), numeric=range(3, len(headers))),
            para("GiB per GPU. The outline is the GPU's capacity; a bar past it does not fit.", "muted")]
    parts = {k: v for k, v in (report.peak.runtime_components or {}).items() if v}
    if parts:
        body.append(Raw("<h3>Runtime of the most loaded rank, by component</h3>"))
        body.append(table(["component", "GiB", "bytes"], [[k, gib_text(v), f"{v:,}"] for k, v in parts.items()],
                          numeric=(1, 2)))
    lead = (f"Each GPU's memory by term (shardsim.core.plan: weights and KV exact, activations and runtime "
            f"estimated), {len(report.ranks)} rank(s) in {len(groups)} group(s) of identical ranks.")
    return Section("ranks", "Memory per GPU", lead, body)


def option_label(index: int, option) -> str:
    from shardsim.capacity.records import layout_text

    return f"#{index} {option.cluster.name} {layout_text(option.layout)}"


def option_bars(options) -> Raw:
    """One bar per option: what its worst rank needs, the budget line (when it is not the capacity), the GPU's
    capacity as the outline."""
    bars = [Bar(option_label(i, o), (("needs", o.peak_bytes),), o.cluster.gpu.capacity_bytes,
                o.budget_bytes if o.budget_bytes != o.cluster.gpu.capacity_bytes else None,
                f"{gib_text(o.peak_bytes)} of {gib_text(o.budget_bytes)} GiB")
            for i, o in enumerate(options, 1)]
    legend = ["needs"] + (["budget"] if any(b.budget is not None for b in bars) else [])
    return stacked_bars(bars, legend)
