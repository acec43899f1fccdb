"""Shard rules (tensors.local_slices & co.) and layout validation, stage split and rank coordinates."""

from __future__ import annotations

import itertools

import pytest

from shardsim.core.layout import (
    Layout,
    default_stage_split,
    rank_coords,
    shard_of,
    stage_ranges,
    valid_tp_degrees,
    validate_layout,
)
from shardsim.core.tensors import (
    COLUMN,
    EXPERT,
    REPLICATED,
    ROW,
    VOCAB,
    Shard,
    embed_tensor,
    final_norm_tensor,
    kv_heads_per_rank,
    layer_tensors,
    lm_head_tensor,
    local_experts,
    local_slices,
    split_range,
)
from shardsim.errors import ShardsimError
from shardsim.presets import get_preset


def tensor(spec, layer, suffix):
    return next(t for t in layer_tensors(spec, layer) if t.name == f"model.layers.{layer}.{suffix}")


def bounds(slices):
    return tuple((s.start, s.stop) for s in slices)


def sliced(t, shard, head_dim):
    """(slices of one copy, experts held) of ``t`` on ``shard``."""
    held = local_slices(t, shard, head_dim)
    return held.slices, held.experts


def local_shape(t, shard, head_dim):
    """(shape of one copy, copies held) of ``t`` on ``shard``."""
    held = local_slices(t, shard, head_dim)
    return held.shape, held.copies


# ---------------------------------------------------------------- split_range


@pytest.mark.parametrize("n,parts,expected", [
    (10, 4, [(0, 3), (3, 6), (6, 8), (8, 10)]),   # 10 = 3+3+2+2: first n % parts runs get the extra item
    (12, 4, [(0, 3), (3, 6), (6, 9), (9, 12)]),
    (3, 5, [(0, 1), (1, 2), (2, 3), (3, 3), (3, 3)]),
    (7, 1, [(0, 7)]),
])
def test_split_range(n, parts, expected):
    assert [(r.start, r.stop) for r in (split_range(n, parts, i) for i in range(parts))] == expected


# ---------------------------------------------------------------- dense shard rules


def test_q_proj_column_split_8b_tp4():
    spec = get_preset("8b")
    q = tensor(spec, 0, "self_attn.q_proj.weight")
    assert q.rule == COLUMN
    # q_proj [32 heads × 128, 4096]: TP4 splits dim 0 → 1024 rows each, all 4096 columns.
    for r in range(4):
        sl, experts = sliced(q, Shard(tp=4, tp_rank=r), spec.head_dim)
        assert bounds(sl) == ((r * 1024, (r + 1) * 1024), (0, 4096))
        assert experts is None
    assert local_shape(q, Shard(tp=4, tp_rank=3), 128) == ((1024, 4096), 1)


def test_o_proj_row_split_8b_tp4():
    spec = get_preset("8b")
    o = tensor(spec, 5, "self_attn.o_proj.weight")
    assert o.rule == ROW
    # o_proj [4096, 32 × 128]: TP4 splits dim 1 (input) → 1024 columns each.
    for r in range(4):
        sl, _ = sliced(o, Shard(tp=4, tp_rank=r), 128)
        assert bounds(sl) == ((0, 4096), (r * 1024, (r + 1) * 1024))


def test_down_proj_row_gate_column_8b_tp2():
    spec = get_preset("8b")
    down, gate = tensor(spec, 0, "mlp.down_proj.weight"), tensor(spec, 0, "mlp.gate_proj.weight")
    # intermediate 12288 / 2 = 6144
    assert local_shape(down, Shard(tp=2, tp_rank=1), 128) == ((4096, 6144), 1)
    assert bounds(sliced(down, Shard(tp=2, tp_rank=1), 128)[0]) == ((0, 4096), (6144, 12288))
    assert bounds(sliced(gate, Shard(tp=2, tp_rank=1), 128)[0]) == ((6144, 12288), (0, 4096))


