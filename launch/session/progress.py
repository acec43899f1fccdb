"""Per-rank progress of a validation run by phase, on stderr (a rich Live table when stderr is a terminal)."""

from __future__ import annotations

import sys
import time


class Progress:
    """Per-rank status by phase, redrawn on stderr (a rich Live table when stderr is a terminal)."""

    def __init__(self, world_size: int, quiet: bool = False):
        self.status = {r: "waiting" for r in range(world_size)}
        self.quiet = quiet
        self.live = None
        if not quiet and sys.stderr.isatty():
            from rich.console import Console
            from rich.live import Live

            self.live = Live(self._table(), console=Console(stderr=True), refresh_per_second=4, transient=True)
            self.live.start()

    def _table(self):
        from rich.table import Table

        table = Table(show_edge=False, header_style="bold")
        table.add_column("rank")
        table.add_column("status")
        for r, s in self.status.items():
            table.add_row(str(r), s)
        return table

    def phase(self, name: str, ranks, state: str) -> None:
        for r in ranks:
            self.status[r] = f"{name}: {state}"
        if self.live is not None:
            self.live.update(self._table())
        elif not self.quiet and state != "running":
            done = sum(1 for s in self.status.values() if s == f"{name}: {state}")
            if done == len(self.status):
                sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {name}: all {done} ranks {state}\n")

    def failed(self, rank: int, cause: str) -> None:
        self.status[rank] = f"FAILED: {cause}"
        if self.live is not None:
            self.live.update(self._table())
        elif not self.quiet:
            sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] rank {rank} FAILED: {cause}\n")

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
