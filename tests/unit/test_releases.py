"""Engine releases: which rules each release follows, and what they change, arithmetic written out."""

import pytest

from shardsim.core.layout import Layout, validate_layout
from shardsim.core.memory.activations import activation_peak_bytes
from shardsim.engines.releases import parse_version, resolve
from shardsim.core.requests import Hardware, ServeRequest
from shardsim.core.workload import Workload
from shardsim.engines.registry import choose
from shardsim.engines.run import engine_report
from shardsim.engines.sglang import default_mem_fraction_static
from shardsim.engines.vllm import VllmDefaults, vllm_defaults
from shardsim.errors import ShardsimError
from shardsim.fitted import fitted
from shardsim.presets import get_preset


def report_of(engine, spec, layout, capacity, gpu, cc, smi, dtype, quant, knobs, suggest_fix=True):
    """The engine's report for these inputs, through the one request every command builds."""
    request = ServeRequest(spec, layout, Workload(dtype=dtype, quant=quant), Hardware(gpu, capacity, cc, smi),
                           choose(engine, knobs))
    return engine_report(request, suggest_fix=suggest_fix)

GiB = 1 << 30
H100 = int(79.18 * GiB)


def vllm(model, version, tp=1, capacity=H100, gpu="H100-SXM-80GB", **knobs):
    spec = get_preset(model)
    return report_of("vllm", spec, validate_layout(spec, Layout(tp=tp)), capacity, gpu, "9.0", None, "bf16",
                         spec.quant, {"engine_version": version, **knobs}, suggest_fix=False)


def test_versions_parse_and_map_to_the_lower_rule_set():
    assert parse_version("v0.10.1.1", "vllm") == (0, 10, 1)
    assert parse_version("0.5.2.post1", "sglang") == (0, 5, 2)
    assert resolve("vllm", "0.10.0").rules.label == "vLLM 0.9.1–0.10.1 rules"
    assert resolve("vllm", "0.16.3").rules.label == "vLLM 0.14–0.16 rules"
    assert resolve("vllm", None).version == "0.33.0"
    newer = resolve("vllm", "0.40.0")
    assert newer.rules.label == "vLLM 0.29–0.33 rules" and "newer than the newest release read" in newer.warning
    with pytest.raises(ShardsimError, match="older than the oldest"):
        resolve("vllm", "0.7.3")
    with pytest.raises(ShardsimError, match="not a release number"):
        resolve("sglang", "latest")


def test_14b_h100_activation_peak_falls_with_the_triton_sampler():
    old, new = vllm("14b", "0.11.0"), vllm("14b", "0.17.0")
    # 1,024 sequences (≥ 70 GiB, not an A100) × 151,936 logits: native sort 38 B per logit, Triton 14 B
    assert old.ranks[0].activation_peak_bytes - new.ranks[0].activation_peak_bytes == 1024 * 151_936 * (38 - 14)
    assert new.ranks[0].available_kv_cache_bytes - old.ranks[0].available_kv_cache_bytes == 1024 * 151_936 * 24
    assert old.rules["sampler"] == "native" and new.rules["sampler"] == "triton"
    # 0.20 takes V1's CUDA-graph estimate off the budget (engines/vllm_profile.py): 51 sizes (1, 2, 4, 8 … 248,
    # 256 … 512) × 41 pieces (40 layers + 1) PIECEWISE and 51 FULL decode sizes (≤ 1,024 sequences). The first
    # capture of each mode is the pool (the 512-token forward) + its graphs; every other size costs the second
    # capture, at least 1 MiB: 50 × 41 graphs PIECEWISE, 50 × max(1 graph, 1 MiB) FULL.
    v020 = vllm("14b", "0.20.0")
    per, pool = fitted("VLLM_CUDA_GRAPH_BYTES_PER_GRAPH"), activation_peak_bytes(get_preset("14b"), 1, 1, 512, 512, False,
                                                                                  True, False)
    estimate = pool + 41 * per + 50 * 41 * per + 50 * (1 << 20)
    assert new.ranks[0].available_kv_cache_bytes - v020.ranks[0].available_kv_cache_bytes == estimate == 1_303_668_752


def test_v2_runner_sampler_and_penalty_state_from_0_27():
    spec = get_preset("14b")
    v026, v033 = vllm("14b", "0.26.0"), vllm("14b", "0.33.0")
    assert v026.rules["sampler"] == v033.rules["sampler"] == "v2"
    # 0.27+: the persistent penalty state is charged: int32 [1,024, 151,936] + int32 [1,024, ceil(151,936 / 32)]
    state = 1024 * 151_936 * 4 + 1024 * 4748 * 4
    # … and 0.29+ subtracts V2's CUDA-graph estimate too (0.22–0.28: V2's estimate is 0): V2 captures PIECEWISE in
    # full and extrapolates FULL, i.e. the capture: the pool + (51 × 41 + 51) graphs
    pool = activation_peak_bytes(spec, 1, 1, 512, 512, False, True, False)
    capture = pool + (51 * 41 + 51) * fitted("VLLM_CUDA_GRAPH_BYTES_PER_GRAPH")
    drop = v026.ranks[0].available_kv_cache_bytes - v033.ranks[0].available_kv_cache_bytes
    assert drop == state + capture == 641_777_664 + 1_280_070_048
    # the forward sets the activation peak in both: 0.33's fp32 logit copy (6 B per logit) stays below it
    assert v026.ranks[0].activation_peak_bytes == v033.ranks[0].activation_peak_bytes
    assert spec.vocab_size == 151_936


