"""DeepSpeed's CPU communication op, built once before the timed phases rather than inside the first collective.

DeepSpeed's CPU accelerator JIT-compiles ``deepspeed_shm_comm`` (deepspeed/ops/op_builder/cpu/comm.py,
``ShareMemCommBuilder``) into ``TORCH_EXTENSIONS_DIR`` on its first collective: 45–100 s on 2 cores, which would
count against a phase's timeout with no output. Here a child process in its own session builds it into the cache
the workers use, with a progress line; a timeout or a signal kills the child with its compiler processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from shardsim.errors import ShardsimError

OP = "deepspeed_shm_comm"
BUILD = "from deepspeed.ops.op_builder.cpu import ShareMemCommBuilder\nShareMemCommBuilder().load(verbose=False)\n"


def built(extensions: Path) -> bool:
    return any(extensions.glob(f"**/{OP}/*.so"))


def prebuild_deepspeed_op(extensions: Path, timeout_s: float, quiet: bool) -> float:
    """Build the op into ``extensions`` unless it is there; returns the seconds it took."""
    if built(extensions):
        return 0.0
    if not quiet:
        sys.stderr.write(f"building DeepSpeed's CPU communication op into {extensions} (once; about a minute) …\n")
    t0 = time.time()
    env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(extensions)}
    child = subprocess.Popen([sys.executable, "-c", BUILD], env=env, start_new_session=True,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        _, err = child.communicate(timeout=timeout_s)
    except BaseException as exc:  # a timeout, Ctrl-C or SIGTERM: the compilers go with the child
        os.killpg(child.pid, signal.SIGKILL)
        child.wait()
        if isinstance(exc, subprocess.TimeoutExpired):
            raise ShardsimError(f"building DeepSpeed's {OP} op took over {timeout_s:.0f} s (--timeout); stopped it "
                                "and its compiler processes") from None
        raise
    if child.returncode != 0:
        last = next((line for line in reversed(err.splitlines()) if line.strip()), "no message")
        raise ShardsimError(f"building DeepSpeed's {OP} op failed: {last[:300]}")
    return time.time() - t0


def remove_shm_buffers(port: int | None, addr: str = "127.0.0.1") -> int:
    """Remove the shared-memory all-reduce buffers DeepSpeed's CPU communication op created for the run on ``port``
    (``deepspeed/ops/csrc/cpu/comm/shm.cpp`` names them deepspeed_allreduce_buffer_<n>_<addr>_<port>_<rank>); workers
    killed at the end of a run never unlink them, and each holds tens of MB of RAM in /dev/shm. Returns how many."""
    import glob
    import os

    if port is None:
        return 0
    removed = 0
    for path in glob.glob(f"/dev/shm/deepspeed_allreduce_buffer_*_{addr}_{port}_*"):
        try:
            os.unlink(path)
            removed += 1
        except OSError:
            pass
    return removed
