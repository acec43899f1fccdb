"""SIGINT and SIGTERM during a validation run: noted by a handler, raised between Ray waits as ``Interrupted``.

Ray's own handlers would exit without a record; a run that catches ``Interrupted`` stops its workers, appends an
``interrupted`` record to results.jsonl and raises ``RunInterrupted`` for the command to report.
"""

from __future__ import annotations

import signal
from pathlib import Path


class Interrupted(Exception):
    """SIGINT or SIGTERM arrived during a run."""

    def __init__(self, signal_name: str):
        super().__init__(signal_name)
        self.signal_name = signal_name


class RunInterrupted(Exception):
    """A run stopped by a signal: the workers are stopped and an ``interrupted`` record is in results.jsonl."""

    def __init__(self, signal_name: str, phase: str, run_dir: Path):
        super().__init__(f"interrupted by {signal_name} during phase '{phase}'; workers stopped; partial results in "
                         f"{run_dir}/results.jsonl")
        self.signal_name, self.phase, self.run_dir = signal_name, phase, run_dir


_SIGNALS: list[str] = []


def _note_signal(signum, _frame) -> None:
    # Raising here could land inside Ray's Cython wait (a SystemError): note it, and ``check_signals`` raises it
    # between waits, which are at most a second long.
    _SIGNALS.append(signal.Signals(signum).name)


def check_signals() -> None:
    """Raise ``Interrupted`` when a signal was noted since ``catch_signals``."""
    if _SIGNALS:
        raise Interrupted(_SIGNALS[0])


def catch_signals() -> dict:
    """SIGINT and SIGTERM stop the run through ``Interrupted`` (Ray's own handlers would exit without a record);
    returns the handlers they replace, for ``restore_signals``."""
    _SIGNALS.clear()
    return {sig: signal.signal(sig, _note_signal) for sig in (signal.SIGINT, signal.SIGTERM)}


def restore_signals(previous: dict) -> None:
    """Put back the handlers ``catch_signals`` replaced."""
    for sig, handler in previous.items():
        signal.signal(sig, handler)