def test_embed_and_lm_head_vocab_split():
    spec = get_preset("32b")
    for t in (embed_tensor(spec), lm_head_tensor(spec)):
        assert t.rule == VOCAB
        # vocab 151936 / 8 = 18992 rows per rank, hidden 5120 whole
        for r in (0, 7):
            sl, _ = sliced(t, Shard(tp=8, tp_rank=r), 128)
            assert bounds(sl) == ((r * 18992, (r + 1) * 18992), (0, 5120))


@pytest.mark.parametrize("suffix", ["input_layernorm.weight", "post_attention_layernorm.weight",
                                    "self_attn.q_norm.weight", "self_attn.k_norm.weight"])
def test_norms_replicated(suffix):
    spec = get_preset("32b")
    t = tensor(spec, 3, suffix)
    assert t.rule == REPLICATED
    full = (5120,) if "layernorm" in suffix else (128,)
    for r in range(8):
        assert local_shape(t, Shard(tp=8, tp_rank=r), 128) == (full, 1)


def test_final_norm_replicated():
    spec = get_preset("32b")
    assert local_shape(final_norm_tensor(spec), Shard(tp=8, tp_rank=5), 128) == ((5120,), 1)


def test_router_replicated():
    spec = get_preset("235b")
    gate = tensor(spec, 10, "mlp.gate.weight")
    assert gate.rule == REPLICATED
    # router [128 experts, 4096] whole on every rank, whatever tp and ep
    for shard in (Shard(tp=8, tp_rank=7), Shard(tp=4, tp_rank=1, ep=8, ep_rank=5)):
        assert local_shape(gate, shard, 128) == ((128, 4096), 1)


# ---------------------------------------------------------------- KV heads


@pytest.mark.parametrize("kv,tp,held", [(8, 1, 8), (8, 2, 4), (8, 8, 1), (8, 16, 1), (4, 4, 1), (4, 8, 1), (4, 64, 1)])
def test_kv_heads_per_rank(kv, tp, held):
    assert kv_heads_per_rank(kv, tp) == held


def test_kv_split_by_whole_heads_8b_tp4():
    spec = get_preset("8b")
    k = tensor(spec, 0, "self_attn.k_proj.weight")
    # 8 KV heads / 4 = 2 heads = 256 rows per rank
    assert [bounds(sliced(k, Shard(tp=4, tp_rank=r), 128)[0])[0] for r in range(4)] == [
        (0, 256), (256, 512), (512, 768), (768, 1024)]


