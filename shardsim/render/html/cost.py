"""Cost and the speed frontier.

Cost: the GPUs' price from the cluster spec (``capacity.workload.cluster_cost``: the cluster's hourly or purchase
price / its GPUs × the GPUs used, with the catalog's source for the figure), $/month = $/hour × 730 hours
(``capacity.speed_rank.HOURS_PER_MONTH``), and — from a speed report (``speed.estimate.SpeedReport.to_dict``, or a
review option's ``OptionSpeed``) — TTFT, TPOT, output tokens/s per GPU and $ per million output tokens.
Frontier: tokens/s per GPU against tokens/s per user of the speed points given (a concurrency sweep of one plan, or a
review's options), the points no other beats on both joined (``svg.scatter``).
"""

from __future__ import annotations

from typing import Sequence

from shardsim.render.html.document import Raw, Section, card, facts, para, table
from shardsim.render.html.sizing import figure, speed_facts
from shardsim.render.html.svg import Point, frontier, scatter


def as_speed(speed) -> dict | None:
    """A speed report as its dict: a ``SpeedReport`` / ``OptionSpeed`` (``to_dict``), a dict, or None."""
    if speed is None:
        return None
    return speed if isinstance(speed, dict) else speed.to_dict()


def price_facts(cluster, gpus: int) -> list[tuple[str, str | None]]:
    """The GPUs' price per hour, per month and to buy, with the catalog's source (empty without a cluster)."""
    if cluster is None:
        return []
    from shardsim.capacity.speed_rank import HOURS_PER_MONTH
    from shardsim.capacity.workload import cluster_cost

    hourly, purchase, each = (cluster_cost(cluster, gpus, "hourly"), cluster_cost(cluster, gpus, "purchase"),
                              cluster_cost(cluster, 1, "hourly"))
    source = cluster.source.get("price_per_gpu_hour_usd") or cluster.gpu.source.get("price_per_gpu_hour_usd")
    buy_source = cluster.source.get("purchase_price_usd") or cluster.gpu.source.get("purchase_price_usd")
    return [("price per GPU-hour", None if each is None else f"${each:,.2f} ({cluster.name}, {cluster.gpu.name})"),
            (f"$/hour, {gpus} GPU{'s' if gpus != 1 else ''}", None if hourly is None else f"${hourly:,.2f}"),
            (f"$/month ({HOURS_PER_MONTH} h)", None if hourly is None else f"${hourly * HOURS_PER_MONTH:,.0f}"),
            ("purchase price", None if purchase is None else f"${purchase:,.0f}"),
            ("price source", source), ("purchase price source", buy_source)]


def cost_section(cluster, gpus: int, speed) -> Section | None:
    """The cost of the GPUs used and, with a speed report, what a million output tokens costs; None when there is
    neither a price nor a speed report."""
    speed = as_speed(speed)
    rows = [r for r in price_facts(cluster, gpus) if r[1] is not None]
    if speed:
        rows += [r for r in speed_facts(speed) if r[1] is not None]
    if not [r for r in rows if r[1] is not None]:
        return None
    body = [card(facts(rows))]
    if not speed:
        body.append(para("$ per million tokens needs a speed estimate: shardsim speed MODEL … with the same layout, or "
                         "a review with input and output tokens.", "muted"))
    lead = ("What the GPUs cost (the cluster spec's price, per GPU × GPUs used) and, with a speed estimate, what "
            "serving costs per million output tokens (estimates).")
    return Section("cost", "Cost", lead, body)


def speed_points(speeds: Sequence, labels: Sequence[str] | None = None) -> list[Point]:
    """Frontier points of speed reports: x tokens/s per user, y output tokens/s per GPU, labelled by ``labels`` or
    by the concurrency per replica."""
    out = []
    for i, s in enumerate(speeds):
        d = as_speed(s)
        if d is None or d.get("tokens_per_s_per_user") is None or d.get("tokens_per_s_per_gpu") is None:
            continue
        label = labels[i] if labels else f"{d.get('concurrency_per_replica', i + 1):,g} users"
        detail = " · ".join(v for v in (figure(d, "ttft_ms", ",.0f", "TTFT ", " ms"),
                                        figure(d, "tpot_ms", ",.1f", "TPOT ", " ms"),
                                        figure(d, "usd_per_mtok", ",.3f", "$", "/Mtok")) if v)
        out.append(Point(d["tokens_per_s_per_user"], d["tokens_per_s_per_gpu"], label,
                         d.get("meets_targets", True) is not False, detail))
    return out


def frontier_chart(points: Sequence[Point]) -> Raw:
    """The chart and, under it, the numbered frontier points with their figures."""
    if not points:
        return Raw("")
    rows = [[str(i), p.label, f"{p.x:,.1f}", f"{p.y:,.1f}", p.detail, "yes" if p.meets else "no"]
            for i, p in enumerate(frontier(points), 1)]
    return Raw(scatter(points, "output tokens/s per user", "output tokens/s per GPU")
               + table(["#", "point", "tok/s per user", "tok/s per GPU", "latency and cost", "meets targets"], rows,
                       numeric=(0, 2, 3)))


def frontier_section(points: Sequence[Point], lead_extra: str = "") -> Section | None:
    """The frontier chart; None (the section left out) without points."""
    if not points:
        return None
    lead = ("Throughput per GPU against speed per user (speed estimates): the line joins the points no other beats on "
            "both; a hollow point misses a latency target." + (f" {lead_extra}" if lead_extra else ""))
    return Section("frontier", "Speed frontier", lead, [frontier_chart(points)])
