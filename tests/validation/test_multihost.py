"""Validation across two hosts: a second Ray node in its own network namespace, reached only over a veth pair.

The fixture creates a namespace and a veth pair on private addresses (10.213.0.1/24 on this side, 10.213.0.2/24
inside), starts a Ray head on 10.213.0.1 (2 CPUs) and a worker node inside the namespace on 10.213.0.2 (1 CPU),
and removes all of it afterwards (the Ray processes it started, found by their temp folder, then the namespace,
which takes the veth pair with it). Inside the namespace 127.0.0.1 is the namespace's own loopback: a rank there
that dialled the driver's 127.0.0.1 would reach nothing, which is what every rank was told before the process
group met at rank 0's node (``launch/session/worker.py``).

Neither node can hold every rank (4 ranks at 0.67 CPU: 3 + 1; 3 ranks at 1 CPU: 2 + 1), so both runs place ranks on
both nodes; each rank's node is in the record. Skips, with the reason, where namespaces cannot be made (not root,
no ``ip``, ``ip netns add`` refused, the addresses taken). About 100 s: Ray's two nodes 10 s, TP 2 × PP 2 of the
full Qwen3-0.6B 35 s (the 1.2 GB checkpoint written first), DP 3 30 s.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
EXE, RAY = str(BIN / "shardsim"), str(BIN / "ray")
HOST_IP, NODE_IP, PREFIX = "10.213.0.1", "10.213.0.2", 24  # RFC 1918 private addresses, unlikely to be in use


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _processes_under(mark: str) -> set[int]:
    """The processes whose command line names ``mark`` (our Ray nodes' temp folder) and all their descendants
    (Ray's agents and workers, named ``ray::…``)."""
    parents, marked = {}, set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ")
            parents[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if mark.encode() in cmdline:
            marked.add(int(entry))
    tree, grown = set(marked), True
    while grown:
        children = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= children
        grown = bool(children)
    return tree


def _stop_ray(mark: str) -> None:
    """SIGTERM, then SIGKILL after 5 s, to the Ray processes this test started (never ``ray stop``, which stops
    every Ray on the machine)."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 1.0)):
        for pid in _processes_under(mark):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + wait
        while time.time() < deadline and _processes_under(mark):
            time.sleep(0.2)


def _namespaces_or_skip(ns: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("a network namespace needs root (ip netns add)")
    if shutil.which("ip") is None:
        pytest.skip("no 'ip' command (iproute2) to make a network namespace")
    taken = _ip("-o", "-4", "addr", "show")
    if HOST_IP in taken.stdout or NODE_IP in taken.stdout:
        pytest.skip(f"{HOST_IP} or {NODE_IP} is already in use on this machine")
    made = _ip("netns", "add", ns)
    if made.returncode != 0:
        pytest.skip(f"ip netns add refused: {made.stderr.strip()[:200]}")


@pytest.fixture(scope="module")
def two_hosts(tmp_path_factory):
    """A Ray cluster of this host (10.213.0.1) and a namespace (10.213.0.2); yields the head's address and the
    environment to run shardsim with."""
    ns = f"shardsim-{os.getpid()}"
    veth_host, veth_ns = f"ssh{os.getpid() % 100000}", f"ssn{os.getpid() % 100000}"  # ≤ 15 characters (IFNAMSIZ)
    _namespaces_or_skip(ns)
    ray_tmp = tempfile.mkdtemp(prefix="rmh", dir="/tmp")  # short: Ray's socket paths must stay under 107 bytes
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_TMPDIR": ray_tmp,
           "SHARDSIM_CACHE": str(tmp_path_factory.mktemp("cache"))}
    port = _free_port()
    try:
        for args in (["link", "add", veth_host, "type", "veth", "peer", "name", veth_ns],
                     ["link", "set", veth_ns, "netns", ns],
                     ["addr", "add", f"{HOST_IP}/{PREFIX}", "dev", veth_host], ["link", "set", veth_host, "up"],
                     ["netns", "exec", ns, "ip", "addr", "add", f"{NODE_IP}/{PREFIX}", "dev", veth_ns],
                     ["netns", "exec", ns, "ip", "link", "set", veth_ns, "up"],
                     ["netns", "exec", ns, "ip", "link", "set", "lo", "up"]):
            step = _ip(*args)
            assert step.returncode == 0, (args, step.stderr)
        start = [RAY, "start", "--disable-usage-stats", "--num-cpus"]
        for command in (start + ["2", "--head", "--node-ip-address", HOST_IP, "--port", str(port),
                                 "--include-dashboard=false"],
                        ["ip", "netns", "exec", ns] + start + ["1", "--address", f"{HOST_IP}:{port}",
                                                                "--node-ip-address", NODE_IP]):
            node = subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)
            assert node.returncode == 0, node.stderr[-2000:]
        yield f"{HOST_IP}:{port}", env
    finally:
        _stop_ray(ray_tmp)
        _ip("netns", "del", ns)  # takes the namespace's end of the veth pair, and with it the pair
        _ip("link", "del", veth_host)  # in case the pair was made but never moved into the namespace
        shutil.rmtree(ray_tmp, ignore_errors=True)


def validate(address: str, env: dict, run_dir: Path, *args: str) -> dict:
    proc = subprocess.run([EXE, "validate", "0.6b", *args, "--address", address, "--json", "--timeout", "120",
                           "--run-dir", str(run_dir)], capture_output=True, text=True, timeout=600, env=env)
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads(proc.stdout)
    assert record["passed"] is True, record["failed"]
    return record


def assert_exact_on_both_nodes(record: dict, world: int) -> None:
    assert len(record["ranks"]) == world
    assert {r["node"] for r in record["ranks"]} == {HOST_IP, NODE_IP}, [r["node"] for r in record["ranks"]]
    for rank in record["ranks"]:
        for term in ("weights", "kv_cache"):
            row = rank["comparison"][term]
            assert row["measured"] == row["predicted"] > 0, (rank["rank"], term, row)


def test_tp2_pp2_across_two_network_namespaces(two_hosts, tmp_path):
    """About 35 s: the issue's "done when" (`validate 0.6b --tp 2 --pp 2 --address …`)."""
    address, env = two_hosts
    record = validate(address, env, tmp_path / "run", "--tp", "2", "--pp", "2")
    assert_exact_on_both_nodes(record, 4)
    assert record["logits"]["ok"]


def test_dp3_across_two_network_namespaces(two_hosts, tmp_path):
    """About 30 s: three replicas, two on this host and one in the namespace."""
    address, env = two_hosts
    assert_exact_on_both_nodes(validate(address, env, tmp_path / "run", "--dp", "3"), 3)
