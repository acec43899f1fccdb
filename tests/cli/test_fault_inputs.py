"""Inputs that once ran for minutes or ended in a traceback, each refused in one line with exit 2 within seconds:
a workload file of 5,000 rows (250 KB, under every size limit; it died of MemoryError), and a safetensors header
nested 100,000 deep (a RecursionError) given to ``validate --checkpoint`` and to ``plan FOLDER``. About 6 s for the
module.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import SMALL

from shardsim.constants import MAX_SAFETENSORS_HEADER_DEPTH, MAX_WORKLOAD_MODELS

EXE = str(Path(sys.executable).parent / "shardsim")


def one_line_exit_2(args: list[str], limit_s: float = 20) -> str:
    t0 = time.time()
    proc = subprocess.run([EXE, *args], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("shardsim: error: ") and "Traceback" not in proc.stderr, \
        proc.stderr[-2000:]
    assert time.time() - t0 < limit_s
    return lines[0]


@pytest.mark.parametrize("task", ["serve", "train"])
def test_a_workload_of_5000_rows_is_refused_naming_the_limit(tmp_path, task):
    if task == "serve":
        rows = "".join(f"  - model: 0.6b\n    context: {1024 + i}\n    concurrency: 4\n" for i in range(5000))
    else:
        rows = "".join(f"  - model: 0.6b\n    seq_len: {1024 + i}\n    strategies: [zero2]\n" for i in range(5000))
    path = tmp_path / "big.yaml"
    path.write_text(("task: train\n" if task == "train" else "") + "models:\n" + rows)
    assert 200_000 < path.stat().st_size < 300_000
    line = one_line_exit_2(["review", "--workload", str(path)])
    assert "5,000 entries" in line and f"at most {MAX_WORKLOAD_MODELS}" in line and "field 'models'" in line


def test_a_workload_at_the_limit_is_read(tmp_path):
    """The bound refuses only what is over it: a file of exactly the limit's entries gets past it (its first
    error is a later one, an unknown model, found after the size check)."""
    rows = "".join(f"  - model: 0.6b\n    context: {1024 + i}\n" for i in range(MAX_WORKLOAD_MODELS - 1))
    path = tmp_path / "at.yaml"
    path.write_text("models:\n" + rows + "  - model: no-such-model\n")
    assert "no-such-model" in one_line_exit_2(["review", "--workload", str(path)])


def deep_checkpoint(folder: Path) -> Path:
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(SMALL))
    header = ('{"a":' * 100_000 + "1" + "}" * 100_000).encode()
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header)
    return folder


def test_a_deeply_nested_safetensors_header_is_one_line(tmp_path):
    folder = deep_checkpoint(tmp_path / "deep")
    for args in (["validate", "--config", str(folder / "config.json"), "--checkpoint", str(folder), "--context",
                  "32", "--run-dir", str(tmp_path / "run")],
                 ["plan", str(folder)]):
        line = one_line_exit_2(args)
        assert "model.safetensors" in line and f"nested deeper than {MAX_SAFETENSORS_HEADER_DEPTH} levels" in line
