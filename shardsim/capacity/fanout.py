"""Independent pieces of one command on the machine's cores: ``fan_out(task, n)`` runs ``task(i)`` for i < n in
forked worker processes and returns the results in order (a review's models share nothing but their inputs).

Forked, not spawned: a worker starts as a copy of the command's process — its imports, parsed catalog and model
records — so nothing is sent to it but an index, and only its result comes back (pickled). Where fork is not the
platform's way (macOS and Windows spawn by default, and a spawned worker would re-import everything) or one core
is all there is, the pieces run here, one after the other. ``SHARDSIM_WORKERS`` caps the worker count (1: none).
"""

from __future__ import annotations

import multiprocessing
import os
import pickle
import sys
from typing import Callable, Sequence

from shardsim.errors import ShardsimError

WORKERS_ENV = "SHARDSIM_WORKERS"

_TASK: Callable | None = None  # the task of the fan-out under way: a forked worker finds it here


def cores() -> int:
    """The cores this process may run on (its CPU affinity where the platform tells it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def workers(pieces: int) -> int:
    """Worker processes for ``pieces`` independent pieces: one per core, at most one per piece, capped by
    ``SHARDSIM_WORKERS``; 1 where fork is not available (the pieces then run in this process)."""
    if sys.platform != "linux" or "fork" not in multiprocessing.get_all_start_methods():
        return 1
    limit = cores()
    text = os.environ.get(WORKERS_ENV, "").strip()
    if text:
        if not text.isdigit() or int(text) < 1:
            raise ShardsimError(f"{WORKERS_ENV}={text[:20]!r} is not a worker count; accepted: a whole number ≥ 1 "
                                "(1: no worker processes)")
        limit = int(text)
    return max(1, min(pieces, limit))


def _run(index: int) -> bytes | None:
    """The piece's result, pickled here in the worker; None where it cannot be pickled (the piece then runs again
    in the parent: a result that cannot travel must not cost the command)."""
    result = _TASK(index)
    try:
        return pickle.dumps(result, pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, AttributeError, TypeError, RecursionError):
        return None


def fan_out(task: Callable[[int], object], pieces: int, done: Callable[[int], None] | None = None,
            first: Sequence[int] | None = None) -> list:
    """``[task(0), …, task(pieces − 1)]``, in forked workers where ``workers`` gives more than one; ``done(i)`` is
    called here as each piece finishes. ``first``: the pieces in the order to start them (the longest first, so
    that no long piece starts last and runs alone); the results are in index order whatever it is. An exception a
    piece raises is raised here (the first to fail); a worker that dies (killed, out of memory) leaves the pieces
    to run here, one after the other, and so does a result that cannot be pickled (that piece alone)."""
    order = list(first) if first is not None else list(range(pieces))
    if sorted(order) != list(range(pieces)):
        raise ValueError(f"first={order!r} is not an order of the {pieces} pieces")
    count = workers(pieces)
    if count > 1:
        from concurrent.futures.process import BrokenProcessPool

        try:
            return _in_workers(task, order, count, done)
        except BrokenProcessPool:
            pass
    out = []
    for i in range(pieces):
        out.append(task(i))
        if done is not None:
            done(i)
    return out


def _in_workers(task: Callable[[int], object], order: list[int], count: int,
                done: Callable[[int], None] | None) -> list:
    global _TASK
    from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

    _TASK = task
    try:
        # the workers are forked when the first piece is submitted, before the executor starts its own thread
        with ProcessPoolExecutor(count, mp_context=multiprocessing.get_context("fork")) as pool:
            submitted = {i: pool.submit(_run, i) for i in order}
            futures = [submitted[i] for i in range(len(order))]
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_EXCEPTION)
                for f in finished:
                    if f.exception() is not None:
                        for other in pending:
                            other.cancel()
                        raise f.exception()
                    if done is not None:
                        done(futures.index(f))
            return [task(i) if f.result() is None else pickle.loads(f.result()) for i, f in enumerate(futures)]
    finally:
        _TASK = None
