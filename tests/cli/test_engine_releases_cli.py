"""The CLI of issue G: --engine-version, --interconnect, --engine accelerate, the step budget, what to change."""

from __future__ import annotations

import json

from test_cli import run


def engine_json(*args: str) -> dict:
    p = run("plan", *args, "--json")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_14b_h100_old_and_current_vllm_differ_by_cited_rules():
    old = engine_json("14b", "--engine", "vllm", "--gpu", "h100", "--engine-version", "0.11.0")["engine"]
    new = engine_json("14b", "--engine", "vllm", "--gpu", "h100")["engine"]
    assert (old["version"], new["version"]) == ("0.11.0", "0.33.0")
    assert old["rules"]["sampler"] == "native" and new["rules"]["sampler"] == "v2"
    assert old["ranks"][0]["activation_peak_bytes"] > new["ranks"][0]["activation_peak_bytes"]
    assert old["kv_cache_tokens"] < new["kv_cache_tokens"]
    assert any("topk_topp_sampler.py@v0.11.1" in n for n in old["notes"])
    assert any("model_runner.py@v0.27.1" in n for n in new["notes"])
    text = run("plan", "14b", "--engine", "vllm", "--gpu", "h100", "--engine-version", "0.11.0").stdout
    assert "vllm 0.11.0 (vLLM 0.11.0 rules)" in text


def test_235b_largest_batch_is_bounded_by_kv_room():
    doc = engine_json("235b", "--tp", "8", "--pp", "2")
    assert doc["workload"]["step_tokens"] == 8192
    rank = doc["ranks"][0]
    per_seq = rank["bytes"]["kv_cache"]                       # batch 1: one sequence of 8,192 tokens
    by_kv = (rank["free_bytes"] + per_seq) // per_seq
    assert by_kv - 2 <= doc["max_batch"] <= by_kv


def test_interconnect_changes_the_runtime_and_is_reported():
    nv = engine_json("32b", "--tp", "4", "--gpu", "h100")
    pcie = engine_json("32b", "--tp", "4", "--gpu", "h100", "--interconnect", "pcie")
    assert nv["cluster"]["interconnect"] == "nvswitch" and pcie["cluster"]["interconnect"] == "pcie"
    assert nv["ranks"][0]["runtime_components"]["nvls"] > 0 and pcie["ranks"][0]["runtime_components"]["nvls"] == 0
    assert pcie["ranks"][0]["bytes"]["runtime"] < nv["ranks"][0]["bytes"]["runtime"]
    bad = run("plan", "8b", "--interconnect", "infiniband")
    assert bad.returncode == 2 and "accepted: nvswitch, nvlink, pcie" in bad.stderr


def test_accelerate_device_map_over_pp_gpus():
    doc = engine_json("8b", "--pp", "2", "--engine", "accelerate", "--gpu", "l40s")["engine"]
    assert doc["engine"] == "accelerate" and len(doc["ranks"]) == 2 and doc["starts"]
    assert sum(r["layers"] for r in doc["ranks"]) == 36
    off = engine_json("32b", "--pp", "2", "--engine", "accelerate", "--max-memory", "30GiB,cpu=100GiB")["engine"]
    assert not off["starts"] and "offloads" in off["refusal"]


def test_what_to_change_in_json_and_text():
    doc = engine_json("32b", "--engine", "vllm", "--gpu", "l40s")["engine"]
    assert not doc["starts"] and "--tensor-parallel-size 2" in doc["suggestion"]
    text = run("plan", "32b", "--engine", "vllm", "--gpu", "l40s").stdout
    assert "what to change: vllm serve Qwen/Qwen3-32B --tensor-parallel-size 2" in text


def test_bad_release_and_misplaced_release_flags():
    p = run("plan", "8b", "--engine", "vllm", "--engine-version", "0.7.0")
    assert p.returncode == 2 and "older than the oldest" in p.stderr and len(p.stderr.splitlines()) == 1
    p = run("plan", "8b", "--engine-version", "0.11.0")
    assert p.returncode == 2 and "--engine-version does nothing without --engine" in p.stderr
    p = run("plan", "8b", "--engine", "vllm", "--engine-version", "0.10.0", "--kv-cache-memory-bytes", "20GiB")
    assert p.returncode == 0 and "does not exist in vLLM 0.9.1–0.10.1 rules" in p.stdout