def test_kv_replicated_when_tp_exceeds_kv_heads_235b_tp8():
    spec = get_preset("235b")
    for suffix in ("self_attn.k_proj.weight", "self_attn.v_proj.weight"):
        t = tensor(spec, 0, suffix)
        assert t.shape == (4 * 128, 4096)
        heads = []
        for r in range(8):
            sl, _ = sliced(t, Shard(tp=8, tp_rank=r), 128)
            (r0, r1), cols = bounds(sl)
            assert r1 - r0 == 128 and cols == (0, 4096)   # one whole head each
            heads.append(r0 // 128)
        # 8 ranks over 4 heads: each head replicated 2×, ranks 0,1 share head 0, 2,3 head 1 …
        assert heads == [0, 0, 1, 1, 2, 2, 3, 3]


def test_kv_replication_tp64_on_235b():
    spec = get_preset("235b")
    k = tensor(spec, 0, "self_attn.k_proj.weight")
    heads = [bounds(sliced(k, Shard(tp=64, tp_rank=r), 128)[0])[0][0] // 128 for r in range(64)]
    assert heads == [r // 16 for r in range(64)]


# ---------------------------------------------------------------- experts


def test_experts_split_on_intermediate_without_ep_235b_tp8():
    spec = get_preset("235b")
    lay = validate_layout(spec, Layout(tp=8))
    assert lay.etp == 8
    gate_p = tensor(spec, 0, "mlp.experts.{e}.gate_proj.weight")
    down_p = tensor(spec, 0, "mlp.experts.{e}.down_proj.weight")
    assert gate_p.rule == EXPERT and gate_p.experts == 128
    for r in range(8):
        shard = shard_of(rank_coords(r, lay), lay)
        # every rank holds all 128 experts, 1536 / 8 = 192 of each one's intermediate rows (gate/up) or cols (down)
        sl, experts = sliced(gate_p, shard, 128)
        assert experts == range(0, 128)
        assert bounds(sl) == ((192 * r, 192 * (r + 1)), (0, 4096))
        sl, experts = sliced(down_p, shard, 128)
        assert bounds(sl) == ((0, 4096), (192 * r, 192 * (r + 1)))
        assert local_shape(down_p, shard, 128) == ((4096, 192), 128)


def test_whole_experts_with_ep_spanning_dp_235b_tp4_dp2_ep8():
    spec = get_preset("235b")
    lay = validate_layout(spec, Layout(tp=4, dp=2, ep=8))
    assert lay.etp == 1
    up = tensor(spec, 7, "mlp.experts.{e}.up_proj.weight")
    seen = []
    for r in range(8):
        c = rank_coords(r, lay)
        sl, experts = sliced(up, shard_of(c, lay), 128)
        assert bounds(sl) == ((0, 1536), (0, 4096))            # whole experts
        assert len(experts) == 16 and experts.step == 1       # 128 / 8, contiguous
        assert experts.start == 16 * c.ep_rank
        seen += list(experts)
    assert sorted(seen) == list(range(128))                    # the 8 ranks of one stage hold every expert once
    assert rank_coords(5, lay).ep_rank == 5                    # rank 5: tp_rank 1, dp_rank 1 → ep (1 % 2)·4 + 1


def test_ep_inside_tp_splits_each_expert_30b_tp4_ep2():
    spec = get_preset("30b-a3b")
    lay = validate_layout(spec, Layout(tp=4, ep=2))
    assert lay.etp == 2
    gate_p = tensor(spec, 0, "mlp.experts.{e}.gate_proj.weight")
    got = []
    for r in range(4):
        sl, experts = sliced(gate_p, shard_of(rank_coords(r, lay), lay), 128)
        got.append((experts, bounds(sl)[0]))
    # tp ranks 0,1 → ep 0 (experts 0–63), 2,3 → ep 1 (64–127); inside each, 768 / 2 = 384 rows
    assert got == [(range(0, 64), (0, 384)), (range(0, 64), (384, 768)),
                   (range(64, 128), (0, 384)), (range(64, 128), (384, 768))]


def test_local_experts_uneven_first_ranks_take_remainder():
    assert [local_experts(10, 4, r) for r in range(4)] == [range(0, 3), range(3, 6), range(6, 8), range(8, 10)]


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("model,layout,match", [
    ("235b", Layout(tp=3), "query heads"),
    ("235b", Layout(tp=0), "tp"),
    ("235b", Layout(tp=-1), "tp"),
    ("235b", Layout(pp=0), "pp"),
    ("235b", Layout(dp=0), "dp"),
    ("235b", Layout(pp=95), "95"),
    ("235b", Layout(pp=2, pp_split=(48, 40)), "sums to 88"),
    ("235b", Layout(pp=3, pp_split=(47, 47)), "2 stages"),
    ("235b", Layout(pp=2, pp_split=(94, 0)), "at least one layer"),
    ("8b", Layout(tp=2, ep=2), "dense"),
    ("235b", Layout(tp=4, ep=3), "divide"),
    ("235b", Layout(tp=4, dp=1, ep=8), "divide"),
    ("235b", Layout(tp=2, dp=3, ep=3), "multiple"),
    ("235b", Layout(tp=4, dp=3, ep=3), "must divide --tp 4"),
    ("235b", Layout(tp=8, dp=32, ep=256), "exceeds the 128 experts"),
    ("8b", Layout(dp=2, zero=2), "zero"),
    ("235b", Layout(dp=2, ep=2, zero=3), "zero"),
    ("14b", Layout(tp=5), "KV heads"),
    ("14b", Layout(tp=20), "not a multiple"),
    ("8b", Layout(tp=True), "whole number"),
])
def test_validate_layout_refuses(model, layout, match):
    with pytest.raises(ShardsimError, match=match):
        validate_layout(get_preset(model), layout)


def test_error_lists_accepted_tp():
    with pytest.raises(ShardsimError, match="accepted tp: 1, 2, 4, 8, 16, 32, 64"):
        validate_layout(get_preset("235b"), Layout(tp=3))


@pytest.mark.parametrize("model,expected", [
    ("235b", [1, 2, 4, 8, 16, 32, 64]),      # 64 heads, 4 KV: divisors of 64, beyond 4 multiples of 4
    ("14b", [1, 2, 4, 8, 40]),                # 40 heads, 8 KV: 5, 10, 20 are neither divisors nor multiples of 8
    ("0.6b", [1, 2, 4, 8, 16]),
    ("30b-a3b", [1, 2, 4, 8, 16, 32]),
])
def test_valid_tp_degrees(model, expected):
    spec = get_preset(model)
    assert valid_tp_degrees(spec) == expected
    for tp in range(1, spec.num_heads + 1):
        ok = tp in expected
        try:
            validate_layout(spec, Layout(tp=tp))
            accepted = True
        except ShardsimError:
            accepted = False
        assert accepted == ok, tp


def test_validate_fills_default_split_and_keeps_given_split():
    spec = get_preset("235b")
    assert validate_layout(spec, Layout(pp=2)).pp_split == (47, 47)
    assert validate_layout(spec, Layout(pp=2, pp_split=(48, 46))).pp_split == (48, 46)


@pytest.mark.parametrize("layers,pp,expected", [
    (94, 4, (23, 24, 24, 23)),   # 94 = 4·23 + 2: the two stages before the last get one more
    (94, 3, (31, 32, 31)),       # 94 = 3·31 + 1
    (28, 2, (14, 14)),
    (94, 1, (94,)),
    (48, 5, (9, 10, 10, 10, 9)),  # 48 = 5·9 + 3
    (36, 8, (4, 4, 4, 5, 5, 5, 5, 4)),  # 36 = 8·4 + 4
])
def test_default_stage_split_follows_vllm(layers, pp, expected):
    assert default_stage_split(layers, pp) == expected
    assert sum(expected) == layers


def test_stage_ranges_inclusive():
    lay = validate_layout(get_preset("235b"), Layout(pp=4))
    assert stage_ranges(lay) == [(0, 22), (23, 46), (47, 70), (71, 93)]


def test_rank_coords_tp_fastest_then_dp_then_pp():
    lay = validate_layout(get_preset("8b"), Layout(tp=2, dp=3, pp=4))
    seen = set()
    for rank in range(lay.world_size):
        c = rank_coords(rank, lay)
        assert rank == c.tp_rank + 2 * (c.dp_rank + 3 * c.pp_rank)
        assert 0 <= c.tp_rank < 2 and 0 <= c.dp_rank < 3 and 0 <= c.pp_rank < 4
        seen.add((c.tp_rank, c.dp_rank, c.pp_rank))
    assert len(seen) == 24
    assert (rank_coords(7, lay).tp_rank, rank_coords(7, lay).dp_rank, rank_coords(7, lay).pp_rank) == (1, 0, 1)


def test_world_size_derived():
    assert Layout(tp=8, pp=2, dp=3).world_size == 48


def test_every_ep_rank_covered_once_per_stage():
    spec = get_preset("30b-a3b")
    for tp, dp, ep in [(1, 4, 4), (2, 4, 8), (4, 2, 2), (4, 2, 8), (8, 1, 8)]:
        lay = validate_layout(spec, Layout(tp=tp, dp=dp, ep=ep))
        groups = max(1, ep // tp)   # DP replicas one EP group spans
        pairs = {(rank_coords(r, lay).ep_rank, rank_coords(r, lay).etp_rank) for r in range(tp * groups)}
        assert pairs == set(itertools.product(range(ep), range(lay.etp))), (tp, dp, ep)


def test_rank_groups_match_the_coordinates():
    """Every group derived again by brute force from ``rank_coords``: TP = same stage and replica, DP = same stage
    and tp rank, EP = the ranks that together hold every expert group once, neighbours = same tp/dp rank."""
    from shardsim.core.layout import rank_groups, tp_groups

    for tp, pp, dp in itertools.product([1, 2, 4, 8], [1, 2, 3], [1, 2, 4]):
        eps = [e for e in range(1, tp * dp + 1)
               if (tp * dp) % e == 0 and ((e <= tp and tp % e == 0) or (e > tp and e % tp == 0))]
        for ep in eps:
            lay = Layout(tp=tp, pp=pp, dp=dp, ep=ep)
            world = lay.world_size
            coords = [rank_coords(r, lay) for r in range(world)]
            for r, c in enumerate(coords):
                g = rank_groups(r, lay)
                same_stage = [x for x in range(world) if coords[x].pp_rank == c.pp_rank]
                assert list(g.tp) == [x for x in same_stage if coords[x].dp_rank == c.dp_rank]
                assert list(g.dp) == [x for x in same_stage if coords[x].tp_rank == c.tp_rank]
                assert r in g.ep and sorted(coords[x].ep_rank for x in g.ep) == list(range(ep))
                before = [x for x in range(world) if (coords[x].pp_rank, coords[x].tp_rank, coords[x].dp_rank)
                          == (c.pp_rank - 1, c.tp_rank, c.dp_rank)]
                assert g.pp_prev == (before[0] if before else None)
            assert sorted(r for group in tp_groups(lay) for r in group) == list(range(world))


def test_context_parallel_sits_between_tp_and_dp():
    """Megatron's order tp-cp-ep-dp-pp: rank = tp_rank + tp × (cp_rank + cp × (dp_rank + dp × pp_rank))."""
    from shardsim.core.layout import rank_coords, rank_groups, rank_of

    lay = validate_layout(get_preset("8b"), Layout(tp=2, cp=2, dp=2, pp=2))
    assert lay.world_size == 2 * 2 * 2 * 2
    # rank 13 = 1 + 2 × (0 + 2 × (1 + 2 × 1)): tp 1, cp 0, dp 1, pp 1
    c = rank_coords(13, lay)
    assert (c.tp_rank, c.cp_rank, c.dp_rank, c.pp_rank) == (1, 0, 1, 1)
    assert rank_of(lay, 1, 1, 1, 0) == 13
    g = rank_groups(13, lay)
    assert list(g.tp) == [12, 13]          # same stage, replica and slice
    assert list(g.cp) == [13, 15]          # every 2nd rank of replica 1 of stage 1 (ranks 12–15)
    assert list(g.dp) == [9, 13]           # every 4th rank of stage 1 (ranks 8–15) with tp 1, cp 0
    assert (g.pp_prev, g.pp_next) == (13 - 8, None)


def test_etp_derives_and_a_contrary_value_is_refused():
    spec = get_preset("30b-a3b")
    assert Layout(tp=4, ep=2).etp == 2 and Layout(tp=2, ep=4, dp=2).etp == 1 and Layout(tp=4).etp == 4
    assert validate_layout(spec, Layout(tp=4, ep=2, etp=2)).etp == 2
    with pytest.raises(ShardsimError, match="--etp 4 is not what the layout gives"):
        validate_layout(spec, Layout(tp=4, ep=2, etp=4))
    # new degrees derive etp again
    assert Layout(tp=4, ep=2).with_degrees(tp=8).etp == 4


def test_placement_packs_ranks_node_by_node():
    from shardsim.core.placement import Placement

    p = Placement(gpus_per_node=8)
    assert [(p.slot(r).node, p.slot(r).local_gpu) for r in (0, 7, 8, 17)] == [(0, 0), (0, 7), (1, 0), (2, 1)]
    assert p.spans_nodes(range(6, 10)) and not p.spans_nodes(range(8, 16))
    assert p.nodes_of([3, 20]) == (0, 2)
