"""The Gated-DeltaNet layers' transient in vLLM (core/memory/deltanet_activations.py), arithmetic written out.

Qwen3-Next-80B-A3B: H 2,048; GDN 16 key heads, 32 value heads, head dims 128, fused (interleaved) projections;
MoE 512 experts, top-10, expert intermediate 512. Qwen3.5-35B-A3B: the same GDN dims with split (flat) projections,
256 experts, top-8, expert intermediate 512. T = 8,192 tokens, bf16 (2 B).
The profile's dummy forward has no attention metadata, so the chunked delta rule never runs in it; what runs
(0.11.1+): in_proj_qkvz / in_proj_ba, the layout copies, core_attn_out zeros, the gated norm, out_proj.
"""

import pytest

from shardsim.core.layout import Layout, validate_layout
from shardsim.core.memory.activations import activation_peak, activation_peak_bytes
from shardsim.core.memory.deltanet_activations import (gdn_prefill_bytes, gdn_profile_bytes, prefill_chunks,
                                                        projection_elements)
from shardsim.core.requests import Hardware, ServeRequest
from shardsim.core.workload import Workload
from shardsim.engines.registry import choose
from shardsim.engines.releases import resolve
from shardsim.engines.run import engine_report
from shardsim.engines.vllm import _forward_peak
from shardsim.presets import get_preset

T = 8192
GiB = 1 << 30


@pytest.fixture(scope="module")
def nxt():
    return get_preset("next-80b-a3b")


@pytest.fixture(scope="module")
def q35():
    return get_preset("qwen3.5-35b-a3b")


def test_qwen3_next_tp1_profile_transient(nxt):
    # per rank: K = 16 × 128 = 2,048, V = 32 × 128 = 4,096, vh = 32 value heads
    qkvz = 2 * 2048 + 2 * 4096   # in_proj_qkvz [T, 2K + 2V]              12,288
    ba = 2 * 32                  # in_proj_ba [T, 2·vh]                        64
    qk = 2 * 2048                # rearrange copies of q and k [T, K] each  4,096
    vz = 2 * 4096                # value / z reshape copies [T, vh, dv]      8,192
    b_a = 2 * 32                 # b / a reshape copies [T, vh]                 64
    cat = 2 * 2048 + 4096        # mixed_qkv = torch.cat(q, k, v)           8,192
    core = 4096                  # core_attn_out zeros [T, vh, dv]          4,096
    assert projection_elements(nxt, 1) == qkvz + ba + qk + vz + b_a + cat + core == 36_992
    norm = 4096                  # gated RMSNorm output [T·vh, dv]
    # then out_proj [T, H] (2,048) beats the norm's fp32 rstd [T·vh] (32 × 4 B): 36,992 + 4,096 + 2,048 elements
    per_token = (36_992 + norm + 2048) * 2
    assert per_token == 86_272
    assert gdn_profile_bytes(nxt, 1, T, "projections") == T * per_token == 706_740_224      # 0.26+
    # up to 0.25 the decoder layer's output buffer [T, H] is alive too: + 8,192 × 2,048 × 2 B
    assert gdn_profile_bytes(nxt, 1, T, "buffered") == 706_740_224 + 33_554_432 == 740_294_656
    # 0.10.2–0.11.0: the layer returns before in_proj; only that buffer
    assert gdn_profile_bytes(nxt, 1, T, "skipped") == 33_554_432


def test_qwen3_next_tp1_gdn_sets_the_profiled_peak_over_the_moe(nxt):
    # MoE: router T·E·4 + top-k T·k·8 + fused-MoE caches T·k·(3·Im + H)·2
    moe = T * (512 * 4 + 10 * 8 + 10 * (3 * 512 + 2048) * 2)
    assert moe == 604_635_136
    p = activation_peak(nxt, 1, 1, T, 8, True, False, False, gdn="projections")
    assert (p.mlp, p.linear_attention) == (moe, 706_740_224)
    assert p.peak == 2 * T * 2048 * 2 + 706_740_224          # resident 67,108,864 + the GDN transient
    # without a GDN stage (gdn=None) nothing changes: the MoE sets it
    assert activation_peak(nxt, 1, 1, T, 8, True, False, False).peak == 67_108_864 + moe
    assert activation_peak_bytes(nxt, 1, 1, T, 8, True, False, False, gdn="buffered") == 67_108_864 + 740_294_656


