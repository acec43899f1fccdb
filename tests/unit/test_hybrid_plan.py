"""Hybrid plans per rank, the arithmetic written out: KV only on full-attention layers, the recurrent state per
sequence (conv + delta-rule memory) by TP degree and dtype, MTP drafting and text-only serving."""

from __future__ import annotations

import pytest

from shardsim.core.layout import Layout, validate_layout
from shardsim.core.memory.weights import total_weight_bytes
from shardsim.core.plan import Workload, plan
from shardsim.core.tensors import Part, mtp_tensors
from shardsim.errors import ShardsimError
from shardsim.presets import get_preset

BIG = 10 ** 15


def test_qwen3_next_tp1_kv_and_state():
    spec = get_preset("next-80b-a3b")
    r = plan(spec, Layout(), Workload(context=8192, batch=3), BIG).ranks[0]
    # 12 full-attention layers × K and V × 2 KV heads × 256 × 2 B = 24,576 B per token
    assert r.kv_bytes_per_token == 12 * 2 * 2 * 256 * 2 == 24_576
    # 36 Gated-DeltaNet layers × (conv (4 − 1) × (2·16·128 + 32·128) × 2 B + 32 heads × 128 × 128 × 2 B): no
    # mamba_ssm_dtype in Qwen3-Next's config, so the state takes the model's bf16
    per_layer = 3 * 8192 * 2 + 32 * 128 * 128 * 2
    assert r.state_bytes_per_sequence == 36 * per_layer == 39_518_208
    assert r.bytes.state == 3 * 39_518_208
    assert r.bytes.kv_cache == 24_576 * 8192 * 3


