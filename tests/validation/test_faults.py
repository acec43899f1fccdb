"""Validation under faults on a small Qwen3 config (64 wide, 2 layers): SIGTERM and Ctrl-C stop the workers with one
line and an ``interrupted`` record (inference and ``--train``); a frozen (SIGSTOPped) worker is named by rank
(inference and ``--train``); a real two-node Ray cluster on this machine (``ray start --head`` with 2 CPUs plus a
second node with 1 CPU) places four ranks and passes.

The faults of the run around the workers (``session.lifecycle``), each at an exact point (``faulty_shardsim.py``)
or under a real file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored: a write past it fails with EFBIG as a full disk
fails with ENOSPC; no root needed, unlike a tiny tmpfs): a signal during the checkpoint write or the reference
check, a full disk for results.jsonl, for the checkpoint, and after the run passed; a killed writer's temp file
removed by the next run; two runs started together in one folder. Each ends in one line, its exit code (1 failed,
130 / 143 a signal) and an ``interrupted`` or ``failed`` record where the disk takes one.

The runs before Ray are not marked slow (3–5 s each); the runs through Ray are (about 20 s each, 30 s with a
timeout); about 4 min for the module.
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


@pytest.mark.slow
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


@pytest.mark.slow
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


@pytest.mark.slow
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


# ---------------------------------------------------------------- validate --train under signals and a stop
def wait_for_event(proc: subprocess.Popen, run_dir: Path, event: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if (run_dir / "results.jsonl").exists() and any(e["event"] == event for e in events(run_dir)):
            return
        time.sleep(0.3)
    raise AssertionError(f"no '{event}' record within {timeout} s (exit {proc.poll()})")


@pytest.mark.slow
@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_during_train_is_one_line_and_a_record(tmp_path, sig, code):
    """About 20 s each: FSDP2 on two ranks; the signal arrives once both joined the process group (the train
    phase is running). Before: a 58-line traceback, exit 1, no record."""
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([EXE, "validate", "--config", small(tmp_path), "--train", "--backend", "fsdp", "--dp", "2",
                             "--run-dir", str(run_dir)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env(tmp_path))
    wait_for_event(proc, run_dir, "setup")
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == code, err[-2000:]
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"shardsim: interrupted by {sig.name} during phase '") and "workers stopped" in last, err
    record = events(run_dir)[-1]
    assert record["event"] == "interrupted" and record["signal"] == sig.name and record["phase"] in ("setup", "train")
    assert len({e["run_id"] for e in events(run_dir)}) == 1


@pytest.mark.slow
def test_a_stopped_rank_under_train_is_named(tmp_path):
    """About 35 s: rank 1 SIGSTOPs itself as training starts; the 15 s phase timeout names it, rank 0 waits on it."""
    proc = subprocess.run([EXE, "validate", "--config", small(tmp_path), "--train", "--backend", "fsdp", "--dp", "2",
                           "--json", "--inject-fault", "1:train:stop", "--timeout", "15", "--run-dir",
                           str(tmp_path / "run")], capture_output=True, text=True, timeout=240, env=env(tmp_path))
    assert proc.returncode == 1, proc.stderr[-2000:]
    failed = json.loads(proc.stdout)["failed"]
    assert "stopped (SIGSTOP) in phase 'train'" in failed["1"], failed
    assert "waiting on stopped rank 1" in failed.get("0", "waiting on stopped rank 1"), failed


# ---------------------------------------------------------------- the run around the workers
HOOKED = [sys.executable, str(Path(__file__).with_name("faulty_shardsim.py"))]
UNREACHABLE = "127.0.0.1:1"  # nothing listens on port 1: a run stops right after its checkpoint, before Ray


def limited(limit: int):
    """A preexec_fn: files of at most ``limit`` bytes (RLIMIT_FSIZE), a write past it failing with EFBIG."""
    import resource

    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # ignored, so that the write fails instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


def one_line(proc: subprocess.CompletedProcess, code: int) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("checkpoint: ")]
    assert proc.returncode == code and "Traceback" not in proc.stderr, (proc.returncode, proc.stderr[-2000:])
    assert len(lines) == 1, proc.stderr[-2000:]
    return lines[0]


def cached_files(tmp_path: Path) -> list[str]:
    return sorted(p.name for p in (tmp_path / "cache" / "checkpoints").glob("*/*"))


fsize = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="needs RLIMIT_FSIZE and SIGXFSZ (Linux)")


@fsize
def test_results_file_that_cannot_be_written_is_one_line_exit_1(tmp_path):
    """About 4 s: not even the start record fits (100 bytes): one line naming the file, exit 1, no empty file left."""
    run_dir = tmp_path / "run"
    proc = subprocess.run([EXE, "validate", "--config", small(tmp_path), "--context", "32", "--run-dir", str(run_dir)],
                          capture_output=True, text=True, timeout=120, env=env(tmp_path), preexec_fn=limited(100))
    line = one_line(proc, 1)
    assert line.startswith("shardsim: error: cannot write") and "results.jsonl" in line and "File too large" in line
    assert not (run_dir / "results.jsonl").exists()


@fsize
def test_checkpoint_that_cannot_be_written_is_one_line_and_a_failed_record(tmp_path):
    """About 4 s: the start record fits in 64 KiB, the small model's shard (about 330 KB) does not."""
    run_dir = tmp_path / "run"
    proc = subprocess.run([EXE, "validate", "--config", small(tmp_path), "--context", "32", "--run-dir", str(run_dir)],
                          capture_output=True, text=True, timeout=120, env=env(tmp_path), preexec_fn=limited(64 * 1024))
    line = one_line(proc, 1)
    assert "cannot write" in line and ".safetensors" in line and "File too large" in line
    record = events(run_dir)[-1]
    assert record["event"] == "failed" and record["phase"] == "checkpoint" and "File too large" in record["error"]
    assert cached_files(tmp_path) == [".shardsim-lock"]  # no temp file, no partial shard


