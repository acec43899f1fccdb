"""Terminal habits: --version, -h, completion, k-suffixed counts, the model's window guarded."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import shardsim
from shardsim.units import parse_count

SHARDSIM = Path(sys.executable).parent / "shardsim"


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(SHARDSIM), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def test_version_and_short_help():
    assert run("--version").stdout == f"shardsim {shardsim.__version__}\n"
    assert run("-V").returncode == 0
    for args in (["-h"], ["plan", "-h"], ["review", "-h"]):
        p = run(*args)
        assert p.returncode == 0 and p.stdout.startswith("Usage: shardsim"), args


def test_completion_answers_commands_and_flags():
    p = run(env={"_SHARDSIM_COMPLETE": "complete_bash", "COMP_WORDS": "shardsim pl", "COMP_CWORD": "1"})
    assert p.stdout.split() == ["plan"]
    p = run(env={"_SHARDSIM_COMPLETE": "complete_bash", "COMP_WORDS": "shardsim plan --engine-v", "COMP_CWORD": "2"})
    assert p.stdout.split() == ["--engine-version"]


@pytest.mark.parametrize("text, value", [("8", 8), ("8k", 8192), ("32K", 32768), ("4Ki", 4096), ("1M", 1 << 20),
                                         ("1.5k", None), ("08", None), ("8 k", None), ("+8", None), ("8kb", None)])
def test_counts_take_k_and_m_suffixes(text, value):
    assert parse_count(text) == value


def test_context_in_k_and_the_window():
    record = json.loads(run("plan", "8b", "--context", "32k", "--json").stdout)
    assert record["workload"]["context"] == 32 * 1024
    # Qwen3-8B: max_position_embeddings 40,960
    p = run("plan", "8b", "--context", "64k")
    assert p.returncode == 2 and "beyond Qwen3-8B's window of 40,960" in p.stderr and "--rope-scaling" in p.stderr
    # YaRN factor 4 over 32,768 (Qwen3's model card) = 131,072
    record = json.loads(run("plan", "8b", "--context", "128k", "--rope-scaling", "yarn:4:32768", "--json").stdout)
    assert record["workload"]["context"] == 131_072 and record["max_context"] == 131_072
    assert run("plan", "8b", "--rope-scaling", "linear:2").returncode == 2


def test_calibrate_prints_the_measured_start_verdict():
    db = Path(__file__).resolve().parent.parent / "data" / "measurements.jsonl"
    rows = json.loads(run("calibrate", str(db), "--json").stdout)["rows"]
    failed_starts = [r for r in rows if r["starts_predicted"] is not None and not r["starts_measured"]]
    assert failed_starts   # the database holds OOM and refused starts
    text = run("calibrate", str(db)).stdout
    starts_lines = [line.split("│") for line in text.splitlines() if "│ starts " in line]
    assert sum(cells[4].strip() == "no" for cells in starts_lines) == len(failed_starts)
