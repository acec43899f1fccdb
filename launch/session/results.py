"""What a run keeps: its folder (a name no other run can take) and run id, its results.jsonl (one JSON record a line,
each line written whole or not at all, every record carrying the run id), the versions of the stack it ran on, and
a free port for the workers' process group.

Each record is appended with one ``os.write`` of the whole line to a file opened ``O_APPEND``, then ``fsync``; a
short write (the disk filled mid-line, or a file-size limit) is cut back to the length before it, so the file never
ends in a truncated line. Chosen over "write a new copy, then rename": a copy costs the whole file again on every
record and needs room for two copies on a disk that is filling, and a second writer of the same file (two runs
given one ``--run-dir``) would lose records to the other's rename, where ``O_APPEND`` lines land whole, one after
the other (Linux writes to a regular file under the inode lock).
"""

from __future__ import annotations

import errno
import json
import os
import platform
import secrets
import socket
import time
from pathlib import Path

RUN_SUFFIX_BYTES = 3
"""Random bytes at the end of a run id (6 hex digits): with the second and the process id, two runs started in the
same second, even by processes whose ids were reused, meet with a 1 in 16.7 million chance, and ``new_run_dir``
retries on a clash."""
RUN_DIR_TRIES = 16
"""Clashes ``new_run_dir`` retries before it gives up (each clash is 1 in 16.7 million)."""


def new_run_id() -> str:
    """A run id no other run shares: local time to the second, this process's id and a random suffix."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{secrets.token_hex(RUN_SUFFIX_BYTES)}"


def new_run_dir(parent: Path, stem: str) -> tuple[Path, str]:
    """A new folder ``<run id>-<stem>`` under ``parent``, created with ``exist_ok=False`` (a name already taken is
    retried with another id); returns it and its run id."""
    parent.mkdir(parents=True, exist_ok=True)
    for _ in range(RUN_DIR_TRIES):
        run_id = new_run_id()
        path = parent / f"{run_id}-{stem}"
        try:
            path.mkdir(exist_ok=False)
        except FileExistsError:
            continue
        return path, run_id
    raise FileExistsError(errno.EEXIST, f"{RUN_DIR_TRIES} run folder names in a row were taken", str(parent))


class ResultsFile:
    """results.jsonl in the run folder: each record a whole JSON line, with the run's id."""

    def __init__(self, path: Path, run_id: str | None = None):
        self.path = path
        self.run_id = run_id or new_run_id()
        path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, record: dict) -> None:
        """Append ``record`` (and ``run_id``) as one line, synced to disk; on any failure the file is left as it
        was, and the ``OSError`` (ENOSPC, EFBIG, EDQUOT …) is raised."""
        line = (json.dumps({**record, "run_id": self.run_id}, default=str) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            before, written = os.fstat(fd).st_size, 0
            try:
                written = os.write(fd, line)
                if written < len(line):  # the rest raises the real cause (ENOSPC, EFBIG) or completes the line
                    written += os.write(fd, line[written:])
                if written < len(line):
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self.path))
                os.fsync(fd)
            except BaseException as exc:
                if written and os.fstat(fd).st_size == before + written:  # our partial line ends the file
                    os.ftruncate(fd, before)
                if isinstance(exc, OSError) and exc.filename is None:  # os.write names no file: name it
                    raise OSError(exc.errno, exc.strerror, str(self.path)) from None
                raise
        finally:
            os.close(fd)


class KeptResults(ResultsFile):
    """The run's results.jsonl, with each record also kept in memory (a phase's results are read back)."""

    def __init__(self, path: Path, run_id: str | None = None):
        super().__init__(path, run_id)
        self.entries: list[dict] = []

    def append(self, record: dict) -> None:
        super().append(record)
        self.entries.append(record)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now ("" for every address of this machine: the process group's rendezvous on
    rank 0's node)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def versions() -> dict:
    """Python and the installed versions of the validation stack, for the run record."""
    from importlib.metadata import PackageNotFoundError, version

    out = {"python": platform.python_version()}
    for dist in ("torch", "ray", "safetensors", "deepspeed", "transformers", "shardsim"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out
