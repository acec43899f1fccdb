"""plan --train from the command line: the done-when commands, JSON fields, refusals."""

from __future__ import annotations

import json

import pytest
from test_cli import run

GiB = 1 << 30


def train_json(*args: str) -> dict:
    p = run("plan", *args, "--train", "--json")
    assert p.returncode == 0, p.stderr
    return json.loads(p.stdout)


def test_14b_zero3_and_zero2_at_16k_on_8_h100():
    three = train_json("14b", "--framework", "deepspeed", "--zero", "3", "--dp", "8", "--gpu", "h100",
                       "--seq-len", "16384", "--micro-batch", "1")
    two = train_json("14b", "--framework", "deepspeed", "--zero", "2", "--dp", "8", "--gpu", "h100",
                     "--seq-len", "16384", "--micro-batch", "1")
    for doc in (three, two):
        assert len(doc["ranks"]) == 8 and {"fits", "peak_rank", "max_micro_batch", "max_seq_len"} <= set(doc)
        b = doc["ranks"][0]["bytes"]
        assert {"weights", "master_weights", "grads", "optimizer", "activations", "peak_allocated", "total"} <= set(b)
        assert b["total"] > b["peak_allocated"]
    # ZeRO-3 partitions the bf16 weights that ZeRO-2 keeps whole; master, grads and optimizer shard in both
    assert three["ranks"][0]["bytes"]["weights"] < two["ranks"][0]["bytes"]["weights"] / 7
    assert three["ranks"][0]["bytes"]["optimizer"] == pytest.approx(two["ranks"][0]["bytes"]["optimizer"], rel=1e-3)
    text = run("plan", "14b", "--train", "--zero", "2", "--dp", "8", "--gpu", "h100", "--seq-len", "16384").stdout
    assert "DOES NOT FIT: DeepSpeed ZeRO-2 OOMs by" in text and "on rank 3" in text


def test_verdict_names_the_cheapest_strategy_that_fits():
    text = run("plan", "14b", "--train", "--zero", "2", "--dp", "8", "--gpu", "h100", "--seq-len", "3072").stdout
    assert "DeepSpeed ZeRO-2 OOMs by" in text and "ZeRO-3 fits with" in text


def test_lora_and_qlora_on_one_h100():
    lora = train_json("32b", "--lora-rank", "16", "--gpu", "h100", "--recompute", "full")
    qlora = train_json("32b", "--lora-rank", "16", "--qlora", "--gpu", "h100", "--recompute", "full")
    assert lora["fits"] and qlora["fits"]
    assert qlora["ranks"][0]["bytes"]["weights"] < lora["ranks"][0]["bytes"]["weights"] / 3


def test_megatron_tp2_pp2_stages_differ():
    doc = train_json("8b", "--framework", "megatron", "--tp", "2", "--pp", "2", "--dp", "2", "--grad-accum", "8",
                     "--distributed-optimizer", "--sequence-parallel")
    stage0 = [r for r in doc["ranks"] if r["pp_rank"] == 0]
    stage1 = [r for r in doc["ranks"] if r["pp_rank"] == 1]
    # 1F1B: stage 0 keeps 2 micro-batches in flight, stage 1 one (and the logits)
    assert stage0[0]["bytes"]["activations"] != stage1[0]["bytes"]["activations"]
    assert len(stage0) == len(stage1) == 4


def test_offload_reports_host_memory_per_node():
    doc = train_json("14b", "--zero", "3", "--dp", "8", "--offload-optimizer", "--host-memory", "2TiB")
    assert doc["host_bytes_per_node"] > 0 and doc["ranks"][0]["bytes"]["optimizer"] == 0


