"""Where each figure comes from (provenance) and the arithmetic behind the report.

Provenance: one badge per figure — ``exact`` for weights, KV cache and recurrent state (the ``PlanReport``'s
``uncertainty`` of 0), ``estimate ±x %`` for activations and runtime (their bands there), each engine figure with
the held-out band of the rule set in use (``engines.bands.band_details``: the band, the rule set whose rows set it,
the worst row), each speed figure with its band (``speed.bands``), and ``measured by validate`` when a validation
record (``shardsim validate --json``) is given. Arithmetic: the command line that produced the report, the most
loaded rank's sum, the step, the verdict's band, the plan's warnings, the engine's notes and rule set, the speed
report's notes.
"""

from __future__ import annotations

from shardsim.render.html.document import Raw, Section, badge, code, esc, notes, table
from shardsim.render.html.memory import rank_terms
from shardsim.units import gib_text

TERM_KEYS = {"weights": "weights", "kv cache": "kv_cache", "state": "state", "activations": "activations",
             "runtime": "runtime"}
"""The bar and table names of the plan's terms → their keys in ``PlanReport.to_dict`` and a validation record."""


def band_badge(band) -> Raw:
    """``exact`` for a band of 0, ``estimate ±x %`` for a band, ``estimate, no band yet`` for None."""
    if isinstance(band, dict):
        band = band.get("band")
    if band is None:
        return badge("estimate, no band yet", "warn")
    return badge("exact", "ok") if band == 0 else badge(f"estimate ±{100 * band:g} %", "info")


def validation_badges(validation: dict | None) -> dict[str, Raw]:
    """Per term, ``measured by validate`` (every measured rank within its bound, the largest difference in %) or
    a mismatch, from a validation record's ranks."""
    out: dict[str, Raw] = {}
    if not validation:
        return out
    by_term: dict[str, list[dict]] = {}
    for rank in validation.get("ranks", []):
        for term, row in (rank.get("comparison") or {}).items():
            if row.get("measured") is not None:
                by_term.setdefault(term, []).append(row)
    for term, rows in by_term.items():
        worst = max(abs(r.get("diff_pct") or 0.0) for r in rows)
        ok = all(r.get("ok") for r in rows)
        out[term] = badge(f"measured by validate, within {worst:.2f} %" if ok else
                          f"validate: mismatch up to {worst:.2f} %", "ok" if ok else "bad")
    return out


def _engine_value(rep, figure: str) -> str:
    if figure == "kv_cache_tokens" and rep.kv_cache_tokens is not None:
        return f"{rep.kv_cache_tokens:,} tokens"
    values = sorted({getattr(r, figure) for r in rep.ranks if getattr(r, figure, None) is not None})
    if not values:
        return "–"
    text = (lambda v: f"{gib_text(v)} GiB") if figure.endswith("_bytes") else (lambda v: f"{v:,}")
    return text(values[0]) if len(values) == 1 else f"{text(values[0])}–{text(values[-1])}"


def provenance_rows(report, rep, speed: dict | None, validation: dict | None) -> list[list]:
    """One row per figure: what it is, its value (the planner's on the most loaded GPU), its badges, where its band
    comes from."""
    uncertainty = report.to_dict()["uncertainty"]
    checked = validation_badges(validation)
    rows = []
    for name, value in rank_terms(report, report.peak.bytes):
        key = TERM_KEYS[name]
        kind = Raw(band_badge(uncertainty.get(key)) + (" " + checked[key] if key in checked else ""))
        rows.append([f"planner: {name}", f"{gib_text(value)} GiB", kind, "shardsim.core.plan, most loaded GPU"])
    if rep is not None:
        from shardsim.engines.bands import band_details

        label = (rep.rules or {}).get("label")
        details = band_details(rep.engine, label) if label else {}
        for figure, value in rep.error_bands.items():
            b = details.get(figure)
            rows.append([f"{rep.engine}: {figure.replace('_bytes', '').replace('_', ' ')}", _engine_value(rep, figure),
                         band_badge(value), b.describe() if b else "engines.bands"])
    for metric, band in ((speed or {}).get("band") or {}).items():
        rows.append([f"speed: {metric}", "", band_badge(band),
                     f"held-out rows of the serving benchmarks ({band.get('rows')} rows)" if isinstance(band, dict)
                     else "speed.bands: no held-out serving benchmark of this engine yet"])
    return rows


def provenance_section(report, rep, speed: dict | None = None, validation: dict | None = None) -> Section:
    lead = ("How far each figure may be off: exact figures are counted to the byte from the checkpoint's shapes; "
            "estimates carry the band of their held-out measurements.")
    body = [table(["figure", "value", "kind", "source of the band"], provenance_rows(report, rep, speed, validation),
                  numeric=(1,))]
    if validation:
        body.append(Raw(f'<p class="muted">validation: {esc(validation.get("backend", ""))} on '
                        f'{esc(validation.get("device", ""))}, {esc(validation.get("model", ""))}</p>'))
    return Section("provenance", "Provenance", lead, body)


def plan_lines(report, verdict) -> list[str]:
    """The plan's arithmetic in words: the most loaded rank's sum, allocated and reserved, the step, the band."""
    from shardsim.render.plan_text import step_text

    peak = report.peak
    terms = " + ".join(f"{gib_text(v)} {name}" for name, v in rank_terms(report, peak.bytes))
    return [f"rank {peak.rank} total {gib_text(peak.bytes.total)} GiB = {terms} "
            f"({peak.bytes.total:,} B) of {gib_text(report.capacity_bytes)} GiB",
            f"allocated {gib_text(peak.bytes.allocated)} GiB, reserved {gib_text(peak.bytes.reserved)} GiB",
            f"largest forward step: {step_text(report.workload)}",
            f"verdict band: ±{gib_text(verdict.band_bytes)} GiB (the estimated terms of the most loaded GPU at the "
            "edge of their bands)"]


def arithmetic_section(report, verdict, rep, speed: dict | None, command_line: str) -> Section:
    """The command line, the plan's sum, the warnings, the engine's notes and rule set, the speed notes."""
    body = [Raw("<h3>Command line</h3>"), code(command_line or "(not recorded)"),
            Raw("<h3>Plan</h3>"), notes(plan_lines(report, verdict) + [f"warning: {w}" for w in report.warnings])]
    if rep is not None:
        from shardsim.render.plan_text import band_text

        label = (rep.rules or {}).get("label") or "–"
        body += [Raw(f"<h3>{esc(rep.engine)} {esc(rep.version)}</h3>"),
                 notes([f"rule set: {label}", f"error bands: {band_text(rep) or '–'}", *rep.notes])]
    if speed:
        sched = speed.get("scheduler") or {}
        body += [Raw("<h3>Speed</h3>"), notes(([f"scheduler: {sched['source']}"] if sched.get("source") else [])
                                              + list(speed.get("notes") or []))]
    lead = "The figures' arithmetic and sources, and the command that produced this report."
    return Section("arithmetic", "Arithmetic and sources", lead, body)
