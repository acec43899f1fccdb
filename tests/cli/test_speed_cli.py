"""``shardsim speed`` and ``shardsim calibrate --speed`` as the console script: the JSON's figures, 80 columns,
``--explain``, one-line refusals with exit 2, and a ``vllm bench serve`` result scored."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXE = str(Path(sys.executable).parent / "shardsim")
ROOT = Path(__file__).resolve().parents[2]
FIXTURE = ROOT / "tests" / "data" / "serving_benchmarks_test.jsonl"
BASE = ["speed", "8b", "--gpu", "h100", "--engine", "vllm", "--input-tokens", "1024", "--output-tokens", "256"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([EXE, *args], capture_output=True, text=True, timeout=120, env={"PATH": "/usr/bin:/bin",
                          "COLUMNS": "80", "HOME": str(Path.home())})


def test_json_top_level_figures():
    out = run(*BASE, "--concurrency", "64", "--ttft-ms", "500", "--tpot-ms", "30", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    for key in ("ttft_ms", "tpot_ms", "output_tokens_per_s", "total_tokens_per_s", "tokens_per_s_per_gpu",
                "tokens_per_s_per_user", "max_concurrency_at_slo", "usd_per_mtok", "band"):
        assert key in doc, key
    assert doc["total_tokens_per_s"] == pytest.approx(doc["output_tokens_per_s"] * (1024 + 256) / 256)
    assert doc["tokens_per_s_per_user"] == pytest.approx(1000 / doc["tpot_ms"])
    assert doc["usd_per_mtok"] == pytest.approx(3.0 / (doc["output_tokens_per_s"] * 3600 / 1e6))
    assert doc["usd_per_mtok_tokens"] == "output" and doc["estimate"] is True
    assert set(doc["band"]) == {"ttft", "tpot", "throughput"}
    assert doc["max_concurrency_at_slo"] >= 64 or doc["tpot_ms"] > 30 or doc["ttft_ms"] > 500


def test_text_fits_80_columns_and_labels_estimates():
    out = run(*BASE, "--concurrency", "8", "--explain")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert max(len(line) for line in lines) <= 80
    table = next(line for line in lines if line.startswith("estimate"))
    assert "held-out band" in table
    assert any("--explain" in line for line in lines) and "arithmetic" in lines
    assert any(line.startswith("  TPOT = ") for line in lines)


def test_request_rate_and_sglang_and_tp():
    out = run("speed", "30b-a3b", "--engine", "sglang", "--tp", "2", "--request-rate", "2", "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert doc["requests_per_s"] == pytest.approx(2.0, rel=1e-6) and doc["scheduler"]["mixed_steps"] is False
    assert doc["gpus"] == 2


@pytest.mark.parametrize("args, words", [
    (["--concurrency", "4", "--request-rate", "2"], "not --concurrency and --request-rate"),
    (["--num-prompts", "4", "--request-rate", "2"], "not --request-rate and --num-prompts"),
    (["--concurrency", "0"], "out of range"),
    (["--request-rate", "-1"], "out of range"),
    (["--tpot-ms", "nan"], "out of range"),
    (["--input-tokens", "0"], "out of range"),
    (["--input-tokens", "40000", "--output-tokens", "2000"], "window"),
    (["--speculative-tokens", "2"], "MTP head"),
    (["--engine", "hf"], "continuous-batching"),
    (["--bogus", "1"], "No such option"),
])
def test_bad_input_is_one_line_exit_2(args, words):
    base = ["speed", "8b", "--gpu", "h100"] + ([] if "--engine" in args else ["--engine", "vllm"])
    out = run(*base, *args)
    assert out.returncode == 2, out.stdout
    assert out.stderr.count("\n") == 1 and words in out.stderr, out.stderr


def test_a_gpu_without_speed_figures_is_refused():
    out = run("speed", "8b", "--gpu-memory", "80GiB")
    assert out.returncode == 2 and "FLOP/s and memory bandwidth" in out.stderr


def test_calibrate_speed_on_the_fixture_and_a_vllm_result(tmp_path):
    out = run("calibrate", "--speed", str(FIXTURE), "--json")
    assert out.returncode == 0, out.stderr
    doc = json.loads(out.stdout)
    assert [r["id"] for r in doc["rows"]] == ["test-fit-1", "test-fit-2", "test-held-1", "test-held-2"]
    assert set(doc["held_out_bands"]) == {"vllm", "sglang"}
    result = {"model_id": "Qwen/Qwen3-8B", "num_prompts": 200, "request_rate": "inf", "max_concurrency": 16,
              "completed": 200, "total_input_tokens": 204800, "total_output_tokens": 51200,
              "median_ttft_ms": 75.0, "mean_ttft_ms": 80.0, "median_tpot_ms": 16.5, "mean_tpot_ms": 17.0,
              "request_throughput": 3.3, "output_throughput": 850.0, "total_token_throughput": 4250.0}
    path = tmp_path / "vllm-result.json"
    path.write_text(json.dumps(result))
    out = run("calibrate", "--speed", str(path), "--gpu", "h100", "--engine-version", "0.11.0", "--json")
    assert out.returncode == 0, out.stderr
    row = json.loads(out.stdout)["rows"][0]
    assert row["figures"]["tpot"]["measured"] == 16.5 and row["figures"]["throughput"]["measured"] == 850.0
    out = run("calibrate", "--speed", str(path))
    assert out.returncode == 2 and "--gpu" in out.stderr
    # the server's start-up log: its release and running cap (8 of the 16 users) reach the model; the other eight
    # wait in the queue, so TTFT grows and the decode batch, so TPOT, shrinks
    log = tmp_path / "serve.log"
    log.write_text("INFO 10-20 10:00:01 [utils.py:233] non-default args: {'model': 'Qwen/Qwen3-8B', 'max_num_seqs': 8}\n"
                   "INFO 10-20 10:00:15 [core.py:77] Initializing a V1 LLM engine (v0.11.0) with config: "
                   "model='Qwen/Qwen3-8B', dtype=torch.bfloat16, max_seq_len=40960, tensor_parallel_size=1, "
                   "pipeline_parallel_size=1, data_parallel_size=1, quantization=None, enforce_eager=False, "
                   "kv_cache_dtype=auto, device_config=cuda\n")
    out = run("calibrate", "--speed", str(path), "--gpu", "h100", "--server-log", str(log), "--json")
    assert out.returncode == 0, out.stderr
    capped = json.loads(out.stdout)["rows"][0]["figures"]
    assert capped["ttft"]["predicted"] > row["figures"]["ttft"]["predicted"]
    assert capped["tpot"]["predicted"] < row["figures"]["tpot"]["predicted"]
    out = run("calibrate", "--speed", str(path), "--gpu", "h100", "--server-log", str(log), "--tp", "2")
    assert out.returncode == 2 and "contradicts the server log" in out.stderr and len(out.stderr.splitlines()) == 1
    out = run("calibrate", "--speed", "--server-log", str(log))
    assert out.returncode == 2 and "--server-log does nothing here" in out.stderr
    path.write_text(json.dumps({**result, "completed": "x"}))
    out = run("calibrate", "--speed", str(path), "--gpu", "h100")
    assert out.returncode == 2 and "whole number" in out.stderr
