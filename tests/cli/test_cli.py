"""The real ``shardsim`` console script, run as a subprocess: output, JSON schema, and one-line errors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import BF16_TOTAL_BYTES, PARAMS, PRESETS_DIR, Cfg

SHARDSIM = Path(sys.executable).parent / "shardsim"
if not SHARDSIM.exists():  # pragma: no cover - a venv without the console script
    SHARDSIM = Path(shutil.which("shardsim") or SHARDSIM)


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(SHARDSIM), *args], capture_output=True, text=True, timeout=60, cwd=cwd)


def test_console_script_exists():
    assert SHARDSIM.exists(), SHARDSIM


def test_plan_235b_tp8_pp2_text():
    p = run("plan", "235b", "--tp", "8", "--pp", "2")
    assert p.returncode == 0, p.stderr
    assert "FITS" in p.stdout
    assert "DOES NOT FIT" not in p.stdout
    assert "0–7 · stage 0" in p.stdout
    assert "8–15 · stage 1" in p.stdout
    assert "470,187,269,120 B" in p.stdout
    assert p.stderr == ""


@pytest.fixture(scope="module")
def plan_json():
    p = run("plan", "235b", "--tp", "8", "--pp", "2", "--json")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_plan_json_schema(plan_json):
    d = plan_json
    assert {"name", "params", "weight_bytes"} <= set(d["model"])
    assert {"tp", "pp", "dp", "ep", "world_size"} <= set(d["layout"])
    assert {"peak_rank", "fits", "max_context", "max_batch", "ranks"} <= set(d)
    rank_keys = {"rank", "node", "local_gpu", "tp_rank", "pp_rank", "dp_rank", "ep_rank", "layers", "bytes",
                 "capacity_bytes"}
    for r in d["ranks"]:
        assert rank_keys <= set(r)
        assert {"weights", "kv_cache", "activations", "runtime", "total"} <= set(r["bytes"])
        b = r["bytes"]
        assert b["total"] == b["weights"] + b["kv_cache"] + b["activations"] + b["runtime"] + b.get("zero_gather", 0)


def test_plan_json_values(plan_json):
    d = plan_json
    assert d["model"]["name"] == "Qwen3-235B-A22B"
    assert d["model"]["params"] == PARAMS["Qwen3-235B-A22B"]
    assert d["model"]["weight_bytes"] == BF16_TOTAL_BYTES["Qwen3-235B-A22B"]
    assert (d["layout"]["tp"], d["layout"]["pp"], d["layout"]["dp"], d["layout"]["ep"]) == (8, 2, 1, 1)
    assert d["layout"]["world_size"] == 16
    assert len(d["ranks"]) == 16
    assert [r["rank"] for r in d["ranks"]] == list(range(16))
    assert [r["layers"] for r in d["ranks"]] == [[0, 46]] * 8 + [[47, 93]] * 8
    assert [r["tp_rank"] for r in d["ranks"]] == list(range(8)) * 2
    assert [r["pp_rank"] for r in d["ranks"]] == [0] * 8 + [1] * 8
    assert [(r["node"], r["local_gpu"]) for r in d["ranks"]] == [(n, g) for n in (0, 1) for g in range(8)]
    # weights as in test_weights.test_235b_tp8_pp2; KV 47 · 2 · 1 · 128 · 2 · 8192
    assert [r["bytes"]["weights"] for r in d["ranks"]] == [29_479_804_416] * 8 + [29_479_812_608] * 8
    assert {r["bytes"]["kv_cache"] for r in d["ranks"]} == {47 * 2 * 128 * 2 * 8192}
    assert d["fits"] is True
    assert d["max_context"] == 40960                  # limited by max_position_embeddings
    assert d["max_batch"] >= 1
    peak = d["ranks"][d["peak_rank"]]["bytes"]["total"]
    assert peak == max(r["bytes"]["total"] for r in d["ranks"])
    assert peak <= d["ranks"][0]["capacity_bytes"]


def test_models_json():
    p = run("models", "--json")
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout)
    # one row per shipped config.json (the presets folder; checkpoint_facts.json is not a config)
    configs = [f for f in PRESETS_DIR.glob("*.json") if f.name != "checkpoint_facts.json"]
    assert len(rows) == len(configs) == 22
    by_name = {r["name"]: r for r in rows}
    for name, params in PARAMS.items():
        assert by_name[name]["params"] == params
        c = Cfg(name)
        assert by_name[name]["kv_bytes_per_token"] == 2 * c.L * c.kv * c.hd * 2
        assert by_name[name]["weight_bytes"] == BF16_TOTAL_BYTES[name]
    assert by_name["Qwen3-235B-A22B"]["kv_bytes_per_token"] == 192_512
    assert by_name["Qwen3-30B-A3B-FP8"]["params"] == PARAMS["Qwen3-30B-A3B"]
    assert by_name["Qwen3-30B-A3B-FP8"]["weight_bytes"] == 31_174_545_408
    assert by_name["Qwen3-30B-A3B-FP8"]["bf16_bytes"] == BF16_TOTAL_BYTES["Qwen3-30B-A3B"]


def test_gpu_memory_sets_capacity():
    p = run("plan", "8b", "--gpu-memory", "46068MiB", "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["ranks"][0]["capacity_bytes"] == 46068 * 2**20 == 48_305_799_168
    assert d["ranks"][0]["bytes"]["weights"] == 16_381_470_720


def test_config_path_plan(tmp_path):
    shutil.copy(PRESETS_DIR / "Qwen3-8B.json", tmp_path / "config.json")
    p = run("plan", "--config", str(tmp_path / "config.json"), "--tp", "2", "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["model"]["weight_bytes"] == 16_381_470_720


@pytest.fixture()
def bad_inputs(tmp_path):
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{\n  "hidden_size": 4096,\n  "num_hidden_layers": ,\n}\n')
    llama = json.loads((PRESETS_DIR / "Qwen3-8B.json").read_text())
    llama["architectures"] = ["LlamaForCausalLM"]
    llama_path = tmp_path / "llama.json"
    llama_path.write_text(json.dumps(llama))
    bad_yaml = tmp_path / "broken-cluster.yaml"
    bad_yaml.write_text("name: [unclosed\n  gpu: h100\n")
    return {"bad_json": str(bad_json), "llama": str(llama_path), "bad_yaml": str(bad_yaml)}


BAD = {
    "unknown model": (["plan", "nosuch"], "unknown model"),
    "malformed config": (["plan", "--config", "{bad_json}"], "line 3"),
    "unsupported arch": (["plan", "--config", "{llama}"], "LlamaForCausalLM"),
    "tp 0": (["plan", "235b", "--tp", "0"], "--tp"),
    "tp -2": (["plan", "235b", "--tp", "-2"], "--tp"),
    "tp 1.5": (["plan", "235b", "--tp", "1.5"], "--tp"),
    "tp 3": (["plan", "235b", "--tp", "3"], "--tp 3"),
    "ep 3": (["plan", "235b", "--tp", "4", "--ep", "3"], "--ep 3"),
    "pp 95": (["plan", "235b", "--pp", "95"], "--pp 95"),
    "pp-split sum": (["plan", "235b", "--pp", "2", "--pp-split", "48,40"], "48,40"),
    "pp-split words": (["plan", "235b", "--pp", "2", "--pp-split", "a,b"], "--pp-split"),
    "cluster too small": (["plan", "235b", "--tp", "8", "--pp", "2", "--cluster", "h100-1x8"], "16"),
    "unknown gpu": (["plan", "8b", "--gpu", "nosuchgpu"], "nosuchgpu"),
    "malformed cluster yaml": (["plan", "8b", "--cluster", "{bad_yaml}"], "broken-cluster.yaml"),
    "context 0": (["plan", "8b", "--context", "0"], "--context"),
    "huge batch": (["plan", "8b", "--batch", "1000000000000"], "--batch"),
    "quant int3": (["plan", "8b", "--quant", "int3"], "int3"),
    # same flag, same meaning: an option that would do nothing is refused, not ignored
    "vllm knob without engine": (["plan", "8b", "--gpu-memory-utilization", "0.8"], "without --engine"),
    "sglang knob on vllm": (["plan", "8b", "--engine", "vllm", "--mem-fraction-static", "0.8"], "--engine sglang"),
    "hf knob on sglang": (["plan", "8b", "--engine", "sglang", "--prompt-tokens", "10"], "--engine hf"),
    "step budget of the other engine": (["plan", "8b", "--engine", "sglang", "--max-num-batched-tokens", "4096"],
                                        "--max-num-batched-tokens does nothing with --engine sglang"),
    "two step budgets": (["plan", "8b", "--max-num-batched-tokens", "4096", "--chunked-prefill-size", "4096"],
                         "not both"),
    "two quants in plan": (["plan", "8b", "--quant", "fp8", "--quant", "int4"], "--quant given 2 times"),
    "two clusters in plan": (["plan", "8b", "--cluster", "h100-1x8", "--cluster", "h200-1x8"], "--cluster"),
    "two kv dtypes in sweep": (["sweep", "8b", "--kv-dtype", "fp8", "--kv-dtype", "bf16"], "--kv-dtype"),
    "unknown engine": (["plan", "8b", "--engine", "trt"], "accepted: none, vllm, sglang, hf"),
    "review engine sglang": (["review", "--model", "8b", "--engine", "sglang"], "review evaluates --engine none or vllm"),
    "review util without vllm": (["review", "--model", "8b", "--gpu-memory-utilization", "0.8"], "--engine vllm"),
    "review unknown gpu": (["review", "--model", "8b", "--gpu", "nosuchgpu"], "nosuchgpu"),
    "review gpu absent": (["review", "--model", "8b", "--gpu", "a100-40gb", "--cluster", "h100-1x8"], "A100-40GB"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_input_one_line_exit_2(case, bad_inputs, tmp_path):
    args, expect = BAD[case]
    args = [a.format(**bad_inputs) for a in args]
    p = run(*args, cwd=tmp_path)
    assert p.returncode == 2, (p.returncode, p.stdout, p.stderr)
    lines = p.stderr.splitlines()
    assert len(lines) == 1, p.stderr
    assert "Traceback" not in p.stderr
    assert lines[0].startswith("shardsim: error: ")
    assert expect in lines[0]
    assert p.stdout == ""


def test_engine_none_is_the_planner_alone():
    plain, none = run("plan", "8b", "--json"), run("plan", "8b", "--engine", "none", "--json")
    assert plain.returncode == none.returncode == 0, (plain.stderr, none.stderr)
    assert json.loads(plain.stdout) == json.loads(none.stdout)


def test_vllm_refusals_are_one_rule_wherever_evaluated():
    # 30B-A3B FP8 on TP8: each expert's 768-wide intermediate splits into 96 columns, not whole 128-wide blocks
    p = run("plan", "30b-a3b-fp8", "--tp", "8", "--engine", "vllm", "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    refusal = d["engine"]["refusal"]
    assert not d["engine"]["starts"] and "= 96 is not divisible by weight quantization block_n = 128" in refusal
    assert any(refusal in w for w in d["warnings"])  # the planner warns with the engine's own words
    r = run("review", "--model", "30b-a3b", "--quant", "fp8", "--engine", "vllm", "--cluster", "h100-1x8",
            "--top", "0", "--misses", "200", "--json")
    assert r.returncode == 0, r.stderr
    tp8 = [o for o in json.loads(r.stdout)["options"] if o["layout"] == {"tp": 8, "pp": 1, "dp": 1, "ep": 1,
                                                                         "world_size": 8}]
    assert tp8 and tp8[0]["reason"] == refusal
    # vLLM has expert parallel off or over all tp × dp ranks: EP2 inside TP4 is not a layout it runs
    e = json.loads(run("plan", "30b-a3b", "--tp", "4", "--ep", "2", "--engine", "vllm", "--json").stdout)["engine"]
    assert not e["starts"] and "--enable-expert-parallel" in e["refusal"]


def test_review_gpu_keeps_the_clusters_of_that_gpu():
    p = run("review", "--model", "8b", "--gpu", "h200", "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["options"] and {o["gpu"] for o in d["options"]} == {"H200-141GB"}
