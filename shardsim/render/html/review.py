"""The report of a capacity review: ``review_html`` renders a ``capacity.review.Review``, ``write_review_html``
writes the file (``shardsim review … --html FILE``).

Per model, from the ``ModelReview``'s records: the sizing card of the top-ranked ``Option`` (``sizing``), the ranked
options as a table — cluster, layout, GPUs as replicas × GPUs per replica, cost, need, budget, headroom, largest
context and concurrency, KV tokens, and when the review estimated speed (``Option.speed``) TTFT, TPOT, output
tokens/s per GPU and $ per million output tokens — with the options that fit but are held back and the nearest
misses (``options``), each option's need as a bar against its budget (``memory``), the top option's cost
(``cost``), the speed frontier of the options (``frontier``, only with speed), the bands (``provenance``) and the
command and ranking rules (``arithmetic``). ``Review.finish`` fills the shown options' largest context and
concurrency, as the text report does.
"""

from __future__ import annotations

from typing import Any

from shardsim.render.html.cost import as_speed, frontier_chart, price_facts, speed_points
from shardsim.render.html.document import Raw, Section, card, code, esc, facts, notes, page, para, table
from shardsim.render.html.memory import option_bars
from shardsim.render.html.plan import footer
from shardsim.render.html.provenance import band_badge
from shardsim.render.html.sizing import figure, option_card, speed_facts
from shardsim.render.html.write import write_atomic
from shardsim.units import gib_text


def money(by: str) -> tuple[str, Any]:
    """The cost column's name and its format for the review's cost basis."""
    if by == "purchase":
        return "purchase $", lambda c: "–" if c is None else f"${c:,.0f}"
    return "$/hour", lambda c: "–" if c is None else f"${c:,.2f}"


def model_head(m) -> Raw:
    weights = "/".join(dict.fromkeys(v.weights_label for v in m.variants))
    kvs = "/".join(dict.fromkeys(v.kv_dtype for v in m.variants))
    return Raw(f"<h3>{esc(m.spec.name)}</h3>" + para(
        f"context {m.context:,} × {m.concurrency:,} concurrent · weights {weights} · KV {kvs} · "
        f"{m.evaluated:,} layouts evaluated · {len(m.fitting):,} options ranked", "muted"))


def options_table(m, options, by: str, reason: bool = False) -> Raw:
    """The options of one model, ranked: the memory columns, the speed columns when the review has speed, and the
    reason an option is not ranked (``reason``)."""
    from shardsim.capacity.records import layout_text

    name, fmt = money(by)
    several = len(m.variants) > 1
    headers = ["#", "cluster", "layout", "GPUs"] + (["weights", "KV"] if several else []) + [
        name, "needs GiB", "of GiB", "headroom GiB", "max context", "max conc.", "KV tokens/replica"]
    if m.speed:
        headers += ["TTFT ms", "TPOT ms", "tok/s/GPU", "$/Mtok"]
    headers += ["why not ranked"] if reason else []
    rows = []
    for i, o in enumerate(options, 1):
        lay, s = o.layout, as_speed(getattr(o, "speed", None))
        row = [str(i), o.cluster.name + (f" (+{len(o.also_on)})" if o.also_on else ""), layout_text(lay),
               f"{lay.dp}×{lay.world_size // max(1, lay.dp)}"]
        row += [o.variant.weights_label, o.variant.kv_dtype] if several else []
        row += [fmt(o.cost), gib_text(o.peak_bytes), gib_text(o.budget_bytes), gib_text(o.headroom_bytes),
                "–" if o.max_context is None else f"{o.max_context:,}",
                "–" if o.max_concurrency is None else f"{o.max_concurrency:,}",
                "–" if o.kv_cache_tokens is None else f"{o.kv_cache_tokens:,}"]
        if m.speed:
            row += [figure(s, "ttft_ms", ",.0f") or "–", figure(s, "tpot_ms", ",.1f") or "–",
                    figure(s, "tokens_per_s_per_gpu", ",.0f") or "–", figure(s, "usd_per_mtok", ",.3f") or "–"]
        row += [o.held_back or o.reason or ""] if reason else []
        rows.append(row)
    first = 6 if several else 4
    return table(headers, rows, numeric=[0, 3, *range(first, first + 7 + (4 if m.speed else 0))])


def _shown(m, top: int) -> list:
    return m.fitting[: top if top > 0 else None]


def sizing_block(m, by: str) -> list:
    name, fmt = money(by)
    if not m.fitting:
        return [model_head(m), para("No layout on any cluster fits" + (" with the minimum headroom and the targets"
                                                                       if m.held_back else "") + ".", "muted")]
    best = m.fitting[0]
    return [model_head(m), option_card(best, name, fmt(best.cost), as_speed(getattr(best, "speed", None)))]


def options_block(m, by: str, top: int, misses: int) -> list:
    from shardsim.capacity.records import layout_text

    out = [model_head(m)]
    out.append(options_table(m, _shown(m, top), by) if m.fitting else para("no option is ranked", "muted"))
    if misses and m.held_back:
        out += [para("Fit, but not ranked:"), options_table(m, m.held_back[:misses], by, reason=True)]
    if misses and m.misses:
        lines = [f"{o.cluster.name} {layout_text(o.layout)} · "
                 + (f"short by {gib_text(-o.headroom_bytes)} GiB" if o.headroom_bytes < 0 else "refused")
                 + (f" · {o.reason}" if o.reason else "") for o in m.misses[:misses]]
        out += [para("Nearest misses:"), notes(lines)]
    return out


