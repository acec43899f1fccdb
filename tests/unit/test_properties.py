"""Hypothesis properties of the planner over random valid layouts of random presets."""

from __future__ import annotations

from conftest import BF16_PRESETS, BF16_TOTAL_BYTES, Cfg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shardsim.core.layout import Layout, valid_tp_degrees, validate_layout
from shardsim.core.plan import Workload, plan
from shardsim.presets import get_preset
from shardsim.units import GiB

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
BIG = 10_000 * GiB  # capacity that fits anything: properties (a)–(c) only read bytes

CFGS = {name: Cfg(name) for name in BF16_PRESETS}


def valid_ep(tp: int, dp: int, experts: int) -> list[int]:
    """EP degrees the layout rules allow, derived here: divide tp·dp; ≤ tp → divide tp; > tp → multiple of tp."""
    return [e for e in range(1, tp * dp + 1)
            if (tp * dp) % e == 0 and e <= experts and ((e <= tp and tp % e == 0) or (e > tp and e % tp == 0))]


@st.composite
def layouts(draw, max_dp: int = 4, zero: bool = False, split: bool = False):
    name = draw(st.sampled_from(BF16_PRESETS))
    spec = get_preset(name)
    tp = draw(st.sampled_from(valid_tp_degrees(spec)))
    pp = draw(st.integers(1, min(spec.num_layers, 8)))
    dp = draw(st.sampled_from([d for d in (1, 2, 4) if d <= max_dp]))
    ep = draw(st.sampled_from(valid_ep(tp, dp, spec.num_experts))) if spec.is_moe else 1
    z = 3 if zero and dp > 1 and ep == 1 and draw(st.booleans()) else 0
    pp_split = None
    if split and pp > 1 and draw(st.booleans()):   # a hand-made stage split: pp − 1 distinct cut points
        cuts = sorted(draw(st.sets(st.integers(1, spec.num_layers - 1), min_size=pp - 1, max_size=pp - 1)))
        pp_split = tuple(b - a for a, b in zip([0] + cuts, cuts + [spec.num_layers]))
    return name, Layout(tp=tp, pp=pp, dp=dp, ep=ep, zero=z, pp_split=pp_split)


def replicated_overhead_elems(c: Cfg, tp: int, pp: int) -> int:
    """Elements one model replica holds beyond one copy of the checkpoint, summed over its TP ranks and stages."""
    per_layer_replicated = 2 * c.h + 2 * c.hd                     # input/post norms, q_norm, k_norm
    extra = (tp - 1) * (c.L * per_layer_replicated + len(c.moe_layers) * c.E * c.h + c.h)  # + routers, final norm
    if tp > c.kv:                                                  # every rank holds one KV head of k and of v
        extra += c.L * 2 * (tp - c.kv) * c.hd * c.h
    if c.tied and pp > 1:                                          # the last stage's own lm_head
        extra += c.V * c.h
    return extra


@SETTINGS
@given(layouts(split=True))
def test_a_weights_of_one_replica_are_total_plus_replicas(case):
    name, layout = case
    c = CFGS[name]
    report = plan(get_preset(name), layout, Workload(context=16), BIG)
    tp, ep = layout.tp, layout.ep
    # The ranks that together hold one copy of every tensor: the TP group of dp_rank 0 in every stage, and with
    # ep > tp the ep/tp DP replicas one EP group spans (each of them repeating the non-expert tensors).
    replicas = ep // tp if ep > tp else 1
    held = sum(r.bytes.weights for r in report.ranks if r.coords.dp_rank < replicas)
    expert_elems = len(c.moe_layers) * c.E * 3 * c.mi * c.h
    non_expert_elems = BF16_TOTAL_BYTES[name] // 2 - expert_elems
    expected = 2 * (replicas * (non_expert_elems + replicated_overhead_elems(c, tp, layout.pp)) + expert_elems)
    assert held == expected
    # every DP replica of a stage holds the same bytes as dp_rank 0 summed over its group
    assert sum(r.bytes.weights for r in report.ranks) == layout.dp // replicas * held