def test_qwen3_next_tp4_splits_the_state_and_replicates_one_kv_head():
    spec = get_preset("next-80b-a3b")
    r = plan(spec, Layout(tp=4), Workload(context=8192), BIG).ranks[0]
    assert r.kv_bytes_per_token == 12 * 2 * 1 * 256 * 2       # tp 4 > 2 KV heads: one head per rank
    assert r.state_bytes_per_sequence == 36 * (3 * 8192 // 4 * 2 + 32 // 4 * 128 * 128 * 2)
    # Qwen3.5-27B: tp 12 divides its 24 query heads and is a multiple of its 4 KV heads, but not its 16 key heads
    with pytest.raises(ShardsimError, match="linear-attention layers"):
        validate_layout(get_preset("3.5-27b"), Layout(tp=12))


def test_qwen35_state_follows_mamba_ssm_dtype_and_mtp_drafting_adds_its_layer():
    spec = get_preset("3.5-35b-a3b")
    base = plan(spec, Layout(), Workload(), BIG).ranks[0]
    # 30 linear layers: conv 3 × (2·2048 + 4096) × 2 B (bf16), memory 32 × 128 × 128 × 4 B (mamba_ssm_dtype fp32)
    assert base.state_bytes_per_sequence == 30 * (3 * 8192 * 2 + 32 * 128 * 128 * 4)
    assert base.kv_bytes_per_token == 10 * 2 * 2 * 256 * 2
    bf16 = plan(spec, Layout(), Workload(state_dtype="bf16"), BIG).ranks[0]
    assert bf16.state_bytes_per_sequence == 30 * (3 * 8192 * 2 + 32 * 128 * 128 * 2)
    drafted = plan(spec.served(speculative_tokens=2), Layout(), Workload(), BIG).ranks[0]
    # MTP: its full-attention layer's KV, its weights, and 2 more conv columns per linear layer
    assert drafted.kv_bytes_per_token == 11 * 2 * 2 * 256 * 2
    assert drafted.state_bytes_per_sequence == 30 * (5 * 8192 * 2 + 32 * 128 * 128 * 4)
    mtp_bytes = sum(t.numel for t in mtp_tensors(spec)) * 2
    assert drafted.bytes.weights - base.bytes.weights == mtp_bytes
    assert all(t.part is Part.MTP for t in mtp_tensors(spec))


def test_text_only_serving_drops_the_vision_tower():
    spec = get_preset("3.5-27b")
    with_vision = total_weight_bytes(spec)
    text_only = total_weight_bytes(spec.served(language_model_only=True))
    v = spec.vision  # 27 blocks of d 1152, Iv 4304; merger m·d = 4608 → H 5120
    d, iv, md = v.hidden_size, v.intermediate_size, 4 * v.hidden_size
    blocks = v.depth * (4 * d + 3 * d * d + 3 * d + d * d + d + iv * d + iv + d * iv + d)
    patch = d * 3 * 2 * 16 * 16 + d + v.num_position_embeddings * d
    merger = 2 * d + md * md + md + spec.hidden_size * md + spec.hidden_size
    assert with_vision - text_only == 2 * (blocks + patch + merger)
    with pytest.raises(ShardsimError, match="no vision tower"):
        get_preset("next-80b-a3b").served(language_model_only=True)


def test_the_cli_serves_mtp_drafting_and_text_only(capsys):
    import json

    from shardsim.cli import main

    assert main(["plan", "3.5-35b-a3b", "--speculative-tokens", "2", "--language-model-only", "--json"]) == 0
    rank = json.loads(capsys.readouterr().out)["ranks"][0]
    served = get_preset("3.5-35b-a3b").served(2, language_model_only=True)
    assert rank["bytes"]["weights"] == total_weight_bytes(served)
    assert rank["kv_bytes_per_token"] == 11 * 2 * 2 * 256 * 2            # 10 layers + the MTP layer
    assert main(["plan", "8b", "--speculative-tokens", "1"]) == 2
    assert "has no MTP head" in capsys.readouterr().err


def test_plan_help_lists_one_engines_knobs_at_a_time(capsys):
    from shardsim.cli import main

    main(["plan", "--help"])
    general = capsys.readouterr().out
    assert "--gpu-memory-utilization" not in general and "--engine vllm --help" in general
    main(["plan", "--engine", "vllm", "--help"])
    vllm = capsys.readouterr().out
    assert "--gpu-memory-utilization" in vllm and "--mamba-cache-mode" in vllm and "--mem-fraction-static" not in vllm


def test_hf_generate_keeps_kv_on_attention_layers_and_transformers_state():
    from shardsim.core.requests import Hardware, ServeRequest
    from shardsim.engines.registry import choose
    from shardsim.engines.run import engine_report

    spec = get_preset("3.5-27b")
    request = ServeRequest(spec, validate_layout(spec, Layout()), Workload(), Hardware("H200", 140 * 2 ** 30, "9.0"),
                           choose("hf", {"prompt_tokens": 1000, "generate_tokens": 24, "batch": 2}))
    rank = engine_report(request).ranks[0]
    # 16 full-attention layers × K and V × 4 KV heads × 256 × 2 B, 1,024 tokens × 2 sequences; 48 linear layers ×
    # transformers' state (4 conv columns × (2·16·128 + 48·128) × 2 B + 48 × 128 × 128 × 4 B fp32) × 2 sequences
    kv = 16 * 2 * 4 * 256 * 2 * 1024 * 2
    state = 48 * (4 * (2 * 2048 + 6144) * 2 + 48 * 128 * 128 * 4) * 2
    assert rank.kv_cache_bytes == kv + state


def test_review_scores_a_hybrid_by_its_shared_pool():
    from shardsim.capacity.evaluators import VllmEval
    from shardsim.capacity.records import Variant
    from shardsim.hardware import load_cluster

    spec = get_preset("3.5-35b-a3b")
    h100 = load_cluster("h100-1x8")
    layout = validate_layout(spec, Layout(tp=2))
    few, many = (VllmEval(Variant(spec, 32768, n, "checkpoint", spec.quant, "bf16"), 0.9) for n in (4, 4000))
    pool = few.score(h100, layout).note.report.max_concurrency        # sequences of 32,768 tokens the pool holds
    assert 4 < pool < 4000
    assert few.score(h100, layout).fits and not many.score(h100, layout).fits
    # the headroom is what the requests leave of the pool, in proportion
    rank = few.score(h100, layout).note.report.ranks[0]
    assert few.score(h100, layout).headroom_bytes == int(rank.available_kv_cache_bytes * (1 - 4 / pool))


def test_plan_prices_the_gated_deltanet_prefill_transient():
    from shardsim.core.memory.activations import activation_peak
    from shardsim.core.memory.deltanet_activations import gdn_prefill_bytes

    spec = get_preset("Qwen3.5-35B-A3B")
    lay = validate_layout(spec, Layout(tp=2))
    report = plan(spec, lay, Workload(context=8192, batch=1).checked(), 80 * 2**30)
    # Qwen3.5's config asks for an fp32 delta-rule state (mamba_ssm_dtype), so the gathered initial state is 4 B
    without = activation_peak(spec, 2, lay.etp, 8192, 1, True, False, True)
    gdn = gdn_prefill_bytes(spec, 2, 8192, 1, 2, 4)
    assert gdn > max(without.attention, without.mlp, without.logits)   # one 8k prefill: the GDN layer sets the peak
    assert report.ranks[0].bytes.activations == without.resident + gdn
