"""KV cache, activations, allocator rounding and runtime: the non-weight terms of a rank."""

from __future__ import annotations

import pytest
from conftest import Cfg

from shardsim.constants import MAX_BATCH
from shardsim.core.layout import Layout, validate_layout
from shardsim.core.memory.activations import activation_peak, activation_peak_bytes
from shardsim.core.memory.allocator import AllocationTally, reserved_for
from shardsim.core.memory.kv_cache import kv_bytes_per_token, kv_cache_bytes, kv_tokens_allocated
from shardsim.core.memory.runtime import communicators
from shardsim.core.plan import Workload, plan
from shardsim.errors import ShardsimError
from shardsim.presets import get_preset
from shardsim.units import GiB, MiB

CAP = 80 * GiB


# ---------------------------------------------------------------- KV cache


def test_kv_235b_tp1_8192_tokens_is_1_58_gb():
    c = Cfg("Qwen3-235B-A22B")
    # 235B, TP1 PP1, bf16 KV, batch 1, 8192 tokens, all 94 layers:
    #   94 layers · 2 (K,V) · 4 KV heads · 128 · 2 B · 8192 = 1,577,058,304 B (1.58 GB — not 25 GB: 4 KV heads)
    expected = c.L * 2 * c.kv * c.hd * 2 * 8192
    assert expected == 1_577_058_304
    report = plan(get_preset("235b"), Layout(), Workload(context=8192), CAP)
    assert report.ranks[0].bytes.kv_cache == expected
    assert not report.fits        # 470 GB of weights on one GPU — still the bytes are reported
    assert report.max_context == 0


def test_kv_235b_tp8_pp2_per_rank():
    # 235B, TP8 PP2: 47 layers per stage; 4 KV heads on 8 ranks → each rank stores 1 (replicated) head:
    #   47 · 2 · 1 · 128 · 2 B · 8192 = 197,132,288 B per rank
    expected = 47 * 2 * 1 * 128 * 2 * 8192
    assert expected == 197_132_288
    report = plan(get_preset("235b"), Layout(tp=8, pp=2), Workload(context=8192), CAP)
    assert [r.bytes.kv_cache for r in report.ranks] == [expected] * 16


def test_kv_block_rounding():
    # context 8193 with 16-token pages: ceil(8193/16) = 513 pages = 8208 slots
    assert kv_tokens_allocated(8193, 1, 16) == 8208
    assert kv_tokens_allocated(8193, 3, 16) == 3 * 8208
    assert kv_tokens_allocated(8192, 1, 16) == 8192
    report = plan(get_preset("235b"), Layout(), Workload(context=8193), CAP)
    #   94 · 2 · 4 · 128 · 2 B · 8208 = 1,580,138,496 B
    assert report.ranks[0].bytes.kv_cache == 94 * 2 * 4 * 128 * 2 * 8208 == 1_580_138_496
    report = plan(get_preset("235b"), Layout(), Workload(context=8193, block_size=1), CAP)
    assert report.ranks[0].bytes.kv_cache == 94 * 2 * 4 * 128 * 2 * 8193


def test_kv_fp8_halves():
    bf16 = plan(get_preset("235b"), Layout(), Workload(context=8192), CAP).ranks[0].bytes.kv_cache
    fp8 = plan(get_preset("235b"), Layout(), Workload(context=8192, kv_dtype="fp8"), CAP).ranks[0].bytes.kv_cache
    assert fp8 * 2 == bf16 == 1_577_058_304


def test_kv_batch_scales_linearly():
    # 8B TP2: 36 · 2 · (8/2 = 4) · 128 · 2 B · 1000 → ceil to 1008 slots · 5 sequences = 371,589,120 B
    report = plan(get_preset("8b"), Layout(tp=2), Workload(context=1000, batch=5), CAP)
    assert [r.bytes.kv_cache for r in report.ranks] == [36 * 2 * 4 * 128 * 2 * 1008 * 5] * 2 == [371_589_120] * 2


