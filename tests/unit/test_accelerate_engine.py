"""``--engine accelerate``: device_map="auto" placements worked out by hand from the config numbers.

Layer bytes (bf16) are spelled out from config.json, independently of shardsim's tensor inventory:
a dense Qwen3 decoder layer holds q [heads·hd, h], k and v [kv·hd, h], o [h, heads·hd], gate/up [i, h], down [h, i],
two RMSNorms of h and q_norm/k_norm of hd. The rotary embedding holds two fp32 buffers of hd/2 (inv_freq and
original_inv_freq), which transformers counts.
"""

from __future__ import annotations

import pytest

from shardsim.core.memory.weights import total_weight_bytes
from shardsim.engines.accelerate import (
    clean_device_map,
    predict_accelerate,
    predict_device_map,
)
from shardsim.errors import ShardsimError
from shardsim.presets import get_preset
from shardsim.units import GiB


def dense_layer_bytes(h: int, i: int, heads: int, kv: int, hd: int) -> int:
    params = heads * hd * h + 2 * kv * hd * h + h * heads * hd + 3 * i * h + 2 * h + 2 * hd
    return 2 * params


# Qwen3-0.6B: hidden 1024, intermediate 3072, 16 heads, 8 KV heads, head_dim 128, vocab 151936, 28 layers, tied.
L06 = dense_layer_bytes(1024, 3072, 16, 8, 128)
EMBED06 = 2 * 151936 * 1024
ROTARY = 2 * 64 * 4
TOTAL06 = EMBED06 + 28 * L06 + 2 * 1024 + ROTARY
# Qwen3-8B: hidden 4096, intermediate 12288, 32 heads, 8 KV heads, head_dim 128, vocab 151936, 36 layers, untied.
L8 = dense_layer_bytes(4096, 12288, 32, 8, 128)
EMBED8 = 2 * 151936 * 4096
TOTAL8 = 2 * EMBED8 + 36 * L8 + 2 * 4096 + ROTARY


def layers(first: int, last: int, device) -> dict:
    return {f"model.layers.{n}": device for n in range(first, last + 1)}


def test_hand_sizes_agree_with_the_inventory():
    assert L06 == 31_461_888 and TOTAL06 == 1_192_100_352
    assert TOTAL06 == total_weight_bytes(get_preset("0.6b")) + ROTARY
    assert TOTAL8 == total_weight_bytes(get_preset("8b")) + ROTARY


def test_06b_on_two_gpus_balances_by_the_embedding():
    """per_gpu = total // 2 + int(1.25 × embedding) caps GPU 0; GPU 0 keeps one layer's room in reserve."""
    cap0 = TOTAL06 // 2 + int(1.25 * EMBED06)
    assert cap0 == 985_006_336
    on_gpu0 = (cap0 - L06 - EMBED06) // L06  # embed + k layers + a layer in reserve ≤ cap0
    assert on_gpu0 == 20
    r = predict_device_map(get_preset("0.6b"), "bf16", None, {0: 10 * GiB, 1: 10 * GiB, "cpu": 512 * GiB})
    assert r.max_memory[0] == cap0 and r.max_memory[1] == 10 * GiB
    assert r.device_map == {"model.embed_tokens": 0, "lm_head": 0, **layers(0, 19, 0), **layers(20, 27, 1),
                            "model.norm": 1, "model.rotary_emb": 1}
    assert r.device_bytes == {0: EMBED06 + 20 * L06, 1: 8 * L06 + 2048 + ROTARY}
    assert r.device_layers == {0: tuple(range(20)), 1: tuple(range(20, 28))}
    assert not r.offloaded


def test_06b_spills_to_cpu_when_the_gpus_are_small():
    """GPU 0 at 600 MB holds embed + 8 layers + a layer's reserve, GPU 1 at 300 MB nine layers, cpu the rest."""
    r = predict_device_map(get_preset("0.6b"), "bf16", None, {0: 600_000_000, 1: 300_000_000, "cpu": 10 * GiB})
    assert (600_000_000 - L06 - EMBED06) // L06 == 8 and 300_000_000 // L06 == 9
    assert r.device_map == {"model.embed_tokens": 0, "lm_head": 0, **layers(0, 7, 0), **layers(8, 16, 1),
                            **layers(17, 27, "cpu"), "model.norm": "cpu", "model.rotary_emb": "cpu"}
    assert r.device_bytes == {0: EMBED06 + 8 * L06, 1: 9 * L06, "cpu": 11 * L06 + 2048 + ROTARY}
    assert {p.device for p in r.offloaded} == {"cpu"}


