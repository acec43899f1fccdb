"""Phases of a validation run: one call on every rank's actor, results recorded as they arrive, the first failure
or the phase timeout stopping the run with each rank's cause named.

A phase is a name and a call (actor → Ray object ref); ``run_phases`` runs them in order. Any actor that dies or
raises is reported with its rank and cause; a rank that does not answer within the timeout is named, a stopped
worker process first (the others wait on it in a collective; only a worker on the driver's node can be seen
stopped), and a setup that does not finish names the address the process group meets at.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable

from shardsim.launch.session import placement
from shardsim.launch.session.progress import Progress
from shardsim.launch.session.request import ValidateRequest
from shardsim.launch.session.results import ResultsFile
from shardsim.launch.session.signals import check_signals

Keep = Callable[[str, int, object], object]
"""What a flow keeps of one rank's phase result: (phase, rank, value) → the value the results file records."""


@dataclass
class RunState:
    """What a run has gathered so far: per-rank outcomes, failures, phase timings."""

    outcomes: dict
    results: ResultsFile
    failed: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    phase: str = "start"
    pids: dict = field(default_factory=dict)  # rank → worker process id (to tell a stopped worker)
    nodes: dict = field(default_factory=dict)  # rank → the address of the node its worker runs on
    here: str | None = None  # the driver's node address (a stopped worker can be seen only there)
    meeting: object = None  # the process group's ``worker.Rendezvous`` (DeepSpeed's buffers are named by it)

    def local(self, rank: int) -> bool:
        """Whether rank's worker runs on the driver's node (its process id means something here)."""
        return self.here is None or self.nodes.get(rank, self.here) == self.here


def failure_cause(exc: BaseException) -> str:
    """One line naming why a worker failed: its process died (and whether it was killed), or the error it raised."""
    text = str(exc).strip().splitlines()
    name = type(exc).__name__
    if "ActorDied" in name or "ActorDiedError" in name or "RayActorError" in name:
        killed = any("SIGKILL" in line or "killed" in line.lower() or "exit" in line.lower() for line in text)
        return "the worker process died" + (" (killed: OOM or signal)" if killed else "") + f" [{name}]"
    last = next((line for line in reversed(text) if line.strip()), name)
    return f"{name}: {last.strip()[:300]}"


def _recorded(phase: str, rank: int, value: object) -> object:
    return value


def run_phase(phase: str, call, actors: dict, req: ValidateRequest, state: RunState, progress: Progress,
              keep: Keep = _recorded) -> None:
    """One phase on every rank, results recorded as they arrive; the first failure or the timeout stops it."""
    import ray

    world = len(actors)
    t0 = time.time()
    state.phase = phase
    progress.phase(phase, range(world), "running")
    refs = {call(actors[r]): r for r in range(world)}
    pending = list(refs)
    deadline = time.time() + req.phase_timeout_s
    while pending and not state.failed:
        done, pending = ray.wait(pending, num_returns=1, timeout=min(1.0, max(0.1, deadline - time.time())))
        check_signals()
        if not done:
            if time.time() < deadline:
                continue
            blame_timeout(phase, [refs[ref] for ref in pending], req, state)
            break
        rank = refs[done[0]]
        try:
            value = ray.get(done[0])
        except Exception as exc:  # noqa: BLE001 - any worker failure is reported, not raised
            state.failed[rank] = f"phase '{phase}': {failure_cause(exc)}"
            progress.failed(rank, state.failed[rank])
            state.outcomes[rank].update(status="failed", error=state.failed[rank])
            break
        progress.phase(phase, [rank], "done")
        value = keep(phase, rank, value)
        state.results.append({"event": phase, "rank": rank, "result": value, "time": time.time()})
    state.timings[f"{phase}_s"] = time.time() - t0


def blame_timeout(phase: str, ranks: list[int], req: ValidateRequest, state: RunState) -> None:
    """Name the ranks that did not answer in time: a stopped worker process first; the others wait on it."""
    stopped = [r for r in ranks if state.local(r) and placement.frozen(state.pids.get(r))]
    meets = f" (the process group meets at {state.meeting.where}, rank 0's node)" \
        if phase == "setup" and state.meeting is not None else ""
    for r in ranks:
        if r in stopped:
            state.failed[r] = f"its worker process is stopped (SIGSTOP) in phase '{phase}'"
        elif stopped:
            state.failed[r] = f"no answer in phase '{phase}': waiting on stopped rank {stopped[0]}"
        else:
            state.failed[r] = f"no answer within the {req.phase_timeout_s:.0f} s timeout of phase '{phase}'{meets}" \
                + slow_cpu_hint(phase, req)


def slow_cpu_hint(phase: str, req: ValidateRequest) -> str:
    """Why a CPU run's compute phase may outlast the timeout, where this host is the kind that explains it."""
    if phase not in ("train", "forward") or req.device != "cpu" or not placement.slow_bf16_cpu():
        return ""
    return ("; this CPU has no AVX-512 (torch's bf16 matrix multiply runs a scalar kernel, about 100× slower than "
            "fp32): raise --timeout, or run fewer tokens (--seq-len, --context) or --layers")


def run_phases(calls: dict, actors: dict, req: ValidateRequest, state: RunState, progress: Progress,
               keep: Keep = _recorded) -> None:
    """Each phase on every rank in order (``calls``: phase → actor → Ray object ref), stopping at the first
    failure."""
    for phase, call in calls.items():
        run_phase(phase, call, actors, req, state, progress, keep)
        if state.failed:
            break
