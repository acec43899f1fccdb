"""How a validation run begins and ends, for both flows: its folder and results file opened with a start record,
signals caught from then on, and every end recorded in results.jsonl and reported in one line with its exit code.

- the flow's ``result`` record: exit 0 when it passed, 1 when it did not (``cli.validate``);
- ``interrupted`` (SIGINT / SIGTERM at any point: the checkpoint write, the workers' phases, the reference check):
  ``RunInterrupted``, exit 130 / 143;
- ``failed`` (the disk filled, another error writing a file, or an error of shardsim or its stack, whose traceback
  goes to the record, not the terminal): ``RunFailed``, exit 1; bad input found on the way (a ``ShardsimError``: a
  Ray cluster that cannot be reached, a checkpoint folder that cannot be written) is recorded as ``failed`` too
  and still exits 2.

A record that cannot be written (the results file's disk is full) is skipped; the one line still names the cause.
When the final ``result`` record is what cannot be written, ``RunFailed`` carries it, so the command still shows
the verdict before its one line.
"""

from __future__ import annotations

import errno
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

from shardsim.errors import ShardsimError
from shardsim.launch.session.results import KeptResults, new_run_dir, new_run_id
from shardsim.launch.session.signals import Interrupted, RunInterrupted, catch_signals, restore_signals

DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
"""No space left, a disk quota reached, a file-size limit (RLIMIT_FSIZE) reached: nothing this run can fix."""


class RunFailed(Exception):
    """A run that could not go on for a reason of its machine, not its input (exit 1); ``record``: the result
    record that could not be written, when the run itself had finished."""

    def __init__(self, message: str, record: dict | None = None):
        super().__init__(message)
        self.record = record


def write_error(exc: OSError) -> str:
    """One line naming the file that could not be written and why."""
    where = exc.filename or "a file"
    why = exc.strerror or str(exc)
    if exc.errno in DISK_FULL:
        return (f"cannot write {where}: {why} (the disk is full or a file-size limit is reached); free space, or "
                "give SHARDSIM_CACHE and --run-dir another disk")
    return f"cannot write {where}: {why}"


def open_results(run_dir: str | None, parent: Path, stem: str, start: dict) -> KeptResults:
    """The run's results.jsonl, in ``run_dir`` (``--run-dir``) or in a new folder of its own under ``parent``,
    with ``start`` appended as its first record."""
    folder = None
    try:
        if run_dir:
            folder, run_id = Path(run_dir), new_run_id()
            folder.mkdir(parents=True, exist_ok=True)
        else:
            folder, run_id = new_run_dir(parent, stem)
        results = KeptResults(folder / "results.jsonl", run_id)
        results.append(start)
    except OSError as exc:
        if exc.errno in DISK_FULL:
            _remove_empty(folder, created=not run_dir)
            raise RunFailed(write_error(exc)) from None
        where = run_dir or parent
        raise ShardsimError(f"cannot write the run folder {where}: {exc.strerror or exc}; give --run-dir a "
                            "writable folder") from None
    return results


def _remove_empty(folder: Path | None, created: bool) -> None:
    """Remove the empty results file a full disk left (and the run's own folder, when this run created it)."""
    if folder is None:
        return
    try:
        results = folder / "results.jsonl"
        if results.is_file() and results.stat().st_size == 0:
            results.unlink()
        if created:
            folder.rmdir()
    except OSError:
        pass


def _record(results, record: dict) -> None:
    """Append an end record if the results file still takes it (a full disk may refuse it)."""
    try:
        results.append({**record, "time": time.time()})
    except OSError:
        pass


@contextmanager
def guarded(state):
    """The body of a run (``state``: its ``phases.RunState``), signals caught: every way it can stop is recorded
    (``interrupted`` or ``failed``, with the phase) and raised as ``RunInterrupted``, ``RunFailed`` or the
    ``ShardsimError`` it was."""
    previous = catch_signals()
    try:
        yield
    except Interrupted as exc:
        _record(state.results, {"event": "interrupted", "signal": exc.signal_name, "phase": state.phase})
        raise RunInterrupted(exc.signal_name, state.phase, state.results.path.parent, bool(state.nodes)) from None
    except OSError as exc:
        message = write_error(exc)
        _record(state.results, {"event": "failed", "phase": state.phase, "error": message})
        raise RunFailed(message) from None
    except ShardsimError as exc:
        _record(state.results, {"event": "failed", "phase": state.phase, "error": str(exc)})
        raise
    except RunFailed:  # the result record could not be kept (``keep_result``): nothing more to write
        raise
    except Exception as exc:  # noqa: BLE001 - an error of shardsim or its stack: one line; the trace in the record
        cause = (str(exc).strip().splitlines() or [""])[0][:300]
        message = f"phase '{state.phase}' failed: {type(exc).__name__}: {cause}"
        _record(state.results, {"event": "failed", "phase": state.phase, "error": message,
                                "traceback": traceback.format_exc()})
        raise RunFailed(message) from None
    finally:
        restore_signals(previous)


def keep_result(state, record: dict) -> dict:
    """Append the run's ``result`` record; when it cannot be written, ``RunFailed`` carries it (the verdict is
    shown, the one line says it was not kept)."""
    state.phase = "result"
    try:
        state.results.append(record)
    except OSError as exc:
        raise RunFailed(f"the run finished but its result was not kept: {write_error(exc)}", record) from None
    return record
