"""Engine profiles against published logs and the engines' own refusal rules."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shardsim.core.layout import Layout, validate_layout
from shardsim.core.quant import quant_from_choice
from shardsim.engines.calibration import calibrate, summary
from shardsim.engines.releases import resolve
from shardsim.core.requests import Hardware, ServeRequest
from shardsim.core.workload import Workload
from shardsim.engines.registry import choose
from shardsim.engines.run import engine_report
from shardsim.engines.sglang import default_mem_fraction_static
from shardsim.engines.vllm import VllmDefaults, vllm_defaults
from shardsim.presets import get_preset
from shardsim.units import GiB, MiB


def report_of(engine, spec, layout, capacity, gpu, cc, smi, dtype, quant, knobs, suggest_fix=True):
    """The engine's report for these inputs, through the one request every command builds."""
    request = ServeRequest(spec, layout, Workload(dtype=dtype, quant=quant), Hardware(gpu, capacity, cc, smi),
                           choose(engine, knobs))
    return engine_report(request, suggest_fix=suggest_fix)

DATA = Path(__file__).resolve().parent.parent / "data" / "measurements.jsonl"
EXE = str(Path(sys.executable).parent / "shardsim")
H100 = int(79.18 * GiB)


def vllm(model, tp=1, capacity=H100, gpu="H100-SXM-80GB", quant=None, **knobs):
    """vLLM at 0.11.0, the release of the published logs these tests are tied to."""
    knobs.setdefault("engine_version", "0.11.0")
    spec = get_preset(model)
    layout = validate_layout(spec, Layout(tp=tp))
    return report_of("vllm", spec, layout, capacity, gpu, "9.0", None, "bf16", quant or spec.quant, knobs)


def test_calibration_file_meets_the_bounds():
    results = calibrate(DATA)
    s = summary(results)
    fitted = s["fitted"]   # the rows today's constants were fitted to: in-sample, every one within its bounds
    assert fitted["rows"] == 24 and fitted["rows_failed"] == [] and fitted["start_verdicts_right"] == 24
    # the goals: weights ≤ 0.5 %, vLLM KV tokens ≤ 3 %, SGLang #tokens ≤ 3 %, HF peak ≤ 5 %
    s = fitted
    assert s["figures"]["weights (model loading)"]["max_abs_error_pct"] <= 0.5
    assert s["figures"]["KV cache tokens"]["max_abs_error_pct"] <= 3
    assert s["figures"]["KV pool #tokens"]["max_abs_error_pct"] <= 3
    assert s["figures"]["peak allocated"]["max_abs_error_pct"] <= 5


def test_every_held_out_start_verdict_is_right_or_borderline():
    # the published starts and failures no constant was fitted to (OOM in graph capture, refusals, starts): each
    # predicted, or said BORDERLINE with its reason
    held = summary(calibrate(DATA))["held_out"]
    assert held["rows"] == 32 and held["start_verdicts_wrong"] == []


def test_vllm_06b_h100_matches_the_log():
    # llm-d benchmark, vLLM v0.11, H100 (79.18 GiB), util 0.9: loading 1.12, activation 5.56, non-torch 0.13,
    # available KV 64.45 GiB. Loading = 596,049,920 × 2 B + rotary 40,960 × 128 × 2 B.
    rep = vllm("0.6b", max_model_len=16000)
    r = rep.ranks[0]
    assert r.model_loading_bytes == 1_192_099_840 + 40_960 * 128 * 2
    assert round(r.available_kv_cache_bytes / GiB, 2) == 64.45
    assert round(r.activation_peak_bytes / GiB, 2) == 5.56
    # KV tokens = available // (16 × 2 × 8 × 128 × 2 B) // 28 layers × 16
    page = 16 * 2 * 8 * 128 * 2
    assert rep.kv_cache_tokens == r.available_kv_cache_bytes // page // 28 * 16
    assert rep.starts


def test_vllm_refuses_max_model_len_beyond_the_cache():
    # 32B TP1 on H100 leaves ~4.46 GiB for KV; 40,960 tokens need 64 × 2 × 8 × 128 × 2 × 40,960 B = 10 GiB
    rep = vllm("32b")
    assert not rep.starts
    assert "max seq len (40960)" in rep.refusal and "estimated maximum model length" in rep.refusal
    assert vllm("32b", max_model_len=16000).starts


def test_vllm_refuses_when_nothing_is_left_for_the_cache():
    rep = vllm("32b", gpu_memory_utilization=0.8)
    assert not rep.starts and rep.refusal.startswith("No available memory for the cache blocks")


def test_vllm_oom_while_loading():
    rep = vllm("32b", capacity=int(44.52 * GiB), gpu="L40S-48GB")
    assert not rep.starts and "out of memory while loading" in rep.refusal


def test_vllm_fp8_moe_needs_whole_blocks_per_shard():
    spec = get_preset("235b-fp8")
    bad = report_of("vllm", spec, validate_layout(spec, Layout(tp=8)), 150 * GiB, "H200", "9.0", None, "bf16",
                        spec.quant, {})
    assert not bad.starts and "= 192 is not divisible by weight quantization block_n = 128" in bad.refusal
    ok = report_of("vllm", spec, validate_layout(spec, Layout(tp=8, ep=8)), 150 * GiB, "H200", "9.0", None,
                       "bf16", spec.quant, {"max_model_len": 8192})
    assert ok.starts