@SETTINGS
@given(layouts(max_dp=1))
def test_b_more_tp_never_raises_peak_weights(case):
    name, layout = case
    spec = get_preset(name)
    degrees = valid_tp_degrees(spec)
    i = degrees.index(layout.tp)
    if i + 1 == len(degrees):
        i -= 1
    lo, hi = degrees[i], degrees[i + 1]
    peak = {}
    for tp in (lo, hi):
        lay = Layout(tp=tp, pp=layout.pp)
        peak[tp] = max(r.bytes.weights for r in plan(spec, lay, Workload(context=16), BIG).ranks)
    assert peak[hi] <= peak[lo]
    assert peak[hi] < peak[lo]   # every linear shrinks: strictly smaller


@SETTINGS
@given(layouts(max_dp=2, zero=True), st.integers(1, 40960), st.integers(1, 8), st.sampled_from(["bf16", "fp8"]))
def test_c_kv_per_layer_is_share_or_one_head(case, context, batch, kv_dtype):
    name, layout = case
    c = CFGS[name]
    report = plan(get_preset(name), layout, Workload(context=context, batch=batch, kv_dtype=kv_dtype), BIG)
    elem = 2 if kv_dtype == "bf16" else 1
    slots = -(-context // 16) * 16 * batch
    for r in report.ranks:
        first, last = r.layers
        per_layer, rem = divmod(r.bytes.kv_cache, last - first + 1)
        assert rem == 0
        heads, rem = divmod(per_layer, 2 * c.hd * elem * slots)
        assert rem == 0
        if layout.tp <= c.kv:
            assert heads * layout.tp == c.kv          # the unreplicated share kv/tp
        else:
            assert heads == 1                         # replicated: one whole head, more than the share kv/tp < 1
            assert heads * layout.tp > c.kv


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(layouts(max_dp=2, zero=True, split=True), st.floats(0.0, 1.2), st.integers(1, 4))
def test_d_max_context_fits_and_one_more_does_not(case, frac, batch):
    name, layout = case
    spec = get_preset(name)
    layout = validate_layout(spec, layout)
    lo = plan(spec, layout, Workload(context=1, batch=batch), BIG).peak.bytes.total
    hi = plan(spec, layout, Workload(context=spec.max_position_embeddings, batch=batch), BIG).peak.bytes.total
    # a capacity between "nothing fits" (frac 0 → just below one token) and "everything fits" (frac > 1)
    capacity = lo - 1 + int(frac * (hi - lo + 1))
    report = plan(spec, layout, Workload(context=1, batch=batch), capacity)
    m = report.max_context
    assert 0 <= m <= spec.max_position_embeddings
    if m > 0:
        assert plan(spec, layout, Workload(context=m, batch=batch), capacity).fits
    if report.max_context_limited_by == "memory":
        assert m < spec.max_position_embeddings
        assert not plan(spec, layout, Workload(context=m + 1, batch=batch), capacity).fits
    else:
        assert m == spec.max_position_embeddings
    # the same for max_batch at context 1
    b = report.max_batch
    if b > 0:
        assert plan(spec, layout, Workload(context=1, batch=b), capacity).fits
    if b < 1_000_000:
        assert not plan(spec, layout, Workload(context=1, batch=b + 1), capacity).fits


def test_the_one_search_finds_the_edge_of_any_monotone_fit():
    from shardsim.core.search import largest_that_fits

    calls = []

    def fits_below(edge):
        def fits(n):
            calls.append(n)
            return n <= edge
        return fits

    for edge, upper in ((0, 100), (1, 100), (37, 100), (100, 100), (999, 100), (65_536, 1 << 20)):
        calls.clear()
        assert largest_that_fits(fits_below(edge), upper) == min(edge, upper)
        assert len(calls) <= upper.bit_length() + 2
