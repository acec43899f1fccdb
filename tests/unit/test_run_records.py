"""What a validation run keeps, without Ray or torch: results.jsonl lines written whole or not at all under a real
file-size limit, run folders and run ids no two runs share, checkpoint temp files removed (on error, and those of
killed writers), signals raised at once outside Ray and deferred inside it, a setup timeout naming the address the
process group meets at. Under 2 s for the module.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from shardsim.launch.checkpoints.temps import STALE_TEMP_AGE_S, TEMP_MARK, remove_stale, temp_path, written
from shardsim.launch.session.phases import RunState, blame_timeout
from shardsim.launch.session.results import ResultsFile, new_run_dir
from shardsim.launch.session.signals import Interrupted, catch_signals, ray_waits, restore_signals
from shardsim.launch.session.worker import Rendezvous

APPEND_UNDER_LIMIT = """
import json, os, resource, signal, sys
from pathlib import Path
from shardsim.launch.session.results import ResultsFile
path = Path(sys.argv[1])
results = ResultsFile(path, "run-a")
results.append({"event": "start"})
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # so that a write past the limit raises EFBIG, not a signal
resource.setrlimit(resource.RLIMIT_FSIZE, (path.stat().st_size + 40, resource.RLIM_INFINITY))
try:
    results.append({"event": "result", "payload": "x" * 500})
except OSError as exc:
    print(json.dumps({"errno": exc.errno, "filename": exc.filename}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_FSIZE and SIGXFSZ as Linux has them")
def test_a_record_the_disk_cannot_take_leaves_no_partial_line(tmp_path):
    """The second record hits the file-size limit mid-line (40 of its ~530 bytes fit): the write fails with
    EFBIG naming the file, and the file holds exactly the first line, whole."""
    path = tmp_path / "results.jsonl"
    proc = subprocess.run([sys.executable, "-c", APPEND_UNDER_LIMIT, str(path)], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr[-2000:]
    error = json.loads(proc.stdout)
    assert error == {"errno": 27, "filename": str(path)}  # EFBIG
    lines = path.read_text().splitlines(keepends=True)
    assert len(lines) == 1 and lines[0].endswith("\n")
    assert json.loads(lines[0]) == {"event": "start", "run_id": "run-a"}


def test_every_record_carries_the_run_id(tmp_path):
    results = ResultsFile(tmp_path / "results.jsonl", "run-b")
    for event in ("start", "setup", "result"):
        results.append({"event": event})
    assert [json.loads(line)["run_id"] for line in results.path.read_text().splitlines()] == ["run-b"] * 3


def test_run_folders_started_in_the_same_second_do_not_collide(tmp_path):
    """One process, 50 folders within a second; then four processes at once, 25 each: all distinct."""
    made = [new_run_dir(tmp_path / "one", "small-tp2") for _ in range(50)]
    assert len({path for path, _ in made}) == 50 and len({run_id for _, run_id in made}) == 50
    assert all(path.name.startswith(run_id) and path.is_dir() for path, run_id in made)
    code = ("import sys; from pathlib import Path; from shardsim.launch.session.results import new_run_dir\n"
            "[new_run_dir(Path(sys.argv[1]), 'x') for _ in range(25)]")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(tmp_path / "many")]) for _ in range(4)]
    assert all(p.wait(timeout=60) == 0 for p in procs)
    assert len(list((tmp_path / "many").iterdir())) == 100


def test_a_checkpoint_file_is_whole_or_absent(tmp_path):
    final = tmp_path / "model-00001-of-00001.safetensors"
    with pytest.raises(OSError):
        with written(final) as tmp:
            tmp.write_bytes(b"half a shard")
            raise OSError(28, "No space left on device")
    assert list(tmp_path.iterdir()) == []
    with written(final) as tmp:
        tmp.write_bytes(b"a shard")
    assert final.read_bytes() == b"a shard" and list(tmp_path.iterdir()) == [final]


def test_stale_temps_of_killed_writers_are_removed(tmp_path):
    """A temp whose writer's process is gone goes; a live writer's stays, unless untouched for an hour."""
    folder = tmp_path / "checkpoints" / "small-L2-seed0"
    folder.mkdir(parents=True)
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    dead = folder / f".a.safetensors{TEMP_MARK}-{socket.gethostname()}-{child.pid}"
    live = temp_path(folder / "b.safetensors")  # this process: alive
    old = temp_path(folder / "c.safetensors")
    for path in (dead, live, old):
        path.write_bytes(b"x" * 1024)
    hours_ago = time.time() - STALE_TEMP_AGE_S - 60
    os.utime(old, (hours_ago, hours_ago))
    assert remove_stale(tmp_path / "checkpoints") == 2
    assert sorted(p.name for p in folder.iterdir()) == [live.name]


def test_a_signal_stops_at_once_outside_ray_and_between_waits_inside():
    previous = catch_signals()
    try:
        with pytest.raises(Interrupted) as outside:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        assert outside.value.signal_name == "SIGTERM"
        previous_inner = catch_signals()
        reached_end_of_block = False
        with pytest.raises(Interrupted):
            with ray_waits():
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(0.05)  # only noted here: Ray's wait must not see an exception
                reached_end_of_block = True
        assert reached_end_of_block
        restore_signals(previous_inner)
    finally:
        restore_signals(previous)


def test_a_setup_timeout_names_the_address_the_group_meets_at(tmp_path):
    state = RunState({}, ResultsFile(tmp_path / "results.jsonl", "run-c"))
    state.meeting = Rendezvous("10.213.0.1", 29500, {}, 2)
    blame_timeout("setup", [0, 1], SimpleNamespace(phase_timeout_s=300.0), state)
    assert state.failed[1] == ("no answer within the 300 s timeout of phase 'setup' (the process group meets at "
                               "10.213.0.1:29500, rank 0's node)")


def test_only_workers_on_the_drivers_node_are_checked_for_a_stop(tmp_path):
    """A process id from another host means nothing here: the other node's rank is never called stopped."""
    state = RunState({}, ResultsFile(tmp_path / "results.jsonl", "run-d"))
    state.here, state.nodes, state.pids = "10.213.0.1", {0: "10.213.0.1", 1: "10.213.0.2"}, {0: 1, 1: os.getpid()}
    assert state.local(0) and not state.local(1)