def test_vllm_defaults_by_gpu():
    assert vllm_defaults(H100, "H100-SXM-80GB") == VllmDefaults(1024, 8192)
    assert vllm_defaults(int(79.15 * GiB), "A100-80GB") == VllmDefaults(256, 2048)
    assert vllm_defaults(int(44.52 * GiB), "L40S-48GB") == VllmDefaults(256, 2048)


def test_sglang_default_fraction_and_pool():
    # RTX 5080, 16,303 MiB: reserved (2.8 + 1/10) · 1024 = 2,969.6 MiB → round(13,333.4 / 16,303, 3) = 0.818
    # (SGLang 0.4.7–0.5.2 reserve table)
    old = resolve("sglang", "0.5.2").rules
    assert default_mem_fraction_static(16303, 1, 1, old) == 0.818
    # H100 (81,559 MiB nvidia-smi), TP8: reserved (9.5 + 8/2) · 1024 = 13,824 → 0.831
    assert default_mem_fraction_static(81559, 8, 1, old) == 0.831
    # 0.5.3 formula, H100 TP1: 512 + 1.5 · 8,192 + 2 · 256 + 1/8 · 1,024 = 13,440 MiB → round(68,119 / 81,559, 3)
    assert default_mem_fraction_static(81559, 1, 1, resolve("sglang", "0.5.5").rules) == 0.835
    # 0.5.10+: plus 8 MiB per piecewise prefill capture size, 58 sizes up to 8,192: 13,904 MiB → 0.830
    assert default_mem_fraction_static(81559, 1, 1, resolve("sglang", "0.5.23").rules) == 0.830


def test_hf_peak_is_weights_plus_final_kv_plus_workspace():
    spec = get_preset("0.6b")
    rep = report_of("hf", spec, validate_layout(spec, Layout()), 95 * GiB, "H20", "9.0", None, "bf16", spec.quant,
                        {"prompt_tokens": 6144, "generate_tokens": 2048})
    # 1,192,099,840 + 8,192 tokens × 114,688 B + 33 MiB cuBLAS + 151,936 × 6 B logits ≈ 2,067 MiB (published: 2,066)
    assert rep.peak_allocated_bytes == 1_192_099_840 + 8192 * 114_688 + 33 * MiB + 151_936 * 6
    assert abs(rep.peak_allocated_bytes / MiB - 2066) / 2066 < 0.005


@pytest.mark.parametrize("quant,ratio", [("fp8", 0.576), ("int4", 0.372), ("nvfp4", 0.39)])
def test_quantized_weights_shrink(quant, ratio):
    from shardsim.core.memory.weights import total_weight_bytes

    spec = get_preset("8b")
    size = total_weight_bytes(spec, "bf16", quant_from_choice(quant))
    assert abs(size / 16_381_470_720 - ratio) < 0.01


def test_plan_cli_engine_json():
    proc = subprocess.run([EXE, "plan", "32b", "--tp", "2", "--engine", "vllm", "--gpu", "h100", "--max-model-len",
                           "16000", "--json"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    eng = json.loads(proc.stdout)["engine"]
    assert eng["engine"] == "vllm" and eng["starts"] is True
    for key in ("model_loading_bytes", "available_kv_cache_bytes", "kv_cache_tokens", "activation_peak_bytes",
                "non_torch_bytes", "cuda_graph_bytes"):
        assert key in eng["ranks"][0]
    assert eng["kv_cache_tokens"] > 250_000 and eng["max_concurrency"] > 15


def test_calibrate_cli_and_bad_file(tmp_path):
    proc = subprocess.run([EXE, "calibrate", str(DATA)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "fitted: 24 of 24 rows within their bounds" in proc.stdout
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"model": "Qwen/Qwen3-8B"\n')
    proc = subprocess.run([EXE, "calibrate", str(bad)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "line 1" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1


def _budget_row(available_gib: float) -> dict:
    """A vLLM 0.19 log on a 12 GB card at utilization 0.75 (total 11.63 GiB as logged), weights 1.12 GiB."""
    return {"model": "Qwen/Qwen3-0.6B", "dtype": "bf16", "engine": "vLLM", "engine_version": "0.19.0",
            "gpu": "NVIDIA GeForce RTX 3060 12GB (11.63 GiB total)", "tp": 1, "context": 8192, "gpu_mem_util": 0.75,
            "measured": {"Model loading took": "1.12 GiB memory",
                         "Available KV cache memory": f"{available_gib} GiB"}}


def test_a_log_above_its_own_budget_is_shown_not_scored():
    from shardsim.engines.calibration import calibrate_row
    from shardsim.engines.calibration_report import summary as summarise

    # budget 0.75 × 11.63 = 8.7225 GiB; weights 1.12 leave at most 7.6025 GiB of KV for one process
    within, above = calibrate_row(_budget_row(7.60), 1), calibrate_row(_budget_row(8.03), 2)
    assert within.excluded is None
    assert above.excluded is not None and "8.72 GiB" in above.excluded
    summ = summarise([within, above])
    assert summ["rows"] == 1 and [row["line"] for row in summ["excluded"]] == [2]
