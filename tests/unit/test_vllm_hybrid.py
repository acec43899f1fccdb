"""vLLM's shared pool for hybrid Gated-DeltaNet models (engines/vllm_hybrid.py), arithmetic written out.

Sources: /work/research/engines/VLLM_HYBRID.md (read from the vLLM wheels) and LOGS.md (published start-up logs).
Qwen3-Next-80B-A3B: 48 layers, 12 full attention (2 KV heads × 256) and 36 Gated-DeltaNet (16 key heads, 32 value
heads, head dims 128, conv kernel 4): conv_dim = 128·16·2 + 128·32 = 8,192.
"""

import pytest

from shardsim.core.layout import Layout, validate_layout
from shardsim.core.requests import Hardware, ServeRequest
from shardsim.core.workload import Workload
from shardsim.engines.registry import choose
from shardsim.engines.run import engine_report
from shardsim.errors import ShardsimError
from shardsim.presets import get_preset

GiB = 1 << 30
H200 = int(139.8 * GiB)


def vllm(model, version, tp=1, cc="9.0", **knobs):
    spec = get_preset(model)
    request = ServeRequest(spec, validate_layout(spec, Layout(tp=tp)), Workload(dtype="bf16", quant=spec.quant),
                           Hardware("H200-SXM-141GB", H200, cc, None),
                           choose("vllm", {"engine_version": version, **knobs}))
    return engine_report(request, suggest_fix=False)


@pytest.mark.parametrize("tp, page, attn, block, padding", [
    # state page = 3 × 8,192/tp × 2 B (conv) + 32/tp × 128 × 128 × 2 B (temporal)
    (1, 49_152 + 1_048_576, 2_048, 544, 16_384 / 1_097_728),          # 16·cdiv(1,097,728, 16·2,048) = 16·34
    (2, 24_576 + 524_288, 1_024, 544, 8_192 / 548_864),               # 2 KV heads / 2 = 1 per rank
    (4, 12_288 + 262_144, 1_024, 272, 4_096 / 274_432),               # 1 KV head replicated: 16·cdiv(274,432, 16,384) = 16·17
    (8, 6_144 + 131_072, 1_024, 144, (144 * 1_024 - 137_216) / 137_216),  # 16·cdiv(137,216, 16,384) = 16·9; 10,240 B
])
def test_qwen3_next_block_and_padding_by_tp(tp, page, attn, block, padding):
    r = vllm("next-80b-a3b", "0.19.0", tp=tp)
    assert r.state_page_bytes == page
    assert r.attention_block_size == block
    assert r.state_page_padding == pytest.approx(padding)
    assert r.kv_bytes_per_token == 12 * attn  # TP1: 12 × 2·2·256·2 B = 24,576 B
    assert f"{100 * r.state_page_padding:.2f}" == {1: "1.49", 2: "1.49", 4: "1.49", 8: "7.46"}[tp]


def test_newest_release_on_sm90_aligns_the_block_to_flashinfers_gdn_checkpoints():
    # 0.33 with prefix caching on by default (0.26+) → align mode; FlashInfer's GDN prefill on sm90 → alignment
    # lcm(16, 64) = 64: 64·cdiv(1,097,728, 64·2,048) = 64·9 = 576 tokens, padding 81,920 / 1,097,728 = 7.46 %;
    # k = 2 (align) + 1 prefill checkpoint block per state group. Derived from code, not observed in a log.
    r = vllm("next-80b-a3b", "0.33.0", tp=2, max_num_seqs=8, max_model_len=65_536)
    assert r.knobs["mamba_cache_mode"] == "align" and r.knobs["enable_prefix_caching"] is True
    assert r.attention_block_size == 576 and f"{100 * r.state_page_padding:.2f}" == "7.46"
    # a request: cdiv(65,536, 576) = 114 attention blocks + 3 state groups × 3
    assert r.max_concurrency == pytest.approx(r.state_blocks / (114 + 9))
    # on sm100 (no FlashInfer GDN prefill assumed, CUDA runtime unknown): alignment 16 → 544
    assert vllm("next-80b-a3b", "0.33.0", tp=2, cc="10.0", max_num_seqs=8).attention_block_size == 544


def test_qwen35_fp32_temporal_state_from_0_17_and_refused_before():
    # Qwen3.5-35B-A3B TP1: conv 3 × 8,192 × 2 B = 49,152; temporal 32 × 128 × 128 × 4 B (config mamba_ssm_dtype
    # float32) = 2,097,152 → page 2,146,304; attention 2·2·256·2 = 2,048 B/token: 16·cdiv(2,146,304, 32,768) = 16·66
    new = vllm("3.5-35b-a3b", "0.17.0")
    assert new.state_page_bytes == 2_146_304 and new.attention_block_size == 1_056
    assert new.state_page_padding == pytest.approx(16_384 / 2_146_304)  # 0.76 %
    assert new.kv_bytes_per_token == 10 * 2_048
    forced = vllm("3.5-35b-a3b", "0.17.0", mamba_ssm_cache_dtype="bf16")  # the user's value wins
    assert forced.state_page_bytes == 1_097_728 and forced.attention_block_size == 544
    # 0.16: both states in the model dtype (bf16), and Qwen3.5 is not in the registry yet
    old = vllm("3.5-35b-a3b", "0.16.0")
    assert old.state_page_bytes == 49_152 + 1_048_576 and old.attention_block_size == 544
    assert not old.starts
    assert old.refusal == "vLLM 0.16.0 does not support Qwen3_5MoeForConditionalGeneration (added in 0.17.0)"
    assert vllm("next-80b-a3b", "0.10.1").refusal == ("vLLM 0.10.1 does not support Qwen3NextForCausalLM "
                                                      "(added in 0.10.2)")