def test_defaults_by_release_and_gpu():
    a100 = int(79.15 * GiB)
    d = VllmDefaults
    assert vllm_defaults(a100, "A100-80GB", resolve("vllm", "0.8.5").rules) == d(1024, 8192)     # A100 counted big
    assert vllm_defaults(a100, "A100-80GB", resolve("vllm", "0.9.0").rules) == d(256, 2048)      # excluded from 0.9
    # 0.12+: tokens = min(1,024 × 4, 8,192) = 4,096; seqs = min(1,024, 4,096)
    assert vllm_defaults(H100, "H100", resolve("vllm", "0.12.0").rules, max_model_len=4) == d(1024, 4096)
    assert vllm_defaults(H100, "H100", resolve("vllm", "0.11.0").rules, max_model_len=4) == d(1024, 8192)


def test_kv_cache_memory_bytes_and_max_model_len_auto_by_release():
    rep = vllm("8b", "0.10.2", kv_cache_memory_bytes=10 * GiB)
    # 10 GiB / (16 tokens × 2 × 8 KV heads × 128 × 2 B = 65,536 B per layer-page) / 36 layers = 4,551 blocks
    assert rep.kv_cache_tokens == 10 * GiB // 65_536 // 36 * 16
    assert not vllm("8b", "0.10.1", kv_cache_memory_bytes=10 * GiB).starts
    auto = vllm("32b", "0.14.0", max_model_len_auto=True)
    assert auto.starts and auto.knobs["max_model_len"] == auto.kv_cache_tokens < 40_960
    assert not vllm("32b", "0.13.0", max_model_len_auto=True).starts


def test_startup_free_memory_check_exists_from_0_9_1():
    # util 0.995: requested 78.78 GiB > 79.18 − 0.61 GiB of CUDA context free at start
    assert "Free memory on device" in vllm("0.6b", "0.9.1", gpu_memory_utilization=0.995).refusal
    assert not (vllm("0.6b", "0.9.0", gpu_memory_utilization=0.995).refusal or "").startswith("ValueError")


def test_model_runner_v2_and_cuda_graph_estimate():
    dense = vllm("8b", "0.22.0")
    assert dense.rules["model_runner"] == "v2" and not dense.rules["cuda_graphs_subtracted"]
    v1 = vllm("8b", "0.20.0")
    assert v1.rules["model_runner"] == "v1" and v1.rules["cuda_graphs_subtracted"]
    moe = vllm("30b-a3b", "0.22.0")
    assert moe.rules["model_runner"] == "v1" and moe.rules["cuda_graphs_subtracted"]   # MoE stays on V1
    assert vllm("30b-a3b", "0.29.0").rules["model_runner"] == "v2"
    # V2 profiles without attention: its forward peak is never above V1's at the same step
    assert dense.ranks[0].activation_peak_bytes <= v1.ranks[0].activation_peak_bytes


def test_sglang_reserve_by_release():
    # H200 (143,771 MiB), TP1: 0.4.6 → (143,771 − 13,312) / 143,771 = 0.907
    assert default_mem_fraction_static(143771, 1, 1, resolve("sglang", "0.4.6").rules) == 0.907
    # RTX 4090-class 24,564 MiB at 0.5.23: tier < 35 GiB → chunked prefill 4,096, graph batch 48;
    # piecewise prefill sizes ≤ 4,096: 4…32 step 4 (8), 48…256 step 16 (14), 288…512 step 32 (8), 576…1,024
    # step 64 (8), 1,280…4,096 step 256 (12) = 50;
    # reserved = 512 + 1.5 · 4,096 + 2 · 48 + 1/8 · 1,024 + 8 · 50 = 7,280 MiB
    assert default_mem_fraction_static(24564, 1, 1, resolve("sglang", "0.5.23").rules) == round(
        (24564 - 7280) / 24564, 3)


def test_flashinfer_attention_workspace_on_sm100_from_0_27():
    spec = get_preset("8b")
    lay = validate_layout(spec, Layout())

    def act(cc, version):
        rep = report_of("vllm", spec, lay, H100, "B200", cc, None, "bf16", spec.quant,
                            {"engine_version": version}, suggest_fix=False)
        return rep.ranks[0].activation_peak_bytes

    # sm100: FlashInfer attention first, with its 394 MiB workspace; sm90: FlashAttention, no workspace
    assert act("10.0", "0.33.0") - act("9.0", "0.33.0") == 394 * (1 << 20)
    assert act("10.0", "0.26.0") == act("9.0", "0.26.0")     # not credited before the release it was read at


def test_every_engine_release_table_has_one_shape_and_one_resolve():
    from shardsim.engines.releases import NEWEST_RELEASE, RELEASE_TABLES

    for engine, table in RELEASE_TABLES.items():
        firsts = [row.first for row in table.rows]
        assert firsts == sorted(firsts) and len(set(firsts)) == len(firsts)
        assert resolve(engine, None).rules is table.rows[-1] and NEWEST_RELEASE[engine] == table.newest
    # transformers: no dtype loads float32 before 5.0 (the checkpoint's dtype from 5.0); before Qwen3 shipped
    # (4.51.0) there is nothing to model
    assert resolve("transformers", "4.51.3").rules.default_load_dtype == "float32"
    assert resolve("transformers", "5.0.0").rules.default_load_dtype == "auto"
    with pytest.raises(ShardsimError, match="older than the oldest transformers release"):
        resolve("transformers", "0.0.0")
