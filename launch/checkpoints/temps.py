"""Files of the checkpoint cache written whole or not at all, one writer at a time, and what a killed writer left.

- ``written``: a file is written under a temp name in its own folder, then renamed over its final name
  (``os.replace``, atomic within one filesystem), so no reader ever sees half a shard; on any exception or signal
  (``Interrupted`` is raised into the writing code) the temp file is removed. Not fsynced: a shard the machine lost
  power under is caught by the checkpoint's stored checksum on its next use (``files._reusable``) and written again.
- ``locked``: an exclusive ``flock`` on the checkpoint folder, so two runs started together write a checkpoint
  once, and the second reuses it.
- ``remove_stale``: temp files whose writer was killed (SIGKILL leaves no ``finally``) are removed the next time a
  checkpoint is prepared: the writer's process is gone (same host), or the file has not changed for
  ``STALE_TEMP_AGE_S``.
"""

from __future__ import annotations

import fcntl
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

TEMP_MARK = ".shardsim-tmp"
LOCK_NAME = ".shardsim-lock"
STALE_TEMP_AGE_S = 3600.0
"""A temp file untouched this long has no live writer: a writer appends to it without pause, and the largest shard
(``files.SHARD_BYTES``, 2 GiB) is written in minutes even at 10 MB/s. Covers writers on other hosts (a shared
cache) and process ids reused since."""


def temp_path(final: Path) -> Path:
    """The temp name of ``final`` for this process: hidden, in the same folder, naming the host and process."""
    return final.with_name(f".{final.name}{TEMP_MARK}-{socket.gethostname()}-{os.getpid()}")


@contextmanager
def written(final: Path):
    """Yield the temp path to write ``final`` to; renamed over ``final`` when the block ends normally, removed
    whatever happens."""
    tmp = temp_path(final)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        tmp.unlink(missing_ok=True)


def write_whole(final: Path, text: str) -> None:
    """``text`` as the whole of ``final``, or nothing."""
    with written(final) as tmp:
        tmp.write_text(text)


@contextmanager
def locked(folder: Path):
    """Hold the exclusive lock of ``folder`` (created if missing) for the block."""
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def remove_stale(root: Path) -> int:
    """Remove the temp files under ``root``'s checkpoint folders that no live writer holds; returns how many."""
    removed, host, now = 0, socket.gethostname(), time.time()
    for path in root.glob(f"*/.*{TEMP_MARK}-*"):
        writer_host, _, pid = path.name.rpartition(TEMP_MARK + "-")[2].rpartition("-")
        try:
            dead = writer_host == host and pid.isdigit() and not _alive(int(pid))
            if dead or now - path.stat().st_mtime > STALE_TEMP_AGE_S:
                path.unlink()
                removed += 1
        except FileNotFoundError:  # its writer finished or removed it meanwhile
            continue
    return removed
