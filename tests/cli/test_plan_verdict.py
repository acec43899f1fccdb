"""One verdict per plan (core/verdict.py): exit codes with --check, one KV dtype, bands of the rule set in use."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shardsim.engines.bands import HELD_OUT, band_details

SHARDSIM = Path(sys.executable).parent / "shardsim"


def plan(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SHARDSIM), "plan", *args], capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args, status, code", [
    # 32B bf16 = 61.0 GiB of weights on a 79.2 GiB H100: 14 GiB of headroom at 8k × 1
    (["32b", "--gpu", "h100"], "FITS", 0),
    # 235B bf16 = 438 GiB on one GPU
    (["235b", "--gpu", "h100"], "DOES NOT FIT", 1),
    # vLLM's default max_model_len 40,960 needs 10 GiB of KV; 7.96 GiB are left after the profile
    (["32b", "--gpu", "h100", "--engine", "vllm"], "WILL NOT START", 1),
    # 8 × 8k sequences of KV (8 × 2 GiB) leave 0.11 GiB, less than the band of activations and runtime
    (["32b", "--gpu", "h100", "--batch", "8"], "BORDERLINE", 3),
])
def test_check_exit_codes(args, status, code):
    p = plan(*args, "--check")
    assert p.returncode == code, p.stderr
    assert f"\n{status} · " in p.stdout
    record = json.loads(plan(*args, "--json").stdout)["verdict"]
    assert (record["status"], record["exit_code_with_check"]) == (status, code)
    assert plan(*args).returncode == 0   # without --check the verdict is printed, not returned


def test_the_fix_of_a_plan_that_does_not_fit_fits():
    record = json.loads(plan("235b", "--gpu", "h100", "--json").stdout)["verdict"]
    assert record["fix"] == "--tp 8"      # 438 GiB / 4 = 110 GiB > 79 GiB; / 8 = 55 GiB fits
    assert json.loads(plan("235b", "--gpu", "h100", "--tp", "8", "--json").stdout)["fits"]


def test_one_kv_dtype_for_table_and_engine():
    by_planner = json.loads(plan("32b", "--engine", "vllm", "--gpu", "h100", "--kv-dtype", "fp8", "--json").stdout)
    by_engine = json.loads(plan("32b", "--engine", "vllm", "--gpu", "h100", "--kv-cache-dtype", "fp8", "--json").stdout)
    for record in (by_planner, by_engine):
        assert record["model"]["kv_dtype"] == "fp8" and record["engine"]["knobs"]["kv_cache_dtype"] == "fp8"
        assert record["verdict"]["status"] == "FITS"   # fp8 halves the 10 GiB a 40,960-token request needs
    p = plan("32b", "--engine", "vllm", "--kv-dtype", "bf16", "--kv-cache-dtype", "fp8")
    assert p.returncode == 2 and "one KV dtype per plan" in p.stderr and p.stderr.count("\n") == 1


def test_bands_come_from_the_rule_set_in_use_or_the_nearest_named():
    for engine, table in HELD_OUT.items():
        for label, figures in table.items():
            for figure, row in figures.items():
                b = band_details(engine, label)[figure]
                assert (b.rules, b.band) == (label, row["band"])   # a rule set with rows uses its own
    # vLLM 0.29–0.33 has no held-out row: the nearest rule set with one (0.27–0.28) sets it, and says so
    newest = band_details("vllm", "vLLM 0.29–0.33 rules")["kv_cache_tokens"]
    assert newest.rules == "vLLM 0.27–0.28 rules" and newest.band == HELD_OUT["vllm"]["vLLM 0.27–0.28 rules"][
        "kv_cache_tokens"]["band"]
    out = plan("32b", "--engine", "vllm", "--gpu", "h100").stdout
    assert "(vLLM 0.27–0.28 rules)" in out and "75.3" not in out


def test_explain_shows_the_verdicts_arithmetic_and_each_bands_worst_row():
    out = plan("32b", "--engine", "vllm", "--gpu", "h100", "--explain").stdout
    record = json.loads(plan("32b", "--engine", "vllm", "--gpu", "h100", "--json").stdout)
    peak = record["ranks"][record["peak_rank"]]["bytes"]
    # 61.02 + 2.00 + 1.41 + 0.64 = 65.07 GiB: the most loaded GPU's sum as the table prints it
    assert f"= {peak['total'] / 2**30:.2f} GiB of 79.18 GiB" in out
    for figure, source in record["engine"]["error_band_sources"].items():
        assert f"vllm band: {figure} ±" in out and source["worst_row"][:40] in out.replace("\n", "")