@pytest.mark.parametrize("args,message", [
    (["--train", "--framework", "megatron", "--zero", "2"], "--zero is DeepSpeed's"),
    (["--train", "--ep", "2"], "dense"),
    (["--train", "--lora-rank", "99999"], "above the hidden size"),
    (["--train", "--zero", "2", "--offload-optimizer"], "needs a CPU budget"),
    (["--micro-batch", "4"], "does nothing without --train"),
    (["--train", "--context", "100"], "does nothing with --train"),
])
def test_training_refusals_are_one_line(args, message):
    p = run("plan", "8b", *args)
    assert p.returncode == 2 and message in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_qlora_with_fp8_weights_is_refused():
    p = run("plan", "32b-fp8", "--train", "--lora-rank", "8", "--qlora")
    assert p.returncode == 2 and "fp8" in p.stderr


def test_training_review_ranks_strategies_and_clusters_by_cost(tmp_path):
    p = run("review", "--workload", "train-example", "--json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["task"] == "train" and doc["options"]
    for model in {o["model"] for o in doc["options"]}:
        costs = [o["cost_usd"] for o in doc["options"] if o["model"] == model and o["cost_usd"] is not None]
        assert costs == sorted(costs)
    # each option is the fewest GPUs of that cluster: one fewer does not fit (the planner says so)
    first = doc["options"][0]
    assert first["peak_bytes"] > 0 and first["gpus"] >= 1
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: train\nmodels:\n  - model: 8b\n    strategies: [zero9]\n")
    p = run("review", "--workload", str(bad))
    assert p.returncode == 2 and "line 4" in p.stderr and "zero9" in p.stderr


def test_pipeline_step_defaults_to_pp_micro_batches():
    # without --grad-accum a pipeline step runs pp micro-batches (fewer would leave stages idle): stage 0 of 2 then
    # holds 2 in flight, exactly twice the activations of one micro-batch (--grad-accum 1)
    default = train_json("8b", "--framework", "torch", "--pp", "2", "--gpu", "h100", "--seq-len", "2048")
    one = train_json("8b", "--framework", "torch", "--pp", "2", "--gpu", "h100", "--seq-len", "2048",
                     "--grad-accum", "1")
    assert default["setup"]["grad_accum"] == 2 and one["setup"]["grad_accum"] == 1
    assert default["ranks"][0]["bytes"]["activations"] == 2 * one["ranks"][0]["bytes"]["activations"]
    assert default["ranks"][1]["bytes"]["activations"] == one["ranks"][1]["bytes"]["activations"]


def test_megatron_optimizer_offload_moves_master_and_adam_to_the_host():
    on_gpu = train_json("8b", "--framework", "megatron", "--tp", "2", "--dp", "4", "--distributed-optimizer")
    off = train_json("8b", "--framework", "megatron", "--tp", "2", "--dp", "4", "--distributed-optimizer",
                     "--offload-optimizer", "--host-memory", "1TiB")
    b, o = on_gpu["ranks"][0]["bytes"], off["ranks"][0]["bytes"]
    assert o["master_weights"] == o["optimizer"] == 0 and o["weights"] == b["weights"] and o["grads"] == b["grads"]
    # a node of 8 GPUs holds 8 ranks' shards of master (4 B) and Adam (8 B): 12 B × the local parameters / dp each
    assert off["host_bytes_per_node"] == 8 * (b["master_weights"] + b["optimizer"])


def test_cluster_host_memory_is_the_default_offload_budget():
    # DGX H100: 2 TB of system memory per node (cluster_specs/h100-1x8.yaml host_memory: 2TiB)
    args = ["train", "235b", "--framework", "deepspeed", "--zero", "3", "--dp", "8", "--offload-optimizer",
            "--offload-params", "--cluster", "h100-1x8", "--json"]
    d = json.loads(run(*args).stdout)
    assert d["host_bytes_per_node"] > 2 * 2**40
    assert any("the node has 2048.00 GiB" in w for w in d["warnings"])
    d = json.loads(run(*args, "--host-memory", "4TiB").stdout)   # the flag overrides the spec
    assert d["host_bytes_per_node"] <= 4 * 2**40 and not any("host memory" in w for w in d["warnings"])


def test_lora_rank_zero_is_refused_not_full_fine_tuning():
    p = run("train", "8b", "--lora-rank", "0")
    assert p.returncode == 2 and "trains no adapter" in p.stderr and p.stderr.count("\n") == 1