def cost_block(m, by: str) -> list:
    if not m.fitting:
        return []
    best = m.fitting[0]
    s = as_speed(getattr(best, "speed", None))
    rows = [r for r in price_facts(best.cluster, best.layout.world_size) + speed_facts(s) if r[1] is not None]
    return [model_head(m), card(facts(rows))] if rows else []


def frontier_block(m) -> list:
    from shardsim.capacity.records import layout_text

    options = [o for o in m.fitting + m.held_back if getattr(o, "speed", None) is not None]
    labels = [f"{o.cluster.name} {layout_text(o.layout)}" for o in options]
    points = speed_points([o.speed for o in options], labels)
    return [model_head(m), frontier_chart(points)] if points else []


def review_bands(rv) -> list[list]:
    """The bands of the figures the review ranks by: its memory need (the planner's or vLLM's) and the speed."""
    from shardsim.core.verdict import ACTIVATION_UNCERTAINTY, RUNTIME_UNCERTAINTY  # the verdict's bands

    rows = [["weights, KV cache", band_badge(0.0), "counted to the byte from the checkpoint's shapes"]]
    if rv.engine == "vllm":
        from shardsim.engines.bands import band_details

        label = next((o.note.report.rules.get("label") for m in rv.models for o in m.fitting
                      if getattr(getattr(o, "note", None), "report", None) is not None and o.note.report.rules), None)
        for fig, b in band_details("vllm", label).items():
            rows.append([f"vllm: {fig.replace('_bytes', '').replace('_', ' ')}", band_badge(b.band), b.describe()])
    else:
        rows += [["activations", band_badge(ACTIVATION_UNCERTAINTY), "shardsim.core.plan"],
                 ["runtime", band_badge(RUNTIME_UNCERTAINTY), "shardsim.core.plan"]]
    bands = next((as_speed(o.speed).get("band") for m in rv.models for o in m.fitting if getattr(o, "speed", None)), None)
    for metric, band in (bands or {}).items():
        rows.append([f"speed: {metric}", band_badge(band), "speed.bands (held-out serving benchmarks)"])
    return rows


def per_model(rv, block, *args) -> list:
    return [part for m in rv.models for part in block(m, *args)]


def review_sections(rv, command_line: str, top: int, misses: int) -> list[Section]:
    name, _ = money(rv.by)
    need = (f"the worst rank's vLLM start-up memory and the workload's KV pages, of vLLM's budget "
            f"{rv.gpu_memory_utilization:g} × capacity" if rv.engine == "vllm" else
            "the most loaded rank's total at batch = ceil(concurrency / replicas), of the GPU's capacity")
    speed = any(m.speed for m in rv.models)
    order = ("$ per million output tokens among the layouts that meet the targets, then " if speed else "") + \
        f"{name} of the GPUs used (cluster price / its GPUs × layout GPUs), then headroom"
    out = [
        Section("sizing", "Sizing", "The top-ranked option of each model: how many GPUs of which kind.",
                per_model(rv, sizing_block, rv.by)),
        Section("options", "Ranked options", f"Every fitting layout on every cluster, ranked by {order}.",
                per_model(rv, options_block, rv.by, top, misses)),
        Section("memory", "Memory per option", f"What each ranked option needs: {need}.",
                [p for m in rv.models for p in ([model_head(m), option_bars(_shown(m, top))] if m.fitting else [])]),
    ]
    cost = per_model(rv, cost_block, rv.by)
    if cost:
        out.append(Section("cost", "Cost", "The top option's GPUs: price per hour, per month (730 h), to buy and, "
                                           "with speed, per million output tokens (estimates).", cost))
    frontier = per_model(rv, frontier_block)
    if frontier:
        out.append(Section("frontier", "Speed frontier", "Output tokens/s per GPU against tokens/s per user of each "
                                                         "option (estimates); hollow: misses a target.", frontier))
    out.append(Section("provenance", "Provenance", "How far the figures the ranking uses may be off.",
                       [table(["figure", "kind", "source of the band"], review_bands(rv))]))
    out.append(Section("arithmetic", "Arithmetic and sources", "The command, what an option needs and how they rank.",
                       [Raw("<h3>Command line</h3>"), code(command_line or "(not recorded)"),
                        notes([f"engine: {rv.engine}", f"needs: {need}", f"ranked by {order}",
                               f"{len(rv.clusters)} clusters: {', '.join(c.name for c in rv.clusters)}",
                               f"{rv.evaluated:,} layouts evaluated"])]))
    return out


def review_html(review, command_line: str = "", top: int = 10, misses: int = 3) -> str:
    """The whole report of a review, as one self-contained HTML document (``top``: ranked options shown per model,
    0 for all; ``misses``: held-back options and nearest misses shown)."""
    review.finish(top, misses)
    both = review.all_at_once()
    subtitle = [f"engine {review.engine} · {len(review.clusters)} clusters · {review.evaluated:,} layouts evaluated"]
    if both is not None:
        subtitle.append(f"all models at once: {both['cluster']}, {both['gpus']} of {both['cluster_gpus']} GPUs")
    title = "Review: " + ", ".join(m.spec.name for m in review.models)
    return page(title, subtitle, review_sections(review, command_line, top, misses), footer())


def write_review_html(review, path, command_line: str = "", top: int = 10, misses: int = 3):
    """Write the review's report to ``path`` atomically (``write.write_atomic``); the path written."""
    return write_atomic(path, review_html(review, command_line, top, misses))
