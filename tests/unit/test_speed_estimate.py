"""``shardsim speed 8b --gpu h100 --engine vllm --input-tokens 1024 --output-tokens 256`` at concurrency 1 and 64,
and at TP 2, derived by hand from Qwen3-8B's shapes, the H100's datasheet figures, NCCL's cost model and the fitted
values of the table — then held against the model's figures (and their ratios)."""

from __future__ import annotations

import pytest

from shardsim.cli import build
from shardsim.speed.estimate import SpeedRequest, SpeedWorkload, estimate
from shardsim.speed.fitted import speed_fit

FIT = speed_fit("vllm")
ETA_C, ETA_M = FIT.compute_efficiency, FIT.memory_efficiency
STEP, REQUEST, SEQ = FIT.step_overhead_ms / 1e3, FIT.ttft_overhead_ms / 1e3, FIT.seq_overhead_us / 1e6
LAYER = FIT.layer_overhead_us / 1e6  # per layer and step (Qwen3-8B has no MoE layer)
PEAK, BW = 989.4e12, 3350e9  # H100 SXM: bf16 dense FLOP/s and HBM B/s (cluster_specs/gpus.yaml)
I, O = 1024, 256

# Qwen3-8B: 36 layers, hidden 4,096, MLP 12,288, 32 query / 8 KV heads of 128, vocabulary 151,936, untied.
# One layer's matrices: q 4096², k and v 1024·4096, o 4096², gate/up/down 12288·4096 → 192,937,984 elements;
# its norms 2·4096 + 2·128. Bytes read per step at TP 1: (36·(192,937,984 + 8,448) + 4,096 + 151,936·4,096)·2.
TP1 = dict(
    weights=(36 * (192_937_984 + 8_448) + 4_096 + 151_936 * 4_096) * 2,  # 15,136,811,008 B
    flops_token=2 * 36 * 192_937_984,  # 13,891,534,848
    lm_head=2 * 4_096 * 151_936,
    act_token=36 * 2 * (8192 + 5120 + 5120 + 8192 + 3 * 16384),  # each matmul's input + output, bf16
    flops_key=4 * 32 * 128 * 36,  # QKᵀ and PV per key, all layers
    kv_token=36 * 2 * 8 * 128 * 2,  # K + V, bf16
    logits_seq=151_936 * 4, embed_token=4_096 * 2, tp=1,
)
# TP 2: every matrix halves (KV heads 4 per rank, vocabulary 75,968 per rank); norms stay whole.
TP2 = dict(
    weights=(36 * (192_937_984 // 2 + 8_448) + 4_096 + 75_968 * 4_096) * 2,  # 7,568,713,728 B
    flops_token=36 * 192_937_984, lm_head=2 * 4_096 * 75_968,
    act_token=36 * 2 * (6144 + 4608 + 4608 + 6144 + 3 * 10240), flops_key=4 * 16 * 128 * 36,
    kv_token=36 * 2 * 4 * 128 * 2, logits_seq=75_968 * 4, embed_token=4_096 * 2, tp=2,
)


def nccl(steps: int, ratio: float, nbytes: float, ll_share: float) -> float:
    """NCCL's ring time on NVLink 450 GB/s (900 both ways / 2): the faster of LL (3.6 µs + 0.47 µs a step, a share
    of the bandwidth) and Simple (8.4 µs + 3.4 µs a step)."""
    ll = (3.6 + steps * 0.47) * 1e-6 + nbytes / (450e9 * ll_share * ratio)
    simple = (8.4 + steps * 3.4) * 1e-6 + nbytes / (450e9 * ratio)
    return min(ll, simple)


FULL_GRAPH_MAX = 512
"""vLLM (newest) on an H100: max_num_seqs 1,024, max_num_batched_tokens 8,192; capture sizes up to
min(2 · 1,024, 512, 8,192) = 512 (max_cudagraph_capture_size), FULL decode graphs for every size ≤ 1,024: a step of
at most 512 decodes alone replays one FULL graph."""


def step(m: dict, d: float, prompt: float, done: float) -> float:
    """One step: d decodes attending I + O/2 = 1,152 keys, ``prompt`` prompt tokens attending (I + 1)/2 keys,
    ``done`` prompts sampled; the roofline of each op group, the collectives, the overheads per step, per layer
    (36; none in a step of at most 512 decodes alone, one FULL CUDA graph) and per sampled sequence."""
    tokens, sampled = d + prompt, d + done
    matmul = max((tokens * m["flops_token"] + sampled * m["lm_head"]) / (PEAK * ETA_C),
                 (m["weights"] + tokens * m["act_token"]) / (BW * ETA_M))
    keys = d * 1152 + prompt * (I + 1) / 2
    attention = max(keys * m["flops_key"] / (PEAK * ETA_C), (d * 1152 + tokens) * m["kv_token"] / (BW * ETA_M))
    other = (tokens * m["embed_token"] + sampled * m["logits_seq"]) / (BW * ETA_M)
    comm = 0.0
    if m["tp"] == 2:  # 2 all-reduces a layer + the embedding's; the sampled logits gathered
        comm = 73 * nccl(2, 1.0, tokens * 4_096 * 2, 1 / 4) + nccl(1, 2.0, sampled * 151_936 * 2, 1 / 3)
    floor = 0.0 if prompt == 0 and d <= FULL_GRAPH_MAX else 36 * LAYER
    return matmul + attention + other + comm + STEP + floor + sampled * SEQ


def by_hand(m: dict, users: int) -> tuple[float, float, float]:
    """TPOT, TTFT, output tokens/s of ``users`` closed-loop users: every prompt fits a step (n_p = 1), a request
    lives 256 steps, d = users · 255/256 decode, d' = d · (users − 1)/users of them the other users' (a prompt
    never shares a step with its own decode: none at 1 user); the lifetime's users · 1,024 prompt tokens come in
    bursts that fill the budget left, 8,192 − d', so W = max(1, users · 1,024 / (8,192 − d')) of the 256 steps carry
    users · 1,024 / W prompt tokens each (one prompt alone at 1 user; about 8,129 tokens in 8.06 steps at 64). A
    request's own prompt step comes before its first token: of the 255 steps after it, W − 1 carry prompts (none
    at 1 user: TPOT is the decode step)."""
    d = users * 255 / 256
    others = d * (users - 1) / users
    bursts = max(1.0, users * I / (8192 - others))
    f_after, per_step = (bursts - 1) / 255, users * I / bursts
    t_mixed, t_decode = step(m, others, per_step, per_step / I), step(m, d, 0, 0)
    tpot = f_after * t_mixed + (1 - f_after) * t_decode
    ttft = REQUEST + t_mixed
    return tpot, ttft, users / (ttft + 255 * tpot) * O


def model(users: int, tp: int = 1):
    serve = build.serve_request(build.ModelOptions("8b"), build.LayoutOptions(tp=tp),
                                build.WorkloadOptions(I + O, users), build.HardwareOptions(gpu="h100"),
                                build.EngineOptions("vllm", build.engine_knob_options()))
    return estimate(SpeedRequest(serve, SpeedWorkload(I, O, users)))


def test_hand_weights_equal_the_shard_rules():
    assert TP1["weights"] == 15_136_811_008 and TP2["weights"] == 7_568_713_728
    r1, r2 = model(1), model(1, tp=2)
    assert r1.stages[0].dense_weight_bytes == TP1["weights"]
    assert r2.stages[0].dense_weight_bytes == TP2["weights"]


@pytest.mark.parametrize("users, tp", [(1, 1), (64, 1), (1, 2), (64, 2)])
def test_figures_equal_the_hand_derivation(users, tp):
    report = model(users, tp)
    tpot, ttft, output = by_hand(TP1 if tp == 1 else TP2, users)
    assert report.tpot_ms == pytest.approx(tpot * 1e3, rel=1e-9)
    assert report.ttft_ms == pytest.approx(ttft * 1e3, rel=1e-9)
    assert report.output_tokens_per_s == pytest.approx(output, rel=1e-9)


def test_ratios_concurrency_and_tensor_parallel():
    """At one user a decode step is weight-bound: TPOT falls by about the weight bytes' ratio with TP 2, less the
    fixed overhead and the all-reduces; 64 users share one read of the weights, so output tokens/s grows well over
    10× — not 64×: every sampled sequence costs the fitted per-sequence overhead each step."""
    c1, c64, t2 = model(1), model(64), model(1, tp=2)
    hand1, hand64, hand_t2 = by_hand(TP1, 1), by_hand(TP1, 64), by_hand(TP2, 1)
    assert c64.output_tokens_per_s / c1.output_tokens_per_s == pytest.approx(hand64[2] / hand1[2], rel=1e-9)
    assert c1.tpot_ms / t2.tpot_ms == pytest.approx(hand1[0] / hand_t2[0], rel=1e-9)
    assert 1.2 < c1.tpot_ms / t2.tpot_ms < 2.0
    assert c64.output_tokens_per_s / c1.output_tokens_per_s > 10


def test_price_per_million_output_tokens():
    """3.00 $ per H100-hour (catalog) for one GPU over output tokens/s × 3,600 / 10⁶."""
    r = model(64)
    assert r.usd_per_mtok == pytest.approx(3.00 / (r.output_tokens_per_s * 3600 / 1e6))


def test_a_rate_that_sends_equal_requests_at_once_runs_whole_requests():
    """1,000 requests of 20,000 + 12,000 tokens at 1,000 per second arrive as one wave: each reaches 32,000 tokens
    of KV (2,000 blocks of 16) together, so the wave runs the cache's tokens // 32,000 — not // (26,000 + 8), the
    average a spread arrival holds (I + O/2 and half a block), which a ShareGPT-like run of varied lengths keeps."""
    from shardsim.engines.run import engine_report

    serve = build.serve_request(build.ModelOptions("8b"), build.LayoutOptions(), build.WorkloadOptions(32_000, 1),
                                build.HardwareOptions(gpu="h100"),
                                build.EngineOptions("vllm", build.engine_knob_options()))
    tokens = engine_report(serve, suggest_fix=False).kv_cache_tokens
    equal = estimate(SpeedRequest(serve, SpeedWorkload(20_000, 12_000, request_rate=1000.0, num_prompts=1000)))
    varied = estimate(SpeedRequest(serve, SpeedWorkload(20_000, 12_000, request_rate=1000.0, num_prompts=1000,
                                                        varied_lengths=True)))
    assert equal.scheduler.kv_seqs_whole == tokens // 32_000 and equal.scheduler.kv_seqs == tokens // 26_008
    assert tokens // 26_008 > tokens // 32_000 > 0
    assert equal.steady.running == tokens // 32_000
    assert varied.steady.running == tokens // 26_008


def test_a_hybrid_runs_the_requests_its_shared_pool_of_blocks_holds():
    """Qwen3.5-9B on vLLM 0.17.1: 8 full-attention and 24 Gated-DeltaNet layers share one pool of blocks, in groups
    of 8 layers — one attention group and 24 / 8 = 3 state groups. A request of 1,034 + 128 tokens holds
    cdiv(1,162, attention block) attention blocks and one block in each state group (no prefix caching), so the
    pool runs blocks // (cdiv(1,162, block) + 3) whole requests — not the logged "GPU KV cache size" over 1,162,
    which counts every group as if it held attention blocks (blocks // 4 groups × block)."""
    from shardsim.engines.run import engine_report

    serve = build.serve_request(build.ModelOptions("qwen3.5-9b"), build.LayoutOptions(),
                                build.WorkloadOptions(1162, 1), build.HardwareOptions(gpu="h100"),
                                build.EngineOptions("vllm", build.engine_knob_options(engine_version="0.17.1")))
    rep = engine_report(serve, suggest_fix=False)
    block, blocks = rep.attention_block_size, rep.state_blocks
    assert rep.kv_cache_tokens == blocks // 4 * block                  # what the log prints
    whole = blocks // (-(-1162 // block) + 3)
    spread = int(blocks // ((1034 + 128 / 2) / block + 0.5 + 3))
    report = estimate(SpeedRequest(serve, SpeedWorkload(1034, 128, concurrency=2000)))
    assert report.scheduler.kv_seqs_whole == whole > rep.kv_cache_tokens // 1162
    varied = estimate(SpeedRequest(serve, SpeedWorkload(1034, 128, request_rate=1000.0, varied_lengths=True)))
    assert varied.scheduler.kv_seqs == spread > whole


def test_full_graph_decode_batches_by_release():
    """vLLM's FULL decode graphs (FULL_AND_PIECEWISE, the default from 0.11.0): the capture sizes go up to
    min(2 · max_num_seqs, 512, max_num_batched_tokens), FULL graphs for those ≤ max_num_seqs — 512 at 1,024
    sequences, 256 at 256; a PIECEWISE release (0.10.2), --enforce-eager or the V0 engine replay none."""
    from shardsim.speed.estimate import _vllm_full_graph_max

    assert _vllm_full_graph_max({"max_num_seqs": 1024, "max_num_batched_tokens": 8192}) == 512
    assert _vllm_full_graph_max({"max_num_seqs": 256, "max_num_batched_tokens": 8192}) == 256
    assert _vllm_full_graph_max({"max_num_seqs": 1024, "max_num_batched_tokens": 8192, "engine_version": "0.11.0"}) == 512
    assert _vllm_full_graph_max({"max_num_seqs": 1024, "max_num_batched_tokens": 8192, "engine_version": "0.10.2"}) == 0
    assert _vllm_full_graph_max({"max_num_seqs": 1024, "max_num_batched_tokens": 8192, "enforce_eager": True}) == 0


def test_the_per_layer_floor_only_where_no_graph_replays_the_step():
    """One user's decode step on the newest vLLM replays a FULL graph: no 36 × per-layer floor; with
    --engine-version 0.10.2 (PIECEWISE) the same step carries it, and nothing else of the step changes."""
    from shardsim.speed.work import StepShape

    def pipe(version):
        serve = build.serve_request(build.ModelOptions("8b"), build.LayoutOptions(), build.WorkloadOptions(I + O, 1),
                                    build.HardwareOptions(gpu="h100"),
                                    build.EngineOptions("vllm", build.engine_knob_options(engine_version=version)))
        from shardsim.speed.estimate import prepare
        return prepare(SpeedRequest(serve, SpeedWorkload(I, O, 1)))[1]

    new, old = pipe(None), pipe("0.10.2")
    decode, prompt = StepShape(decode=1, decode_keys=1152), StepShape(prefill=I, prefill_keys=512, prefill_done=1)
    assert new.graph_decode_max == 512 and old.graph_decode_max == 0
    assert new(decode) == pytest.approx(old(decode) - 36 * LAYER, rel=1e-12)
    assert new(prompt) == pytest.approx(old(prompt), rel=1e-12)