def test_signal_during_the_checkpoint_write_is_one_line_and_a_record(tmp_path):
    """About 4 s: SIGTERM right after the shard's bytes went to its temp name: exit 143, an interrupted record,
    neither the temp file nor a shard left. Before: silence and no record."""
    run_dir = tmp_path / "run"
    proc = subprocess.run(HOOKED + ["sigterm-at-checkpoint-write", "validate", "--config", small(tmp_path),
                                    "--context", "32", "--run-dir", str(run_dir)],
                          capture_output=True, text=True, timeout=120, env=env(tmp_path))
    line = one_line(proc, 143)
    assert line.startswith("shardsim: interrupted by SIGTERM during phase 'checkpoint'"), line
    assert events(run_dir)[-1] | {"time": 0, "run_id": ""} == {"event": "interrupted", "signal": "SIGTERM",
                                                                 "phase": "checkpoint", "time": 0, "run_id": ""}
    assert cached_files(tmp_path) == [".shardsim-lock"]


def test_a_killed_writers_temp_file_is_removed_by_the_next_run(tmp_path):
    """About 8 s: SIGKILL (no cleanup can run) leaves the shard's temp file; the next run removes it and writes
    the checkpoint whole (it then stops at an unreachable --address, before Ray)."""
    small_config = small(tmp_path)
    killed = subprocess.run(HOOKED + ["sigkill-at-checkpoint-write", "validate", "--config", small_config,
                                      "--context", "32", "--run-dir", str(tmp_path / "first")],
                            capture_output=True, text=True, timeout=120, env=env(tmp_path))
    assert killed.returncode == -signal.SIGKILL
    assert any(".shardsim-tmp-" in name for name in cached_files(tmp_path)), cached_files(tmp_path)
    again = subprocess.run([EXE, "validate", "--config", small_config, "--context", "32", "--address", UNREACHABLE,
                            "--run-dir", str(tmp_path / "second")], capture_output=True, text=True, timeout=120,
                           env=env(tmp_path))
    assert "nothing answers" in one_line(again, 2)
    assert not any(".shardsim-tmp-" in name for name in cached_files(tmp_path)), cached_files(tmp_path)
    assert "shardsim-checkpoint.json" in cached_files(tmp_path)


def test_two_runs_started_together_in_one_folder_keep_apart(tmp_path):
    """About 6 s: two runs started at once from one folder, sharing one cache (one writes the checkpoint while the
    other waits for it, then reuses it): two run folders, each with its own run id on every record. Before: one
    folder, records interleaved."""
    config = small(tmp_path)
    procs = [subprocess.Popen([EXE, "validate", "--config", config, "--context", "32", "--address", UNREACHABLE],
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env(tmp_path)) for _ in range(2)]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 2 and "nothing answers" in err, err[-2000:]
    folders = sorted((tmp_path / "shardsim-runs").iterdir())
    assert len(folders) == 2
    ids = []
    for folder in folders:
        records = events(folder)
        assert [e["event"] for e in records] == ["start", "failed"]
        assert len({e["run_id"] for e in records}) == 1 and folder.name.startswith(records[0]["run_id"])
        ids.append(records[0]["run_id"])
    assert ids[0] != ids[1]


@pytest.mark.slow
def test_signal_during_the_reference_check_is_one_line_and_a_record(tmp_path):
    """About 20 s: SIGTERM as the unsharded reference starts, after every rank measured: exit 143, one line, an
    interrupted record naming the phase. Before: silence and no record."""
    run_dir = tmp_path / "run"
    proc = subprocess.run(HOOKED + ["sigterm-at-reference", "validate", "--config", small(tmp_path), "--tp", "2",
                                    "--context", "32", "--run-dir", str(run_dir)],
                          capture_output=True, text=True, timeout=300, env=env(tmp_path))
    assert proc.returncode == 143 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.strip().splitlines()[-1].startswith("shardsim: interrupted by SIGTERM during phase 'reference'")
    record = events(run_dir)[-1]
    assert record["event"] == "interrupted" and record["phase"] == "reference"


@pytest.mark.slow
@fsize
def test_a_disk_that_fills_after_the_run_passed_keeps_the_verdict_and_no_partial_line(tmp_path):
    """About 20 s: the run passes, then only 100 more bytes fit (the result record is several KB): the verdict is
    still printed (--json), one line says the result was not kept, exit 1; results.jsonl ends with the last whole
    record, no truncated line."""
    run_dir = tmp_path / "run"
    proc = subprocess.run(HOOKED + ["disk-full-at-result", "validate", "--config", small(tmp_path), "--context", "32",
                                    "--json", "--run-dir", str(run_dir)],
                          capture_output=True, text=True, timeout=300, env=env(tmp_path))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["passed"] is True
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("shardsim: error: the run finished but its result was not kept: cannot write") \
        and "results.jsonl" in last, last
    text = (run_dir / "results.jsonl").read_text()
    assert text.endswith("\n") and events(run_dir)[-1]["event"] == "measure"
