"""An 80-column terminal: every command's output fits, nothing is clipped with '…' (narrow tables fold their
cells onto a second line by design; render/tables.new_table). Each command runs on a pseudo-terminal 80 columns
wide, as in a terminal window (piped output keeps 160 columns for scripts)."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import struct
import subprocess
import sys
import termios
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
def test_fits_80_columns(args, tmp_path):
    returncode, out = on_terminal([str(SHARDSIM), *args.split()], columns=80, stderr_path=tmp_path / "stderr")
    assert returncode == 0, out[-2000:] + (tmp_path / "stderr").read_text()[-2000:]
    lines = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", out).replace("\r", "").splitlines()
    assert lines
    assert [line for line in lines if cell_len(line) > 80] == []
    assert [line for line in lines if "…" in line] == []


def on_terminal(argv: list[str], columns: int, stderr_path: Path) -> tuple[int, str]:
    """Run ``argv`` with its stdout on a pseudo-terminal ``columns`` wide; (exit code, what it wrote). Its stderr goes
    to ``stderr_path``: on a terminal it would carry the transient progress bar (``cli.common.Progress``, shown when
    a command runs past a second, as on a loaded machine), whose redraws a terminal overwrites and erases but a
    capture keeps side by side."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if k not in ("COLUMNS", "LINES")} | {"NO_COLOR": "1"}
    with open(stderr_path, "wb") as err:
        proc = subprocess.Popen(argv, stdout=follower, stderr=err, stdin=subprocess.DEVNULL, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            data = os.read(leader, 65536)
        except OSError:   # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(leader)
    return proc.wait(timeout=120), b"".join(chunks).decode("utf-8", "replace")