def test_kv_cache_bytes_function():
    # 14B, TP16 is invalid for the model but the formula alone: 40 layers · 2 · 1 head · 128 · 2 · 32
    spec = get_preset("8b")  # 8 KV heads of head_dim 128
    # tp 16 > 8 KV heads: one (replicated) head per rank; 40 layers · K+V · 1 head · 128 · 2 B · 32 tokens
    assert kv_cache_bytes(spec, 16, 2, 40, 32, 1, 16) == 40 * 2 * 1 * 128 * 2 * 32
    # tp 4: 2 heads; fp8 (1 B); 20 tokens round up to two 16-token pages; 2 sequences
    assert kv_cache_bytes(spec, 4, 1, 40, 20, 2, 16) == 40 * 2 * 2 * 128 * 1 * 32 * 2


def test_models_kv_bytes_per_token_from_config():
    for name in ("Qwen3-0.6B", "Qwen3-32B", "Qwen3-235B-A22B"):
        c = Cfg(name)
        assert kv_bytes_per_token(get_preset(name), 2) == 2 * c.L * c.kv * c.hd * 2
    assert kv_bytes_per_token(get_preset("235b"), 2) == 192_512   # 2 · 94 · 4 · 128 · 2


# ---------------------------------------------------------------- activations


@pytest.mark.parametrize("model,layout", [("8b", Layout(tp=2)), ("30b-a3b", Layout(tp=4, pp=2)),
                                          ("235b", Layout(tp=8, pp=2))])
def test_activations_monotone_in_context(model, layout):
    spec = get_preset(model)
    prev = None
    for context in (1, 16, 17, 500, 4096, 8192, 8193, 20000, 40960):
        report = plan(spec, layout, Workload(context=context), CAP)
        acts = [r.bytes.activations for r in report.ranks]
        if prev is not None:
            assert all(a >= b for a, b in zip(acts, prev)), context
        prev = acts
    assert prev[0] > 0


@pytest.mark.parametrize("model,layout", [("8b", Layout(tp=2)), ("30b-a3b", Layout(tp=2, pp=2))])
def test_activations_monotone_in_batch_until_the_step_budget(model, layout):
    spec = get_preset(model)
    prev = None
    # context 2,048, step budget 8,192: tokens per step 2,048 · b for b ≤ 4, then 8,192 whatever the batch
    for batch in (1, 2, 3, 4):
        report = plan(spec, layout, Workload(context=2048, batch=batch), CAP)
        acts = [r.bytes.activations for r in report.ranks]
        if prev is not None:
            assert all(a > b for a, b in zip(acts, prev)), batch   # more tokens in flight: strictly more
        prev = acts
    budget = prev
    for batch in (8, 64):
        acts = [r.bytes.activations for r in plan(spec, layout, Workload(context=2048, batch=batch), CAP).ranks]
        # only the sampled rows (one per sequence, last stage) still grow with the batch
        stages = [r.coords.pp_rank for r in plan(spec, layout, Workload(context=2048, batch=batch), CAP).ranks]
        for a, b, stage in zip(acts, budget, stages):
            assert a >= b if stage == layout.pp - 1 else a == b


def test_step_shape_arithmetic():
    from shardsim.core.workload import step_shape

    assert step_shape(8192, 117, None, 8192) == (8192, 117)        # serving: the budget, 117 sequences sampled
    assert step_shape(100, 3, None, 8192) == (300, 3)              # short prompts: all of them
    assert step_shape(8192, 117, None, None) == (8192 * 117, 117)  # HF generate: batch × prompt
    assert step_shape(8192, 4, 512, None) == (2048, 4)             # prompt of 512 (validation)
    assert step_shape(100, 20000, None, 8192) == (8192, 8192)      # more sequences than tokens: one token each


def test_largest_batch_of_235b_is_bounded_by_kv_room():
    # 235B-A22B, TP 8 × PP 2, H100 80 GB, 8K context: with the 8,192-token step budget the activations no longer
    # grow with the batch, so the largest batch is what the KV room allows: stage of 47 layers, 1 KV head per rank
    # (4 KV heads replicated over TP 8), head_dim 128, bf16: 47 · 2 · 1 · 128 · 2 = 24,064 B per token.
    spec = get_preset("235b")
    lay = Layout(tp=8, pp=2)
    report = plan(spec, lay, Workload(context=8192, batch=1), 79.18 * 2**30)
    per_token = 47 * 2 * 1 * 128 * 2
    kv_one = report.ranks[0].bytes.kv_cache
    assert kv_one == per_token * 8192
    room = report.ranks[0].free_bytes + kv_one        # what batch 1 leaves, plus its own KV
    by_kv = room // (per_token * 8192)
    # the sampled logits (one row per sequence) and allocator rounding take a little more per sequence
    assert by_kv - 2 <= report.max_batch <= by_kv
    assert report.max_batch > 2 * 117                 # the full-prefill-per-sequence model gave 117