def test_without_cpu_memory_it_goes_to_disk():
    r = predict_device_map(get_preset("0.6b"), "bf16", None, {0: 600_000_000, 1: 300_000_000})
    assert r.device_map["model.layers.17"] == "disk" and r.device_map["model.norm"] == "disk"
    assert r.device_bytes["disk"] == 11 * L06 + 2048 + ROTARY


def test_one_gpu_folds_to_the_whole_model():
    r = predict_device_map(get_preset("0.6b"), "bf16", None, {0: 80 * GiB, "cpu": 64 * GiB})
    assert r.device_map == {"": 0} and r.device_bytes == {0: TOTAL06}


def test_8b_untied_lm_head_is_reserved_and_lands_last():
    """Untied 8B: embedding and lm_head tie as the largest layer, so GPU 0 keeps an lm_head's room free."""
    cap0 = TOTAL8 // 2 + int(1.25 * EMBED8)
    assert (cap0 - EMBED8 - EMBED8) // L8 == 18
    r = predict_device_map(get_preset("8b"), "bf16", None, {0: 80 * GiB, 1: 80 * GiB, "cpu": 512 * GiB})
    assert r.device_map == {"model.embed_tokens": 0, **layers(0, 17, 0), **layers(18, 35, 1), "model.norm": 1,
                            "model.rotary_emb": 1, "lm_head": 1}
    assert r.device_bytes == {0: EMBED8 + 18 * L8, 1: 18 * L8 + 2 * 4096 + ROTARY + EMBED8}


def test_8b_on_eight_gpus_leaves_two_empty():
    """per_gpu = total/8 + 1.25 × lm_head caps each GPU at ~3.6 GB: 2 + 9 + 9 + 9 + 7 layers, lm_head alone on
    GPU 5, GPUs 6 and 7 unused — balanced, as transformers means it."""
    per_gpu = TOTAL8 // 8 + int(1.25 * EMBED8)
    assert (per_gpu - EMBED8 - EMBED8) // L8 == 2 and per_gpu // L8 == 9
    assert 7 * L8 + 2 * 4096 + ROTARY + EMBED8 > per_gpu
    r = predict_device_map(get_preset("8b"), "bf16", None, {i: 80 * GiB for i in range(8)})
    counts = {d: len(v) for d, v in r.device_layers.items()}
    assert counts == {0: 2, 1: 9, 2: 9, 3: 9, 4: 7}
    assert r.device_map["lm_head"] == 5 and r.device_bytes[5] == EMBED8
    assert r.device_bytes[6] == r.device_bytes[7] == 0


def test_sequential_fills_gpu_0_first():
    r = predict_device_map(get_preset("0.6b"), "bf16", None, {0: 80 * GiB, 1: 80 * GiB}, mode="sequential")
    assert r.device_map == {"": 0}


def test_clean_device_map_folds_shared_devices():
    dm = {"model.embed_tokens": 0, "model.layers.0": 0, "model.layers.1": 1, "model.layers.10": 1,
          "model.norm": 1, "lm_head": 1}
    assert clean_device_map(dict(dm)) == dm
    assert clean_device_map({"a.x": 0, "a.y": 0, "b": 1}) == {"b": 1, "a": 0}


def test_engine_report_refuses_offload_unless_allowed():
    spec = get_preset("0.6b")
    mem = {0: 600_000_000, 1: 300_000_000, "cpu": 10 * GiB}
    refused = predict_accelerate(spec, 2, 80 * GiB, max_memory=mem)
    assert not refused.starts and "cpu" in refused.refusal
    assert [r.model_loading_bytes for r in refused.ranks] == [EMBED06 + 8 * L06, 9 * L06]
    assert [r.layers for r in refused.ranks] == [8, 9]
    allowed = predict_accelerate(spec, 2, 80 * GiB, max_memory=mem, allow_offload=True)
    assert allowed.starts and allowed.refusal is None and any("cpu" in n for n in allowed.notes)


def test_engine_report_without_max_memory_uses_free_memory():
    r = predict_accelerate(get_preset("8b"), 2, 80 * GiB)
    assert r.starts and r.engine == "accelerate" and len(r.ranks) == 2
    assert sum(x.model_loading_bytes for x in r.ranks) == TOTAL8
    assert r.knobs["max_memory_given"] is False


@pytest.mark.parametrize("mem", [{"gpu0": 1}, {0: -1}, {0: "80GB"}, {True: 1}, {}])
def test_bad_max_memory_is_refused(mem):
    with pytest.raises(ShardsimError):
        predict_device_map(get_preset("0.6b"), "bf16", None, mem)


def test_bad_mode_and_gpu_count_are_refused():
    with pytest.raises(ShardsimError):
        predict_device_map(get_preset("0.6b"), "bf16", None, {0: GiB}, mode="fastest")
    with pytest.raises(ShardsimError):
        predict_accelerate(get_preset("0.6b"), 0, 80 * GiB)
