"""SIGINT and SIGTERM during a validation run: from the moment its results file exists until its last record, a
signal stops the run as ``Interrupted``.

Outside Ray (the checkpoint write, the DeepSpeed op build, the reference check) the handler raises ``Interrupted``
at once, so the ``try``/``finally`` around a checkpoint write removes its temp file. Inside ``ray_waits`` (Ray
started, the workers' phases, Ray's teardown) the handler only notes the signal: raising there could land inside
Ray's Cython wait (a SystemError); ``check_signals`` raises it between waits, at most a second later, and the
block's end raises what is still noted. ``lifecycle.guarded`` turns ``Interrupted`` into an ``interrupted``
record and ``RunInterrupted`` (exit 130 / 143).
"""

from __future__ import annotations

import signal
from contextlib import contextmanager
from pathlib import Path


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived during a run. A ``BaseException``, as ``KeyboardInterrupt`` is, so that no
    ``except Exception`` on its way (a backend's fallback, a worker failure handler) swallows it."""

    def __init__(self, signal_name: str):
        super().__init__(signal_name)
        self.signal_name = signal_name


class RunInterrupted(Exception):
    """A run stopped by a signal: the workers are stopped and an ``interrupted`` record is in results.jsonl."""

    def __init__(self, signal_name: str, phase: str, run_dir: Path, workers: bool = True):
        stopped = "; workers stopped" if workers else ""
        super().__init__(f"interrupted by {signal_name} during phase '{phase}'{stopped}; partial results in "
                         f"{run_dir}/results.jsonl")
        self.signal_name, self.phase, self.run_dir = signal_name, phase, run_dir


_SIGNALS: list[str] = []
_AT_ONCE = [False]  # raise in the handler (outside Ray) or only note (inside ``ray_waits``)


def _note_signal(signum, _frame) -> None:
    _SIGNALS.append(signal.Signals(signum).name)
    if _AT_ONCE[0]:
        _AT_ONCE[0] = False  # one Interrupted per run: a second signal must not break the cleanup of the first
        raise Interrupted(_SIGNALS[0])


def check_signals() -> None:
    """Raise ``Interrupted`` when a signal was noted since ``catch_signals``."""
    if _SIGNALS:
        _AT_ONCE[0] = False
        raise Interrupted(_SIGNALS[0])


def catch_signals() -> dict:
    """SIGINT and SIGTERM stop the run through ``Interrupted``, raised at once (Ray's own handlers would exit
    without a record); returns the handlers they replace, for ``restore_signals``."""
    _SIGNALS.clear()
    _AT_ONCE[0] = True
    return {sig: signal.signal(sig, _note_signal) for sig in (signal.SIGINT, signal.SIGTERM)}


def reclaim_signals() -> None:
    """Take SIGINT and SIGTERM back after ``ray.init``: it sets a Python SIGTERM handler that exits without a
    record, and Ray's core worker installs a C-level one (absl's failure handler) that logs and exits 1; a
    ``signal.signal`` call puts Python's own handler back at the C level too."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _note_signal)


@contextmanager
def ray_waits():
    """A block of Ray calls: a signal is only noted (``check_signals`` raises it between waits; ``reclaim_signals``
    after ``ray.init``); the handlers are put back afterwards, and a signal noted inside is raised at the block's
    end."""
    at_once, _AT_ONCE[0] = _AT_ONCE[0], False
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        _AT_ONCE[0] = at_once and not _SIGNALS
    check_signals()


def restore_signals(previous: dict) -> None:
    """Put back the handlers ``catch_signals`` replaced."""
    _AT_ONCE[0] = False
    for sig, handler in previous.items():
        signal.signal(sig, handler)
