"""What a run keeps: its results.jsonl (append-only, one JSON record a line, written as each result arrives), the
versions of the stack it ran on, and a free local port for the workers' process group.
"""

from __future__ import annotations

import json
import platform
import socket
from pathlib import Path


class ResultsFile:
    """Append-only JSON lines in the run directory."""

    def __init__(self, path: Path):
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    def append(self, record: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record, default=str) + "\n")


class KeptResults(ResultsFile):
    """The run's results.jsonl, with each record also kept in memory (a phase's results are read back)."""

    def __init__(self, path: Path):
        super().__init__(path)
        self.entries: list[dict] = []

    def append(self, record: dict) -> None:
        super().append(record)
        self.entries.append(record)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (the process group's rendezvous)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
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
