"""Validation under faults on a small Qwen3 config (64 wide, 2 layers): SIGTERM and Ctrl-C stop the workers with one
line and an ``interrupted`` record; a frozen (SIGSTOPped) worker is named by rank; a real two-node Ray cluster on
this machine (``ray start --head`` with 2 CPUs plus a second node with 1 CPU) places four ranks and passes.

Slow: about 20 s per run through Ray, about 2 min for the module.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import SMALL

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
EXE = str(BIN / "shardsim")


def small(tmp_path: Path) -> str:
    path = tmp_path / "small.json"
    path.write_text(json.dumps(SMALL))
    return str(path)


def env(tmp_path: Path) -> dict:
    return {**os.environ, "SHARDSIM_CACHE": str(tmp_path / "cache"), "RAY_AUTH_MODE": "disabled"}


def events(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "results.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_signal_stops_the_run_with_one_line_and_a_record(tmp_path, sig, code):
    """About 20 s each: the signal arrives once the workers run their phases."""
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([EXE, "validate", "--config", small(tmp_path), "--tp", "2", "--context", "32",
                             "--run-dir", str(run_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env(tmp_path))
    deadline = time.time() + 120
    while time.time() < deadline and not any(e["event"] == "setup" for e in (events(run_dir) if
                                                                          (run_dir / "results.jsonl").exists() else [])):
        time.sleep(0.5)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("shardsim: interrupted by " + sig.name) and "during phase '" in last, err[-2000:]
    assert "Traceback" not in err
    record = events(run_dir)[-1]
    assert record["event"] == "interrupted" and record["signal"] == sig.name and record["phase"] in ("load", "forward",
                                                                                                      "measure")


def test_a_stopped_worker_is_named_by_rank(tmp_path):
    """About 30 s: rank 1 SIGSTOPs itself in the forward phase; the 15 s phase timeout names it, not everyone."""
    run_dir = tmp_path / "run"
    proc = subprocess.run([EXE, "validate", "--config", small(tmp_path), "--tp", "2", "--context", "32", "--json",
                           "--inject-fault", "1:forward:stop", "--timeout", "15", "--run-dir", str(run_dir)],
                          capture_output=True, text=True, timeout=240, env=env(tmp_path))
    assert proc.returncode == 1, proc.stderr[-2000:]
    failed = json.loads(proc.stdout)["failed"]
    assert "stopped" in failed["1"], failed
    assert "waiting on stopped rank 1" in failed.get("0", "waiting on stopped rank 1"), failed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_node_ray_cluster_with_unequal_nodes(tmp_path):
    """About 60 s: a head node with 2 CPUs and a worker node with 1 CPU; four ranks must be placed on both (0.67 CPU
    each), where an even split of the total (0.75) would leave one rank with no node."""
    port = _free_port()
    # Ray's sockets live under RAY_TMPDIR, whose path must stay short (a Unix socket path holds 107 bytes).
    ray_env = {**env(tmp_path), "RAY_TMPDIR": tempfile.mkdtemp(prefix="rt", dir="/tmp")}
    ray = str(BIN / "ray")
    start = [ray, "start", "--disable-usage-stats"]
    try:
        for args in (["--head", f"--port={port}", "--num-cpus=2", "--include-dashboard=false"],
                     [f"--address=127.0.0.1:{port}", "--num-cpus=1"]):
            node = subprocess.run(start + args, capture_output=True, text=True, env=ray_env, timeout=120)
            assert node.returncode == 0, node.stderr[-2000:]
        proc = subprocess.run([EXE, "validate", "--config", small(tmp_path), "--tp", "2", "--dp", "2", "--context",
                               "32", "--address", f"127.0.0.1:{port}", "--json", "--timeout", "120",
                               "--run-dir", str(tmp_path / "run")],
                              capture_output=True, text=True, timeout=400, env=ray_env)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert json.loads(proc.stdout)["passed"] is True
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True, env=ray_env, timeout=120)
