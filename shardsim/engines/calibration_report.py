"""Calibration results summed up: per set (fitted / held-out), per engine rule set and per source, and the held-out
error bands (``engines/bands.py``)."""

from __future__ import annotations

BOUND_OF = {"weights (model loading)": 0.005, "KV cache tokens": 0.03, "KV pool #tokens": 0.03,
            "peak allocated": 0.05, "available KV cache memory": 0.03, "max concurrency": 0.03,
            "weight mem usage": 0.05}
"""The accuracy goal of each figure (KV tokens 3 %, model loading 0.5 %, SGLang #tokens 3 %, HF peak 5 %)."""


def _figures(results: list) -> dict:
    by_figure: dict[str, list[float]] = {}
    for r in results:
        for f in r.figures:
            by_figure.setdefault(f.name, []).append(f.error)
    return {name: {"n": len(errs), "max_abs_error_pct": 100 * max(abs(e) for e in errs),
                   "mean_abs_error_pct": 100 * sum(abs(e) for e in errs) / len(errs),
                   "within_bound": sum(abs(e) <= (BOUND_OF.get(name) or 1e9) for e in errs)}
            for name, errs in by_figure.items()}


def _group(results: list) -> dict:
    return {"rows": len(results), "rows_ok": sum(r.ok for r in results),
            "rows_failed": [r.line for r in results if not r.ok],
            "start_verdicts_right": sum(r.verdict_right for r in results),
            "start_verdicts_borderline": [r.line for r in results if r.start_risk],
            "start_verdicts_borderline_started": [r.line for r in results if r.start_risk and r.starts_measured],
            "start_verdicts_wrong": [r.line for r in results if not r.verdict_right_or_borderline
                                     and r.starts_predicted is not None],
            "figures": _figures(results)}


def summary(results: list) -> dict:
    """Every figure overall, and per set (fitted / held-out), per engine rule set (held-out), and per source
    (held-out: each source's rows, none of which any constant was fitted to: the leave-one-source-out error). Rows
    whose logs contradict their stated configuration (``RowResult.excluded``) are listed apart and counted nowhere."""
    excluded = [r for r in results if r.excluded]
    results = [r for r in results if not r.excluded]
    held = [r for r in results if r.set == "held_out"]
    out = _group(results)
    out["excluded"] = [{"line": r.line, "label": r.label, "set": r.set, "why": r.excluded} for r in excluded]
    out["fitted"] = _group([r for r in results if r.set == "fitted"])
    out["held_out"] = _group(held)
    rules: dict[str, list] = {}
    sources: dict[str, list] = {}
    for r in held:
        rules.setdefault(r.rules if r.versioned else f"{r.rules.split(' ')[0]} release not logged", []).append(r)
        sources.setdefault(r.source.split(" (")[0][:120], []).append(r)
    out["held_out_by_rules"] = {k: _group(v) for k, v in sorted(rules.items())}
    out["held_out_by_source"] = {k: _group(v) for k, v in sorted(sources.items())}
    return out


BAND_NAMES = {"weights (model loading)": "model_loading_bytes", "weight mem usage": "model_loading_bytes",
              "KV cache tokens": "kv_cache_tokens", "KV pool #tokens": "kv_cache_tokens",
              "available KV cache memory": "available_kv_cache_bytes", "peak allocated": "peak_allocated_bytes",
              "CUDA graph memory": "cuda_graph_bytes"}


P90_MIN_ROWS = 10
"""A figure's band is the 90th percentile of its held-out errors when the rule set has this many rows of it, else
the largest error (a percentile of a handful of rows says little)."""


def _round_up(value: float) -> float:
    """Rounded up to 0.1 % (a band is never narrower than what was seen)."""
    return -(-round(value * 1000, 6) // 1) / 1000


def _band(errs: list[float]) -> float:
    """p90 (nearest rank) with P90_MIN_ROWS rows or more, else the largest; rounded up to 0.1 %."""
    ordered = sorted(errs)
    return _round_up(ordered[-(-9 * len(ordered) // 10) - 1] if len(ordered) >= P90_MIN_ROWS else ordered[-1])


def held_out_bands(results: list) -> dict[str, dict[str, dict[str, dict]]]:
    """engine → rule set → figure → {band, rows, worst (the row's label), worst_error, under}: the held-out error of each
    rule set, from rows that name their release or a range inside one rule set (engines/calibration_release.py; an
    unversioned row cannot say which rules it tests, so it sets no
    band); ``under``: the largest under-estimate, (measured − predicted) / measured, rounded up to 0.1 % (0 when every
    row was over-estimated: a risk of running out rests on it); the table ``engines/bands.py`` holds."""
    errors: dict[tuple[str, str, str], list[tuple[float, str]]] = {}
    for r in results:
        if r.set != "held_out" or not r.rules or not r.versioned or r.excluded:
            continue
        engine = r.rules.split(" ")[0].lower()
        for f in r.figures:
            name = BAND_NAMES.get(f.name)
            if name is not None:
                errors.setdefault((engine, r.rules, name), []).append((f.error, r.label))
    out: dict[str, dict[str, dict[str, dict]]] = {}
    for (engine, rules, name), signed in sorted(errors.items()):
        errs = [(abs(e), label) for e, label in signed]
        worst = max(errs)
        out.setdefault(engine, {}).setdefault(rules, {})[name] = {
            "band": _band([e for e, _ in errs]), "rows": len(errs), "worst": worst[1][:80],
            "worst_error": round(worst[0], 4), "under": _round_up(max(0.0, -min(e for e, _ in signed)))}
    return out