def test_issue_26646_qwen3_next_fp8_kv():
    # vLLM #26646 (v0.11-era): "GPU KV cache size: 90,048 tokens", "Maximum concurrency for 215,040 tokens per
    # request: 1.66x". fp8 KV: 2·2·256·1 = 1,024 B/token → block 16·cdiv(1,097,728, 16,384) = 16·67 = 1,072.
    # The log does not give the available memory; the pool of 339 blocks is 339 × 12 layers × 1,072·1,024 B.
    r = vllm("next-80b-a3b", "0.11.0", kv_cache_dtype="fp8", max_model_len=215_040,
             kv_cache_memory_bytes=339 * 12 * 1_072 * 1_024)
    assert r.attention_block_size == 1_072 and r.state_blocks == 339
    assert r.kv_cache_tokens == 339 // 4 * 1_072 == 90_048          # num_blocks // 4 groups × block (≤ 0.20.0)
    assert r.max_concurrency == 339 / (201 + 3)                    # cdiv(215,040, 1,072) = 201, + 3 groups × 1
    assert f"{r.max_concurrency:.2f}" == "1.66"


def test_club_3090_652_qwen36_fp8_kv_prefix_caching_0_24():
    # club-3090 #652, vLLM 0.24.0, kv_cache_dtype fp8, enable_prefix_caching, max_num_seqs 1, max_model_len 131,072:
    # "Available KV cache memory: 6.01 GiB", "GPU KV cache size: 569,878 tokens", "Maximum concurrency …: 4.35x".
    # page 49,152 + 2,097,152 = 2,146,304 = 16·cdiv(2,146,304, 16,384)·1,024 = 2,096 tokens · 1,024 B (no padding);
    # 4 groups of 10 layers: ⌊6.01 GiB / 2,146,304 / 10⌋ = 300 blocks; align mode: 2 blocks per state group,
    # a request = cdiv(131,072, 2,096) + 3 × 2 = 63 + 6 = 69; tokens = int(300 / 69 × 131,072) (0.20.1+).
    r = vllm("3.6-35b-a3b", "0.24.0", kv_cache_dtype="fp8", enable_prefix_caching=True, max_num_seqs=1,
             max_model_len=131_072, kv_cache_memory_bytes=int(6.01 * GiB))
    assert r.attention_block_size == 2_096 and r.state_page_padding == 0
    assert r.state_blocks == 300
    assert r.max_concurrency == 300 / 69 and f"{r.max_concurrency:.2f}" == "4.35"
    assert r.kv_cache_tokens == int(300 / 69 * 131_072) == 569_878
    assert r.state_bytes_per_sequence == 3 * 2 * 10 * 2_146_304
    assert r.starts


def test_tokens_formula_changes_at_0_20_1_and_max_num_seqs_refusal():
    # TP2, bf16: block 544, page 544 × 1,024 = 557,056 B, 12 layers per group; a pool of 100 blocks.
    pool = 100 * 12 * 557_056
    knobs = {"kv_cache_memory_bytes": pool, "max_model_len": 8_192, "max_num_seqs": 256}
    old = vllm("next-80b-a3b", "0.20.0", tp=2, **knobs)
    assert old.state_blocks == 100 and old.kv_cache_tokens == 100 // 4 * 544 == 13_600
    new = vllm("next-80b-a3b", "0.20.1", tp=2, **knobs)
    assert new.kv_cache_tokens == int(100 / (16 + 3) * 8_192) == 43_115   # cdiv(8,192, 544) = 16
    assert new.refusal == old.refusal == (
        "ValueError: max_num_seqs (256) exceeds available Mamba cache blocks (100). Each decode sequence requires one "
        "Mamba cache block, so CUDA graph capture cannot proceed. Please lower max_num_seqs to at most 100 or "
        "increase gpu_memory_utilization.")
    assert vllm("next-80b-a3b", "0.20.1", tp=2, enforce_eager=True, **knobs).starts  # no full CUDA graphs
    capped = vllm("next-80b-a3b", "0.19.0", tp=2, **knobs)  # 0.18–0.19: capture sizes capped, a warning
    assert capped.starts and any("caps the CUDA-graph capture sizes at the 100" in n for n in capped.notes)


def test_knobs_refused_where_they_do_nothing():
    with pytest.raises(ShardsimError, match="--mamba-cache-mode does nothing for Qwen3-32B"):
        vllm("32b", "0.24.0", mamba_cache_mode="align")
    with pytest.raises(ShardsimError, match="--mamba-ssm-cache-dtype 'fp64' is not known"):
        vllm("next-80b-a3b", "0.24.0", tp=2, mamba_ssm_cache_dtype="fp64")
    r = vllm("next-80b-a3b", "0.14.0", tp=2, mamba_cache_mode="align")
    assert r.refusal == "--mamba-cache-mode does not exist in vLLM 0.14.0 (added in 0.15.0)"
    dense = vllm("32b", "0.24.0").to_dict()
    assert "attention_block_size" not in dense and "mamba_cache_mode" not in dense["knobs"]
    assert "hybrid_archs" not in dense["rules"]
