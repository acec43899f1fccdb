"""An 80-column terminal: every command's output fits, nothing is clipped with '…' (narrow tables fold their
cells onto a second line by design; render/tables.new_table)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.cells import cell_len

SHARDSIM = Path(sys.executable).parent / "shardsim"
DB = Path(__file__).resolve().parent.parent / "data" / "measurements.jsonl"


@pytest.mark.parametrize("args", [
    "plan 235b --tp 8 --pp 2", "plan 32b --engine vllm --gpu h100", "plan 30b-a3b --engine sglang --tp 2 --ep 2",
    "plan Qwen/Qwen3.5-35B-A3B --engine sglang --tp 2 --gpu h100", "plan qwen3-next-80b-a3b --engine vllm --gpu h200",
    "plan 8b --engine hf", "plan 14b --engine accelerate --pp 2 --max-memory 20GiB,cpu=64GiB --gpu-memory 24GiB",
    "train 8b --framework deepspeed --zero 3 --dp 8", "models", "gpus", "clusters", "report",
    "review --model 32b --context 32768 --concurrency 16", "sweep 8b --contexts 4k,32k --batches 1,8",
    f"calibrate {DB}",
])
def test_fits_80_columns(args):
    p = subprocess.run([str(SHARDSIM), *args.split()], capture_output=True, text=True, timeout=120,
                       env={**os.environ, "COLUMNS": "80"})
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines
    assert [line for line in lines if cell_len(line) > 80] == []
    assert [line for line in lines if "…" in line] == []