def test_qwen3_next_tp4_profile_transient_stays_below_the_moe(nxt):
    # per rank: kh = 4, K = 512, V = 1,024, vh = 8
    qkvz, ba = 2 * 512 + 2 * 1024, 2 * 8                                        # 3,072 + 16
    copies = 2 * 512 + 2 * 1024 + 2 * 8 + (2 * 512 + 1024)                        # 1,024 + 2,048 + 16 + 2,048
    core = 1024
    assert projection_elements(nxt, 4) == qkvz + ba + copies + core == 9_248
    per_token = (9_248 + 1024 + 2048) * 2                                          # + norm output + out_proj [T, H]
    assert gdn_profile_bytes(nxt, 4, T, "projections") == T * per_token == 201_850_880
    moe = T * (512 * 4 + 10 * 8 + 10 * (3 * 128 + 2048) * 2)                       # experts split over etp 4
    p = activation_peak(nxt, 4, 4, T, 8, True, False, False, gdn="projections")
    assert (p.mlp, p.linear_attention) == (moe, 201_850_880) and moe == 415_891_456
    assert p.peak == 67_108_864 + moe


def test_one_key_head_per_rank_splits_without_copies(nxt):
    # TP16: kh = 1, the interleaved split is viewable; only torch.cat copies: 2K + V = 256 + 256
    assert projection_elements(nxt, 16) == (2 * 128 + 2 * 256) + 2 * 2 + (2 * 128 + 256) + 256


def test_qwen35_tp1_profile_transient_flat_layout(q35):
    # split projections: q, k, v, z are views of in_proj_qkvz's output; no layout copies
    assert projection_elements(q35, 1) == (2 * 2048 + 2 * 4096) + 2 * 32 + 4096 == 16_448
    # at the norm: z.reshape(-1, dv) of the strided view copies [T, V] (4,096) plus rstd fp32 32 × 4 B,
    # which beats out_proj's 2,048 × 2 B: (16,448 + 4,096 norm output) × 2 + 4,096 × 2 + 128
    per_token = (16_448 + 4096) * 2 + 4096 * 2 + 128
    assert per_token == 49_408
    assert gdn_profile_bytes(q35, 1, T, "projections") == T * per_token == 404_750_336
    moe = T * (256 * 4 + 8 * 8 + 8 * (3 * 512 + 2048) * 2)
    p = activation_peak(q35, 1, 1, T, 8, True, False, False, gdn="projections")
    assert (p.mlp, p.linear_attention) == (moe, 404_750_336) and moe == 478_674_944
    assert p.peak == 67_108_864 + moe                                               # the MoE still sets it


def test_release_forms():
    forms = {v: resolve("vllm", v).rules.gdn_profile for v in ("0.10.2", "0.11.0", "0.11.1", "0.25.1", "0.26.0",
                                                                 "0.33.0")}
    assert forms == {"0.10.2": "skipped", "0.11.0": "skipped", "0.11.1": "buffered", "0.25.1": "buffered",
                     "0.26.0": "projections", "0.33.0": "projections"}


def _vllm(spec, version, tp):
    hw = Hardware("B200-SXM-180GB", int(178 * GiB), "10.0", None)   # room for bf16 weights at TP1
    request = ServeRequest(spec, validate_layout(spec, Layout(tp=tp)), Workload(dtype="bf16", quant=spec.quant), hw,
                           choose("vllm", {"engine_version": version, "max_num_seqs": 8}))
    return engine_report(request, suggest_fix=False)


