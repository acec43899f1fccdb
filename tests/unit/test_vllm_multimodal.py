"""vLLM and a vision tower (engines/vllm_multimodal.py), arithmetic written out.

Qwen3-VL-8B-Instruct: vision d = 1,152, Iv = 4,304, 27 blocks, patch 16, merge 2 (unit 32 px), temporal patch 2,
3 deepstack levels, out hidden 4,096 = the text hidden. Processor budgets: images 16,777,216 px, videos 25,165,824.
"""

import pytest

from shardsim.core.layout import Layout, validate_layout
from shardsim.core.requests import Hardware, ServeRequest
from shardsim.core.tensors import Shard
from shardsim.core.workload import Workload
from shardsim.engines import vllm_multimodal as mm
from shardsim.engines.common import cublas_workspace_bytes
from shardsim.engines.registry import choose
from shardsim.engines.run import engine_report
from shardsim.errors import ShardsimError
from shardsim.presets import get_preset

GiB = 1 << 30
H100 = 85_017_624_576
VL8 = "Qwen3-VL-8B-Instruct"


def vllm(model, tp=1, pp=1, version=None, **knobs):
    spec = get_preset(model)
    request = ServeRequest(spec, validate_layout(spec, Layout(tp=tp, pp=pp)), Workload(dtype="bf16", quant=spec.quant),
                           Hardware("H100-SXM-80GB", H100, "9.0", None),
                           choose("vllm", {"engine_version": version, **knobs}))
    return engine_report(request, suggest_fix=False)


