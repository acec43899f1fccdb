"""Per-rank weight bytes through the planner, arithmetic written out from the config numbers (Megatron style)."""

from __future__ import annotations

import pytest
from conftest import TINY_CONFIG, Cfg, raw_config

from shardsim.core.config import spec_from_config
from shardsim.core.layout import Layout
from shardsim.core.memory.weights import total_weight_bytes, weight_model
from shardsim.core.plan import Workload, plan
from shardsim.core.quant import quant_from_choice
from shardsim.core.tensors import Shard
from shardsim.presets import get_preset
from shardsim.units import GiB

CAP = 80 * GiB


def ceil_div(a, b):
    return -(-a // b)


def weights(model, layout, workload=None, spec=None):
    """Weight bytes of every rank, in rank order."""
    spec = spec or get_preset(model)
    report = plan(spec, layout, workload or Workload(), CAP)
    return [r.bytes.weights for r in report.ranks]


def dense_layer_elems(c: Cfg, tp: int) -> int:
    """One dense decoder layer on one TP rank (tp divides everything here)."""
    q = c.nh // tp * c.hd * c.h
    kv = 2 * max(c.kv // tp, 1) * c.hd * c.h
    o = c.h * (c.nh // tp * c.hd)
    mlp = 3 * (c.i // tp) * c.h
    norms = 2 * c.h + 2 * c.hd
    return q + kv + o + mlp + norms


# ---------------------------------------------------------------- dense


def test_32b_tp2():
    c = Cfg("Qwen3-32B")
    # 32B, TP2: every linear halves, norms replicate:
    #   q 32·128·5120 = 20,971,520 · k,v 4·128·5120 = 2,621,440 each · o 5120·32·128 = 20,971,520
    #   mlp 3·12800·5120 = 196,608,000 · norms 2·5120 + 2·128 = 10,496  → 243,804,416 elems/layer
    #   × 64 layers = 15,603,482,624; embed + lm_head 2 · 75,968·5120 = 777,912,320; final norm 5,120
    #   = 16,381,400,064 elems × 2 B = 32,762,800,128 B per rank
    per_layer = dense_layer_elems(c, 2)
    assert per_layer == 243_804_416
    expected = 2 * (c.L * per_layer + 2 * (c.V // 2) * c.h + c.h)
    assert expected == 32_762_800_128
    assert weights("32b", Layout(tp=2)) == [expected, expected]
    # = half the model + the other half of the replicated norms: 65,524,246,528/2 + (64·10,496 + 5,120)·2 B / 2
    assert expected == 65_524_246_528 // 2 + (c.L * (2 * c.h + 2 * c.hd) + c.h) * 2 // 2


def test_8b_tp4_pp2():
    c = Cfg("Qwen3-8B")
    # 8B, TP4 PP2, stages 18/18:
    #   q 8·128·4096 = 4,194,304 · k,v 2·128·4096 = 1,048,576 each · o 4,194,304 · mlp 3·3072·4096 = 37,748,736
    #   norms 2·4096 + 256 = 8,448 → 48,242,944 elems/layer × 18 = 868,372,992
    #   stage 0: + embed 37,984·4096 = 155,582,464 → 1,023,955,456 elems = 2,047,910,912 B
    #   stage 1: + final norm 4,096 + lm_head 155,582,464 → 1,023,959,552 elems = 2,047,919,104 B
    per_layer = dense_layer_elems(c, 4)
    assert per_layer == 48_242_944
    vocab_shard = (c.V // 4) * c.h
    s0 = 2 * (18 * per_layer + vocab_shard)
    s1 = 2 * (18 * per_layer + c.h + vocab_shard)
    assert (s0, s1) == (2_047_910_912, 2_047_919_104)
    assert weights("8b", Layout(tp=4, pp=2)) == [s0] * 4 + [s1] * 4


def test_0_6b_tied_pp2_holds_second_lm_head_copy():
    c = Cfg("Qwen3-0.6B")
    assert c.tied
    # 0.6B (tied), PP2, stages 14/14:
    #   q 16·128·1024 = 2,097,152 · k,v 8·128·1024 = 1,048,576 each · o 2,097,152 · mlp 3·3072·1024 = 9,437,184
    #   norms 2·1024 + 256 = 2,304 → 15,730,944 elems/layer × 14 = 220,233,216
    #   stage 0: + embed 151,936·1024 = 155,582,464 → 375,815,680 elems = 751,631,360 B
    #   stage 1: + final norm 1,024 + its own lm_head (a 2nd copy of the tied embedding) 155,582,464
    #            → 375,816,704 elems = 751,633,408 B
    per_layer = dense_layer_elems(c, 1)
    assert per_layer == 15_730_944
    s0 = 2 * (14 * per_layer + c.V * c.h)
    s1 = 2 * (14 * per_layer + c.h + c.V * c.h)
    assert (s0, s1) == (751_631_360, 751_633_408)
    assert weights("0.6b", Layout(pp=2)) == [s0, s1]
    # the two stages together hold the model plus one extra V·h·2 B copy
    assert s0 + s1 == 1_192_099_840 + c.V * c.h * 2


def test_0_6b_tied_pp1_one_copy():
    c = Cfg("Qwen3-0.6B")
    # 0.6B, PP1: lm_head *is* the embedding: 28 · 15,730,944 + 151,936·1024 + 1,024 = 596,049,920 elems
    #   = 1,192,099,840 B (one copy)
    expected = 2 * (c.L * dense_layer_elems(c, 1) + c.V * c.h + c.h)
    assert expected == 1_192_099_840
    assert weights("0.6b", Layout()) == [expected]


def test_0_6b_tied_pp2_tp2():
    c = Cfg("Qwen3-0.6B")
    # 0.6B TP2 PP2: per layer q 8·128·1024 = 1,048,576 · k,v 4·128·1024 = 524,288 each · o 1,048,576
    #   mlp 3·1536·1024 = 4,718,592 · norms 2,304 → 7,866,624 elems × 14 = 110,132,736
    #   stage 0 + embed 75,968·1024 = 77,791,232 → 187,923,968 elems = 375,847,936 B
    #   stage 1 + 1,024 + lm_head copy 77,791,232 → 187,924,992 elems = 375,849,984 B
    per_layer = dense_layer_elems(c, 2)
    assert per_layer == 7_866_624
    s0 = 2 * (14 * per_layer + c.V // 2 * c.h)
    s1 = s0 + 2 * c.h
    assert (s0, s1) == (375_847_936, 375_849_984)
    assert weights("0.6b", Layout(tp=2, pp=2)) == [s0, s0, s1, s1]


# ---------------------------------------------------------------- MoE


def test_235b_tp8_pp2():
    c = Cfg("Qwen3-235B-A22B")
    # 235B, TP8 PP2, stages 47/47; experts split 8 ways on their intermediate dim (no --ep); 4 KV heads on 8 ranks:
    #   q 8·128·4096 = 4,194,304 · k,v one (replicated) head 128·4096 = 524,288 each · o 4,194,304
    #   norms 2·4096 + 256 = 8,448 · router 128·4096 = 524,288 (replicated)
    #   experts 128 · 3 · (1536/8 = 192) · 4096 = 301,989,888 → 311,959,808 elems/layer × 47 = 14,662,110,976
    #   stage 0: + embed 18,992·4096 = 77,791,232 → 14,739,902,208 elems = 29,479,804,416 B
    #   stage 1: + final norm 4,096 + lm_head 77,791,232 → 14,739,906,304 elems = 29,479,812,608 B
    per_layer = (c.nh // 8 * c.hd * c.h) * 2 + 2 * 1 * c.hd * c.h + (2 * c.h + 2 * c.hd) + c.E * c.h \
        + c.E * 3 * (c.mi // 8) * c.h
    assert per_layer == 311_959_808
    s0 = 2 * (47 * per_layer + c.V // 8 * c.h)
    s1 = 2 * (47 * per_layer + c.h + c.V // 8 * c.h)
    assert (s0, s1) == (29_479_804_416, 29_479_812_608)
    assert weights("235b", Layout(tp=8, pp=2)) == [s0] * 8 + [s1] * 8


def test_235b_tp4_dp2_ep8_whole_experts():
    c = Cfg("Qwen3-235B-A22B")
    # 235B, TP4 DP2 EP8: experts whole (etp 1), 128 / 8 = 16 per rank; 4 KV heads / 4 = 1 each:
    #   q 16·128·4096 = 8,388,608 · k,v 128·4096 = 524,288 each · o 8,388,608 · norms 8,448 · router 524,288
    #   experts 16 · 3 · 1536 · 4096 = 301,989,888 → 320,348,416 elems/layer × 94 = 30,112,751,104
    #   + embed, lm_head 2 · 37,984·4096 = 311,164,928 + final norm 4,096 → 30,423,920,128 elems
    #   = 60,847,840,256 B on every one of the 8 ranks
    per_layer = (c.nh // 4 * c.hd * c.h) * 2 + 2 * c.hd * c.h + (2 * c.h + 2 * c.hd) + c.E * c.h \
        + (c.E // 8) * 3 * c.mi * c.h
    assert per_layer == 320_348_416
    expected = 2 * (c.L * per_layer + 2 * (c.V // 4) * c.h + c.h)
    assert expected == 60_847_840_256
    assert weights("235b", Layout(tp=4, dp=2, ep=8)) == [expected] * 8


def test_30b_tp2_ep2():
    c = Cfg("Qwen3-30B-A3B")
    # 30B-A3B, TP2 EP2 (etp 1): 64 whole experts per rank; 4 KV heads / 2 = 2 each:
    #   q 16·128·2048 = 4,194,304 · k,v 2·128·2048 = 524,288 each · o 4,194,304 · norms 2·2048 + 256 = 4,352
    #   router 128·2048 = 262,144 · experts 64 · 3 · 768 · 2048 = 301,989,888 → 311,693,568 elems/layer
    #   × 48 = 14,961,291,264 + embed, lm_head 2 · 75,968·2048 = 311,164,928 + 2,048 → 15,272,458,240 elems
    #   = 30,544,916,480 B per rank
    per_layer = (c.nh // 2 * c.hd * c.h) * 2 + 2 * (c.kv // 2) * c.hd * c.h + (2 * c.h + 2 * c.hd) + c.E * c.h \
        + (c.E // 2) * 3 * c.mi * c.h
    assert per_layer == 311_693_568
    expected = 2 * (c.L * per_layer + 2 * (c.V // 2) * c.h + c.h)
    assert expected == 30_544_916_480
    assert weights("30b-a3b", Layout(tp=2, ep=2)) == [expected, expected]


def test_30b_tp4_ep2_splits_experts_two_ways():
    c = Cfg("Qwen3-30B-A3B")
    # 30B-A3B, TP4 EP2 (etp 2): 64 experts per rank, each 768/2 = 384 wide; 1 KV head each:
    #   q 8·128·2048 = 2,097,152 · k,v 128·2048 = 262,144 each · o 2,097,152 · norms 4,352 · router 262,144
    #   experts 64 · 3 · 384 · 2048 = 150,994,944 → 155,980,032 elems/layer × 48 = 7,487,041,536
    #   + 2 · 37,984·2048 = 155,582,464 + 2,048 → 7,642,626,048 elems = 15,285,252,096 B
    per_layer = (c.nh // 4 * c.hd * c.h) * 2 + 2 * c.hd * c.h + (2 * c.h + 2 * c.hd) + c.E * c.h \
        + (c.E // 2) * 3 * (c.mi // 2) * c.h
    assert per_layer == 155_980_032
    expected = 2 * (c.L * per_layer + 2 * (c.V // 4) * c.h + c.h)
    assert expected == 15_285_252_096
    assert weights("30b-a3b", Layout(tp=4, ep=2)) == [expected] * 4


def test_30b_uneven_experts_tp1_dp3_ep3():
    c = Cfg("Qwen3-30B-A3B")
    # 30B-A3B, TP1 DP3 EP3: 128 experts over 3 EP ranks → 43, 43, 42 (first ranks take the remainder):
    #   non-expert per layer: q 4096·2048 = 8,388,608 · k,v 512·2048 = 1,048,576 each · o 8,388,608
    #   norms 4,352 · router 262,144 → 19,140,864 elems; one expert 3 · 768 · 2048 = 4,718,592 elems
    #   rank 0: (19,140,864 + 43 · 4,718,592) · 48 + 2 · 151,936·2048 + 2,048 = 11,280,267,264 elems
    #           = 22,560,534,528 B; rank 2 holds one expert less per layer: − 48 · 4,718,592 · 2 B
    non_expert = 2 * c.nh * c.hd * c.h + 2 * c.kv * c.hd * c.h + 2 * c.h + 2 * c.hd + c.E * c.h
    assert non_expert == 19_140_864
    expert = 3 * c.mi * c.h
    edges = 2 * c.V * c.h + c.h

    def rank_bytes(n):
        return 2 * (c.L * (non_expert + n * expert) + edges)
    assert rank_bytes(43) == 22_560_534_528
    assert weights("30b-a3b", Layout(dp=3, ep=3)) == [rank_bytes(43), rank_bytes(43), rank_bytes(42)]


# ---------------------------------------------------------------- ZeRO-3


def test_zero3_dp4_8b_quarters_every_tensor():
    # 8B, ZeRO-3 over dp 4: every tensor's numel here is a multiple of 4, so each rank holds exactly
    #   16,381,470,720 / 4 = 4,095,367,680 B
    report = plan(get_preset("8b"), Layout(dp=4, zero=3), Workload(), CAP)
    assert [r.bytes.weights for r in report.ranks] == [4_095_367_680] * 4
    # and gathers its largest module whole (embed_tokens or lm_head: 151,936 × 4096 elems) plus DeepSpeed's
    # 5e7-element prefetch bucket, in bf16: (622,329,856 + 50,000,000) × 2 B
    assert [r.bytes.zero_gather for r in report.ranks] == [(151_936 * 4096 + 50_000_000) * 2] * 4


def test_zero3_rounds_each_tensor_up():
    spec = spec_from_config(TINY_CONFIG, name="tiny")
    # tiny (h 6, I 5, heads 2, kv 1, hd 3, V 7), ZeRO-3 dp 4, ceil(numel/4) per tensor:
    #   embed 42 → 11 · input_ln 6 → 2 · q 36 → 9 · k 18 → 5 · v 18 → 5 · o 36 → 9 · q_norm 3 → 1 · k_norm 3 → 1
    #   post_ln 6 → 2 · gate 30 → 8 · up 30 → 8 · down 30 → 8 · final norm 6 → 2 · lm_head 42 → 11
    #   = 82 elems × 2 B = 164 B (plain numel/4 would give 276/4 = 69 elems)
    numels = [42, 6, 36, 18, 18, 36, 3, 3, 6, 30, 30, 30, 6, 42]
    assert sum(numels) * 2 == total_weight_bytes(spec)
    expected = 2 * sum(ceil_div(n, 4) for n in numels)
    assert expected == 164
    assert weights(None, Layout(dp=4, zero=3), spec=spec) == [164] * 4


# ---------------------------------------------------------------- quantized formats


def test_fp8_8b_tp1():
    c = Cfg("Qwen3-8B")
    # 8B fp8 (128×128 blocks), TP1: linears 1 B/elem + fp32 scales ceil(out/128)·ceil(in/128)·4 B
    #   q [4096,4096] 16,777,216 + 32·32·4 = 4,096 · k,v [1024,4096] 4,194,304 + 8·32·4 = 1,024 each
    #   o 16,777,216 + 4,096 · gate,up [12288,4096] 50,331,648 + 96·32·4 = 12,288 each
    #   down [4096,12288] 50,331,648 + 12,288 · norms (2·4096 + 256)·2 = 16,896 → 193,001,984 B/layer
    #   × 36 = 6,948,071,424 + embed, lm_head bf16 2·151,936·4096·2 = 2,489,319,424 + final norm 8,192
    #   = 9,437,399,040 B
    def fp8(out, inp):
        return out * inp + ceil_div(out, 128) * ceil_div(inp, 128) * 4
    q, kv = c.nh * c.hd, c.kv * c.hd
    layer = fp8(q, c.h) + 2 * fp8(kv, c.h) + fp8(c.h, q) + 2 * fp8(c.i, c.h) + fp8(c.h, c.i) + (2 * c.h + 2 * c.hd) * 2
    assert layer == 193_001_984
    expected = c.L * layer + 2 * c.V * c.h * 2 + c.h * 2
    assert expected == 9_437_399_040
    assert weights("8b", Layout(), Workload(quant=quant_from_choice("fp8"))) == [expected]


def test_int4_gptq_8b_tp1():
    c = Cfg("Qwen3-8B")
    # 8B int4 (GPTQ layout, group 128), TP1; per linear [out, in]:
    #   qweight in/8 · out · 4 B, qzeros (in/128) · out/8 · 4 B, scales (in/128) · out · 2 B
    #   q [4096,4096]: 8,388,608 + 65,536 + 262,144 = 8,716,288 · k,v [1024,4096]: 2,097,152 + 16,384 + 65,536
    #   = 2,179,072 each · o 8,716,288 · gate, up [12288,4096] and down [4096,12288]: 25,165,824 + 196,608 +
    #   786,432 = 26,148,864 each · norms 16,896 → 100,254,208 B/layer × 36 = 3,609,151,488
    #   + embed, lm_head bf16 2,489,319,424 + final norm 8,192 = 6,098,479,104 B
    def int4(out, inp):
        groups = inp // 128
        return inp // 8 * out * 4 + groups * out // 8 * 4 + groups * out * 2
    q, kv = c.nh * c.hd, c.kv * c.hd
    assert int4(q, c.h) == 8_716_288 and int4(kv, c.h) == 2_179_072 and int4(c.h, c.i) == 26_148_864
    layer = int4(q, c.h) + 2 * int4(kv, c.h) + int4(c.h, q) + 2 * int4(c.i, c.h) + int4(c.h, c.i) + (2 * c.h + 2 * c.hd) * 2
    assert layer == 100_254_208
    expected = c.L * layer + 2 * c.V * c.h * 2 + c.h * 2
    assert expected == 6_098_479_104
    assert weights("8b", Layout(), Workload(quant=quant_from_choice("int4"))) == [expected]


def test_int4_breakdown_names_and_sizes():
    spec = get_preset("8b")
    wm = weight_model(spec, "bf16", quant_from_choice("int4"))
    d = wm.rank_breakdown(0, 0, False, False, Shard(tp=2, tp_rank=0))
    # o_proj row-split over TP2: [4096, 2048] held; in 2048 → 16 groups
    assert d["model.layers.0.self_attn.o_proj.qweight"] == 2048 // 8 * 4096 * 4   # 4,194,304
    assert d["model.layers.0.self_attn.o_proj.qzeros"] == 16 * 4096 // 8 * 4      # 32,768
    assert d["model.layers.0.self_attn.o_proj.scales"] == 16 * 4096 * 2           # 131,072
    assert "model.layers.0.self_attn.o_proj.weight" not in d
    assert d["model.layers.0.input_layernorm.weight"] == 4096 * 2


def test_int8_gptq_breakdown():
    spec = get_preset("8b")
    wm = weight_model(spec, "bf16", quant_from_choice("int8"))
    d = wm.rank_breakdown(0, 0, False, False, Shard())
    # int8: 4 values per int32 word. k_proj [1024, 4096]: qweight 4096/4 · 1024 · 4 B = 4,194,304
    #   qzeros 32 groups · 1024/4 · 4 B = 32,768 · scales 32 · 1024 · 2 B = 65,536
    assert d["model.layers.0.self_attn.k_proj.qweight"] == 4096 // 4 * 1024 * 4 == 4_194_304
    assert d["model.layers.0.self_attn.k_proj.qzeros"] == 32 * 1024 // 4 * 4 == 32_768
    assert d["model.layers.0.self_attn.k_proj.scales"] == 32 * 1024 * 2 == 65_536


def test_checkpoint_awq_and_desc_act_layouts():
    config = {**TINY_CONFIG, "hidden_size": 256, "num_attention_heads": 2, "num_key_value_heads": 1,
              "head_dim": 128, "intermediate_size": 512}
    awq = spec_from_config({**config, "quantization_config": {"quant_method": "awq", "bits": 4, "group_size": 128}}, "awq")
    d = weight_model(awq, "bf16", awq.quant).rank_breakdown(0, 0, False, False, Shard())
    # awq down_proj [256, 512]: qweight [in 512, out/8 = 32] int32 = 65,536 B; qzeros [4 groups, 32] · 4 = 512 B;
    #   scales [4, 256] · 2 = 2,048 B
    assert d["model.layers.0.mlp.down_proj.qweight"] == 512 * 32 * 4
    assert d["model.layers.0.mlp.down_proj.qzeros"] == 4 * 32 * 4
    assert d["model.layers.0.mlp.down_proj.scales"] == 4 * 256 * 2
    gptq = spec_from_config({**config, "quantization_config": {"quant_method": "gptq", "bits": 4, "group_size": 128,
                                                               "desc_act": True}}, "gptq")
    d = weight_model(gptq, "bf16", gptq.quant).rank_breakdown(0, 0, False, False, Shard())
    # desc_act adds g_idx int32 [in]: down_proj in 512 → 2,048 B
    assert d["model.layers.0.mlp.down_proj.g_idx"] == 512 * 4
    assert d["model.layers.0.mlp.down_proj.qweight"] == 512 // 8 * 256 * 4


@pytest.mark.parametrize("name", ["30b-a3b-fp8", "235b-fp8"])
def test_fp8_presets_keep_router_norms_embed_in_bf16(name):
    spec = get_preset(name)
    assert spec.quant.method == "fp8"
    h, E, hd, mi = spec.hidden_size, spec.num_experts, spec.head_dim, spec.moe_intermediate_size
    wm = weight_model(spec, "bf16", spec.quant)
    d = wm.rank_breakdown(0, 1, True, True, Shard())
    for layer in (0, 1):
        p = f"model.layers.{layer}."
        assert d[p + "mlp.gate.weight"] == E * h * 2                # router bf16
        assert d[p + "input_layernorm.weight"] == h * 2
        assert d[p + "post_attention_layernorm.weight"] == h * 2
        assert d[p + "self_attn.q_norm.weight"] == hd * 2
        assert d[p + "self_attn.k_norm.weight"] == hd * 2
        assert d[p + "self_attn.q_proj.weight"] == spec.num_heads * hd * h * 1            # fp8 1 B
        assert d[p + "self_attn.q_proj.weight_scale_inv"] == ceil_div(spec.num_heads * hd, 128) * ceil_div(h, 128) * 4
        assert d[p + "mlp.experts.*.down_proj.weight"] == E * h * mi
        assert d[p + "mlp.experts.*.down_proj.weight_scale_inv"] == E * ceil_div(h, 128) * ceil_div(mi, 128) * 4
    assert d["model.embed_tokens.weight"] == spec.vocab_size * h * 2
    assert d["lm_head.weight"] == spec.vocab_size * h * 2
    assert d["model.norm.weight"] == h * 2


def test_30b_fp8_total():
    c = Cfg("Qwen3-30B-A3B-FP8")
    # 30B-A3B-FP8 whole model: per layer norms (2·2048 + 256)·2 = 8,704 · router 128·2048·2 = 524,288
    #   q [4096,2048] 8,388,608 + 32·16·4 = 2,048 · k,v [512,2048] 1,048,576 + 4·16·4 = 256 each
    #   o [2048,4096] 8,388,608 + 2,048 · experts 128 · 3 · (768·2048 + 6·16·4 = 1,573,248) = 604,127,232
    #   → 623,539,200 B/layer × 48 = 29,929,881,600 + embed, lm_head bf16 1,244,659,712 + final norm 4,096
    #   = 31,174,545,408 B
    def fp8(out, inp):
        return out * inp + ceil_div(out, 128) * ceil_div(inp, 128) * 4
    q, kv = c.nh * c.hd, c.kv * c.hd
    layer = (2 * c.h + 2 * c.hd) * 2 + c.E * c.h * 2 + fp8(q, c.h) + 2 * fp8(kv, c.h) + fp8(c.h, q) \
        + c.E * (2 * fp8(c.mi, c.h) + fp8(c.h, c.mi))
    assert layer == 623_539_200
    expected = c.L * layer + 2 * c.V * c.h * 2 + c.h * 2
    assert expected == 31_174_545_408
    assert total_weight_bytes(get_preset("30b-a3b-fp8")) == expected
    assert weights("30b-a3b-fp8", Layout()) == [expected]


def test_fp8_shards_take_scales_of_their_rows():
    spec = get_preset("235b-fp8")
    wm = weight_model(spec, "bf16", spec.quant)
    # TP8, no EP: each expert's gate_proj shard is [192, 4096] → ceil(192/128) = 2 × 32 scale blocks, fp32
    d = wm.rank_breakdown(0, 0, False, False, Shard(tp=8, tp_rank=3, etp=8, etp_rank=3))
    assert d["model.layers.0.mlp.experts.*.gate_proj.weight"] == 128 * 192 * 4096
    assert d["model.layers.0.mlp.experts.*.gate_proj.weight_scale_inv"] == 128 * 2 * 32 * 4
    # k_proj: one replicated head, [128, 4096] → 1 × 32 scales
    assert d["model.layers.0.self_attn.k_proj.weight_scale_inv"] == 1 * 32 * 4


def test_rank_breakdown_sums_to_stage_bytes_tied_pp1():
    spec = get_preset("0.6b")
    wm = weight_model(spec, "bf16", spec.quant)
    d = wm.rank_breakdown(0, spec.num_layers - 1, True, True, Shard())
    assert "lm_head.weight" not in d
    assert sum(d.values()) == 1_192_099_840


@pytest.mark.parametrize("model,layout", [
    ("8b", Layout(tp=4, pp=2)), ("235b", Layout(tp=4, dp=2, ep=8)), ("0.6b", Layout(pp=2)), ("30b-a3b", Layout(tp=4, ep=2)),
])
def test_rank_breakdown_sums_to_plan_weights(model, layout):
    spec = get_preset(model)
    report = plan(spec, layout, Workload(), CAP)
    lay = report.layout
    wm = weight_model(spec, "bf16", spec.quant)
    from shardsim.core.layout import shard_of
    for r in report.ranks:
        first, last = r.layers
        d = wm.rank_breakdown(first, last, r.coords.pp_rank == 0, r.coords.pp_rank == lay.pp - 1, shard_of(r.coords, lay))
        assert sum(d.values()) == r.bytes.weights


# ---------------------------------------------------------------- shards of one size class


def _uneven_moe_config() -> dict:
    # 30B-A3B with sizes no degree below divides: 61 experts, expert intermediate 765, vocab 151,937
    return {**raw_config("Qwen3-30B-A3B"), "num_experts": 61, "moe_intermediate_size": 765, "vocab_size": 151_937,
            "num_hidden_layers": 2, "tie_word_embeddings": False}


def _hybrid_vision_config() -> dict:
    # Qwen3.5-35B-A3B cut to 4 layers (three Gated DeltaNet, one full attention), its vision tower and MTP head kept
    raw = raw_config("Qwen3.5-35B-A3B")
    text = raw["text_config"]
    return {**raw, "text_config": {**text, "num_hidden_layers": 4, "layer_types": text["layer_types"][:4]}}


@pytest.mark.parametrize("config", [TINY_CONFIG, "uneven", "hybrid"], ids=["tiny-dense", "uneven-moe", "hybrid-vl"])
def test_every_shard_of_a_size_class_holds_what_its_own_slices_hold(config):
    """``size_class`` lets ranks share a tally; each rank's bytes must still be those of its own slices, summed
    tensor by tensor (``rank_breakdown`` slices with the rank's real shard)."""
    built = {"uneven": _uneven_moe_config, "hybrid": _hybrid_vision_config}
    spec = spec_from_config(built[config]() if isinstance(config, str) else config, str(config))
    wm = weight_model(spec, "bf16", quant_from_choice(None))
    last = spec.num_layers - 1
    degrees = [(tp, ep, etp) for tp in (1, 2, 3, 4, 8) for ep in ((1, 3, 4, 8) if spec.is_moe else (1,))
               for etp in ((1, 2, 3) if spec.is_moe else (1,))]
    classes = set()
    for tp, ep, etp in degrees:
        for tp_rank in range(tp):
            for ep_rank in range(ep):
                for etp_rank in range(etp):
                    shard = Shard(tp, tp_rank, ep, ep_rank, etp, etp_rank)
                    own = sum(wm.rank_breakdown(0, last, True, True, shard).values())
                    assert wm.stage_tally(0, last, True, True, shard).bytes == own, shard
                    classes.add(wm.size_class(shard))
    if config != "hybrid":  # the sizes split unevenly, so ranks differ: more than one class per degree tuple
        assert len(classes) > len(degrees)