def test_logits_only_on_last_stage():
    spec = get_preset("8b")
    mid = activation_peak(spec, 2, 2, 4096, 3, False, True, is_last_stage=False)
    last = activation_peak(spec, 2, 2, 4096, 3, False, True, is_last_stage=True)
    assert mid.logits == 0
    # 8B TP2, batch 3: 3 · (151,936/2 = 75,968) · (2 B bf16 + 4 B fp32) + gathered fp32 3 · 151,936 · 4
    #   = 1,367,424 + 1,823,232 = 3,190,656 B
    assert last.logits == 3 * 75968 * 6 + 3 * 151936 * 4 == 3_190_656
    assert (mid.resident, mid.attention, mid.mlp) == (last.resident, last.attention, last.mlp)
    # TP1: no gathered copy: 3 · 151,936 · 6
    assert activation_peak(spec, 1, 1, 4096, 3, False, True, True).logits == 3 * 151936 * 6


def test_logits_dominate_only_on_last_stage_in_plan():
    # 0.6B PP2, one token per sequence, batch 64: logits (64 · 151,936 · 6 B = 58 MB) dominate the tiny prefill
    spec = get_preset("0.6b")
    report = plan(spec, Layout(pp=2), Workload(context=1, batch=64), CAP)
    s0, s1 = (r.bytes.activations for r in report.ranks)
    # last stage: resident 2 · 64 · 1024 · 2 B + logits 64 · 151,936 · (2 + 4) B = 262,144 + 58,343,424
    assert s1 == 2 * 64 * 1024 * 2 + 64 * 151936 * 6 == 58_605_568
    assert s0 < s1 // 10


def test_activation_terms_8b_tp1():
    spec = get_preset("8b")
    t = 1000
    a = activation_peak(spec, 1, 1, t, 1, False, True, False)
    # resident 2 · T · 4096 · 2; dense MLP 3 · T · 12288 · 2 + T · 4096 · 2
    assert a.resident == 2 * t * 4096 * 2
    assert a.mlp == 3 * t * 12288 * 2 + t * 4096 * 2
    # attention: qkv T·(32+16)·128·2 + q,k normed T·(32+8)·128·2 + cos/sin 2·T·128·4 + attn out T·32·128·2 + o T·4096·2
    assert a.attention == t * 48 * 128 * 2 + t * 40 * 128 * 2 + 2 * t * 128 * 4 + t * 32 * 128 * 2 + t * 4096 * 2
    assert activation_peak_bytes(spec, 1, 1, t, 1, False, True, False) == a.resident + max(a.attention, a.mlp)


# ---------------------------------------------------------------- allocator


def test_reserved_small_request_takes_2mib_segment():
    assert reserved_for(100) == 2 * MiB
    t = AllocationTally()
    t.add(100)
    assert (t.bytes, t.reserved) == (100, 2 * MiB)


def test_reserved_mid_request_takes_20mib_segment():
    assert reserved_for(5 * MiB) == 20 * MiB
    t = AllocationTally()
    t.add(5 * MiB)
    assert t.reserved == 20 * MiB


def test_reserved_large_request_rounds_to_2mib():
    assert reserved_for(11 * MiB) == 12 * MiB
    t = AllocationTally()
    t.add(11 * MiB)
    assert t.reserved == 12 * MiB