def test_vllm_report_charges_the_gdn_transient_at_tp1(nxt):
    # 8 sequences: the dummy sampler is small, the forward sets the activation; per release, TP1, 8,192 tokens
    act = {v: _vllm(nxt, v, 1).ranks[0].activation_peak_bytes for v in ("0.11.0", "0.11.1", "0.26.0")}
    assert act["0.11.1"] - act["0.11.0"] == 740_294_656 - 604_635_136      # buffered GDN replaces the MoE
    assert act["0.26.0"] - act["0.11.0"] == 706_740_224 - 604_635_136      # no decoder buffer from 0.26
    # TP4: the MoE stays the largest, the GDN form does not matter …
    assert _vllm(nxt, "0.11.0", 4).ranks[0].activation_peak_bytes == _vllm(nxt, "0.11.1", 4).ranks[0].activation_peak_bytes
    # … but from 0.14 the fused-MoE workspaces stay allocated (WorkspaceManager) under the dummy sampler:
    # workspace1 [8,192, 10, max(512/4, 2,048)] + workspace2 [8,192, 10, max(2·512/4, 2,048)] bf16 = 640 MiB, plus
    # the sampler (8 × 151,936 logits × 14 B + 2 × 2,048 × (8,192 + 16) hidden) and cuBLAS' 33 MiB
    workspaces = 2 * 8192 * 10 * 2048 * 2
    sampler = 8 * 151_936 * 14 + 2 * 2048 * (8192 + 2 * 8)
    assert _vllm(nxt, "0.26.0", 4).ranks[0].activation_peak_bytes == workspaces + sampler + 33 * 2**20 == 756_328_448
    assert _vllm(nxt, "0.26.0", 1).rules["gdn_profile"] == "projections"


def test_model_runner_v2_profile_counts_the_gdn_layer(nxt):
    # skip_attn=True still runs the GDN projections (their core op returns on the missing metadata)
    assert _forward_peak(nxt, Layout(tp=1), T, 8, True, False, True, "projections") == 67_108_864 + 706_740_224
    assert _forward_peak(nxt, Layout(tp=1), T, 8, True, False, True) == 67_108_864 + 604_635_136


def test_prefill_chunks_follow_the_dummy_batch():
    assert prefill_chunks(8192, 1) == (1, 128)          # one sequence: 8,192 / 64
    assert prefill_chunks(8192, 256) == (256, 256)      # 32 tokens each: one chunk each
    assert prefill_chunks(8192, 300) == (300, 301)      # 27 each, the last 27 + 92 = 119 tokens: 2 chunks
    assert prefill_chunks(100, 1024) == (100, 100)      # never more sequences than tokens


def test_real_prefill_transient_qwen3_next_tp1(nxt):
    # not in the profile: a real chunked prefill (Triton/FLA @v0.33.0), one sequence of 8,192 tokens, peak at
    # chunk_fwd_o; per token: Part 1 (36,992 el) + conv out (2K + V) + q, k, v (2K + V) + g, beta fp32
    part1 = 36_992 * 2
    conv_prep = 2 * 8192 * 2 + 32 * 4 * 2
    chunk = 32 * 4 + 32 * 64 * 2 + 32 * (128 + 3 * 128) * 2        # g cumsum, Ai bf16, w / u / v_new / o
    per_token = part1 + conv_prep + chunk
    assert per_token == 73_984 + 33_024 + 36_992
    h = 128 * 32 * 128 * 128 * 2    # h: 128 chunks × 32 value heads × 128 × 128 × 2 B
    states = 1 * 32 * 128 * 128 * (2 + 4)                          # gathered bf16 initial state + fp32 final state
    assert gdn_prefill_bytes(nxt, 1, T, 1) == T * per_token + h + states == 1_317_011_456
    # 256 sequences of 32 tokens: 256 chunks and 256 states
    assert gdn_prefill_bytes(nxt, 1, T, 256) == T * per_token + 2 * h + 256 * states
    # TP4: a quarter of every head-split term; Part 1 is 9,248 el
    per_token4 = 9_248 * 2 + 2 * 2048 * 2 + 8 * 4 * 2 + 8 * 4 + 8 * 64 * 2 + 8 * 512 * 2
    assert gdn_prefill_bytes(nxt, 4, T, 1) == T * per_token4 + 128 * 8 * 16384 * 2 + 8 * 16384 * 6


def test_no_gdn_term_for_a_dense_model():
    spec = get_preset("8b")
    assert activation_peak(spec, 1, 1, T, 8, False, True, False, gdn="projections").linear_attention == 0
    with pytest.raises(ValueError):
        gdn_profile_bytes(get_preset("next-80b-a3b"), 1, T, "nonsense")