def test_tokens_per_item_follow_the_processor_budgets():
    spec = get_preset(VL8)
    assert mm.tokens_per_item(spec, 16_777_216) == 128 * 128            # 16,777,216 / 32² = 16,384 = 128 × 128
    assert mm.tokens_per_item(spec, 25_165_824 // 2, frames=2) == 12_288  # 12,582,912 / 1,024; 2 frames = 1 patch
    assert mm.tokens_per_item(spec, 401 * 1024) == 400  # 401 is prime: 1 × 401 is wider than 200:1, so 20 × 20


def test_profile_batch_and_outputs():
    spec = get_preset(VL8)
    limits = mm.parse_limits(None)
    p = mm.encoder_profile(spec, 1, "bf16", limits, "weights", 262_144, 1024, 8192)
    # budget max(8,192, 16,384) = 16,384 → one image item; outputs 16,384 × 4,096 × (1 + 3 levels) × 2 B
    assert (p.modality, p.items, p.output_bytes) == ("image", 1, 16_384 * 4_096 * 4 * 2)
    small = mm.encoder_profile(spec, 1, "bf16", limits, "weights", 262_144, 1024, 8192, image_max_pixels=980 * 1024)
    # the profile takes the modality with the most tokens per item: now the video (12,288 > 980)
    assert (small.modality, small.tokens_per_item, small.items) == ("video", 12_288, 1)
    small = mm.encoder_profile(spec, 1, "bf16", mm.parse_limits("video=0"), "weights", 262_144, 1024, 8192,
                               image_max_pixels=980 * 1024)
    # images only: 980 tokens (28 × 35) per image, 8,192 // 980 = 8 items
    assert (small.tokens_per_item, small.items) == (980, 8)
    videos_only = mm.encoder_profile(spec, 1, "bf16", mm.parse_limits("image=0"), "weights", 262_144, 1024, 8192)
    assert (videos_only.modality, videos_only.tokens_per_item) == ("video", 12_288)
    assert mm.encoder_profile(spec, 1, "bf16", mm.parse_limits("image=0,video=0"), "weights", 4096, 8, 8192) is None


def vision_numel(d=1152, iv=4304, depth=27, hidden=4096, levels=3, merge=4):
    """Qwen3-VL's vision tower, element counts written out (core/arch/vision.py's shapes)."""
    block = 4 * d + (3 * d * d + 3 * d) + (d * d + d) + (iv * d + iv) + (d * iv + d)
    md = merge * d
    merger = 2 * d + (md * md + md) + (hidden * md + hidden)
    deepstack = levels * (2 * md + (md * md + md) + (hidden * md + hidden))
    return d * 3 * 2 * 16 * 16 + d + 2304 * d + depth * block + merger + deepstack


def test_vision_bytes_whole_and_tp2_share():
    spec = get_preset(VL8)
    whole = mm.vision_bytes(spec, "bf16", spec.quant, Shard())
    assert whole == 2 * vision_numel()
    d, iv, md, hidden = 1152, 4304, 4 * 1152, 4096
    # TP2 halves qkv (weight and bias), proj.weight, fc1 (weight and bias), fc2.weight, and in each of the four
    # mergers fc1 (weight and bias) and fc2.weight; norms, position table, patch embedding and row biases stay whole
    halved = 27 * ((3 * d * d + 3 * d) + d * d + (iv * d + iv) + d * iv) + 4 * ((md * md + md) + hidden * md)
    assert mm.vision_bytes(spec, "bf16", spec.quant, Shard(tp=2, tp_rank=0)) == 2 * (vision_numel() - halved // 2)


def test_engine_terms_per_rank():
    base = vllm(VL8)
    text = vllm(VL8, limit_mm_per_prompt="image=0,video=0")   # the tower is not built (interfaces.py@v0.33.0)
    share = mm.vision_bytes(get_preset(VL8), "bf16", get_preset(VL8).quant, Shard())
    buffers = 3 * 8192 * 4096 * 2   # three deepstack levels × max_num_batched_tokens × hidden × bf16
    assert base.ranks[0].model_loading_bytes - text.ranks[0].model_loading_bytes == share + buffers
    skip = vllm(VL8, skip_mm_profiling=True)
    assert skip.ranks[0].model_loading_bytes == base.ranks[0].model_loading_bytes
    assert skip.ranks[0].activation_peak_bytes == text.ranks[0].activation_peak_bytes
    p = mm.encoder_profile(get_preset(VL8), 1, "bf16", mm.parse_limits(None), "weights", 262_144, 1024, 8192)
    workspace = cublas_workspace_bytes("9.0")        # added once, after the larger of the two runs
    lm = text.ranks[0].activation_peak_bytes         # the language model's run, workspace included
    # the encoder's own run, or its outputs held through the language model's run, whichever is larger
    assert base.ranks[0].activation_peak_bytes == max(p.forward_peak_bytes + workspace, p.output_bytes + lm)
    assert base.kv_cache_tokens < skip.kv_cache_tokens < text.kv_cache_tokens


def test_data_mode_and_stages_by_release():
    spec = get_preset(VL8)
    weights, data = vllm(VL8, tp=2), vllm(VL8, tp=2, mm_encoder_tp_mode="data")
    extra = mm.vision_bytes(spec, "bf16", spec.quant, Shard()) - mm.vision_bytes(spec, "bf16", spec.quant, Shard(tp=2))
    assert data.ranks[1].model_loading_bytes - weights.ranks[1].model_loading_bytes == extra
    # ≤ 0.32 every stage builds the tower; 0.33 with Model Runner V2 only the first
    old, new = vllm(VL8, tp=2, pp=2, version="0.28.0"), vllm(VL8, tp=2, pp=2, version="0.33.0")
    share = mm.vision_bytes(spec, "bf16", spec.quant, Shard(tp=2, tp_rank=0))
    assert old.ranks[2].model_loading_bytes - new.ranks[2].model_loading_bytes == share + 3 * 8192 * 4096 * 2


def test_refusals():
    with pytest.raises(ShardsimError, match="no vision tower"):
        vllm("8b", limit_mm_per_prompt="image=1")
    with pytest.raises(ShardsimError, match="accepted: image=N,video=N"):
        mm.parse_limits("audio=1")
    with pytest.raises(ShardsimError, match="accepted: weights, data"):
        vllm(VL8, mm_encoder_tp_mode="pipeline")


@pytest.mark.parametrize("name", ["vl-8b", "vl-30b-a3b", "3.6-35b-a3b"])
def test_vision_bytes_per_size_class_equal_every_ranks_own_sum(name):
    # memoised by the shard's size class (the lowest rank with the same shapes): every rank must read what summing
    # its own stored tensors gives — at TP 5 and 7 the tower's dims split unevenly, five different sizes over the ranks
    from shardsim.core.arch.vision import vision_tensors
    from shardsim.core.memory.weights import stored_tensors

    spec = get_preset(name)
    for tp in (1, 2, 3, 5, 7, 8, 12):
        for rank in range(tp):
            shard = Shard(tp=tp, tp_rank=rank)
            own = sum(st.bytes() for t in vision_tensors(spec) for st in stored_tensors(t, shard, spec, "bf16", spec.quant))
            assert mm.vision_bytes(spec, "bf16", spec.quant, shard) == own