@pytest.mark.parametrize("size,times,expected", [
    (1 * MiB, 1, 2 * MiB),                # ≤ 1 MiB: small pool
    (1 * MiB + 1, 1, 20 * MiB),           # rounds to 1 MiB + 512: mid pool
    (10 * MiB - 512, 1, 20 * MiB),
    (10 * MiB, 1, 10 * MiB),              # ≥ 10 MiB: own segment, already a 2 MiB multiple
    (11 * MiB, 3, 36 * MiB),
    (512, 4096, 2 * MiB),                 # 4096 · 512 B = 2 MiB exactly: one small segment
    (513, 4096, 4 * MiB),                 # each rounds to 1024 B: 4096 · 1024 B = 4 MiB = two 2 MiB segments
    (3 * MiB, 7, 40 * MiB),               # 21 MiB of mid requests share 20 MiB segments: 2 of them
])
def test_reserved_for_table(size, times, expected):
    assert reserved_for(size, times) == expected
    t = AllocationTally()
    t.add(size, times)
    assert t.reserved == expected


def test_tally_pools_add_up():
    t = AllocationTally()
    t.add(100)            # small: 512
    t.add(5 * MiB)        # mid: 5 MiB
    t.add(11 * MiB)       # large: 12 MiB
    t.add(0)              # ignored
    assert t.count == 3
    assert t.bytes == 100 + 16 * MiB
    assert t.reserved == 2 * MiB + 20 * MiB + 12 * MiB
    u = AllocationTally()
    u.merge(t, 2)
    assert (u.count, u.bytes, u.reserved) == (6, 2 * t.bytes, 2 * MiB + 20 * MiB + 24 * MiB)


def test_plan_total_is_reserved_plus_runtime_fixed():
    report = plan(get_preset("8b"), Layout(tp=2), Workload(context=4096), CAP)
    for r in report.ranks:
        b = r.bytes
        assert b.reserved >= b.allocated
        assert b.allocated == b.weights + b.kv_cache + b.activations + b.zero_gather
        assert b.total == b.weights + b.zero_gather + b.kv_cache + b.activations + b.runtime


# ---------------------------------------------------------------- runtime


def test_communicators_per_rank():
    big, small = get_preset("235b"), get_preset("8b")
    assert communicators(0, validate_layout(small, Layout()), False) == ()
    # TP8 × PP2: rank 0 is stage 0 (a TP group and the link to stage 1)
    assert communicators(0, validate_layout(big, Layout(tp=8, pp=2)), True) == ("tp8", "pp-next")
    # TP8 × PP3: rank 8 is the middle stage, linked both ways
    assert communicators(8, validate_layout(big, Layout(tp=8, pp=3)), True) == ("tp8", "pp-prev", "pp-next")
    # TP4 × DP2 with EP8: experts span both replicas, so the DP group all-to-alls too
    assert communicators(0, validate_layout(big, Layout(tp=4, dp=2, ep=8)), True) == ("tp4", "ep8", "dp2")
    # ZeRO-3 over 4 replicas all-gathers weights over the DP group
    assert communicators(3, validate_layout(small, Layout(dp=4, zero=3)), False) == ("dp4",)


# ---------------------------------------------------------------- workload validation


@pytest.mark.parametrize("kwargs,match", [
    ({"context": 0}, "context"),
    ({"context": 10_000_001}, "context"),
    ({"batch": 0}, "batch"),
    ({"batch": MAX_BATCH + 1}, "batch"),
    ({"block_size": 0}, "block-size"),
    ({"kv_dtype": "int4"}, "dtype"),
])
def test_workload_refuses(kwargs, match):
    with pytest.raises(ShardsimError, match=match):
        plan(get_preset("8b"), Layout(), Workload(**kwargs), CAP)


def test_the_peak_counts_a_stage_whose_pipeline_neighbour_is_on_another_node():
    """0.6B, TP2 × PP8 on 8-GPU nodes: stage 3 (ranks 6–7) sends to stage 4 (ranks 8–9) on node 1, so its p2p
    buffers are the network's, unlike stages 1–2 with the same layer mix. The fast peak (used by the largest
    context and batch) must equal the largest rank total of the full plan (found by hypothesis: max_context
    said 1,024 fits where the full plan said it did not)."""
    from shardsim.core.planner import Planner

    spec = get_preset("0.6b")
    lay = validate_layout(spec, Layout(tp=2, pp=8))
    planner = Planner(spec, lay, Workload(context=1024, batch=1))
    full = plan(spec, lay, Workload(context=1024, batch=1), CAP)
    assert planner.peak_total(1024, 1).total_bytes == max(r.bytes.total for r in full.ranks)
