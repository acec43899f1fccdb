"""Run a validation on Ray: actors per rank, phases with timeouts and fault handling, progress by phase.

``run`` is the flow: prediction and run record → checkpoint → Ray → one actor per rank → phases → comparison →
logits against the unsharded reference. Every phase result is appended to ``results.jsonl`` as it arrives.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from shardsim.launch import placement
from shardsim.launch.driver import (
    ResultsFile,
    ValidateRequest,
    _free_port,
    _versions,
    compare,
    predict,
)
from shardsim.launch.prebuild import prebuild_deepspeed_op, remove_shm_buffers
from shardsim.launch.progress import Progress
from shardsim.launch.reference import check_logits
from shardsim.launch.request import cache_dir, runs_dir

from shardsim.errors import ShardsimError

START_TIMEOUT_S = 60.0  # seconds every worker has to be scheduled and answer before the phases start


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
    if _SIGNALS:
        raise Interrupted(_SIGNALS[0])


def _catch_signals() -> dict:
    """SIGINT and SIGTERM stop the run through ``Interrupted`` (Ray's own handlers would exit without a record)."""
    _SIGNALS.clear()
    return {sig: signal.signal(sig, _note_signal) for sig in (signal.SIGINT, signal.SIGTERM)}


def _restore_signals(previous: dict) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


@dataclass
class RunState:
    """What a run has gathered so far: per-rank outcomes, failures, phase timings, the forward outputs."""

    outcomes: dict
    results: ResultsFile
    failed: dict = field(default_factory=dict)
    timings: dict = field(default_factory=dict)
    forward_out: dict = field(default_factory=dict)
    phase: str = "start"
    pids: dict = field(default_factory=dict)  # rank → worker process id (to tell a stopped worker)
    interrupted: str | None = None  # the signal that stopped the run
    port: int | None = None  # the process group's port (DeepSpeed's shared-memory buffers are named by it)


@dataclass(frozen=True)
class CheckpointFacts:
    """The checkpoint a run loads and the config values its math needs."""

    path: Path
    rope_theta: float
    rms_eps: float
    norm_topk_prob: bool


def _check_reachable(address: str) -> None:
    """Fail fast (Ray itself retries for minutes) when nothing listens at HOST:PORT."""
    import socket

    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=3):
            return
    except ValueError:
        raise ShardsimError(f"--address {address!r} must be auto or HOST:PORT (the Ray head's GCS port, usually 6379)") from None
    except OSError as exc:
        raise ShardsimError(f"nothing answers at --address {address} ({exc.strerror or exc}); start a Ray head there or use auto") from None


def _cause(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    name = type(exc).__name__
    if "ActorDied" in name or "ActorDiedError" in name or "RayActorError" in name:
        killed = any("SIGKILL" in line or "killed" in line.lower() or "exit" in line.lower() for line in text)
        return "the worker process died" + (" (killed: OOM or signal)" if killed else "") + f" [{name}]"
    last = next((line for line in reversed(text) if line.strip()), name)
    return f"{name}: {last.strip()[:300]}"


def _checkpoint(req: ValidateRequest, spec, build: Path, quiet: bool, timings: dict) -> CheckpointFacts:
    """The given checkpoint, or a seeded one written (or reused) under the build folder."""
    from shardsim.launch.checkpoint import write_checkpoint

    if req.checkpoint:
        from shardsim.launch.verify import check_checkpoint

        ckpt = Path(req.checkpoint)
        check_checkpoint(spec, ckpt)  # the right model, every tensor, no truncated shard: before Ray starts
    else:
        ckpt = build / "checkpoints" / f"{spec.name.split(' ')[0]}-L{spec.num_layers}-seed{req.seed}"
        t0 = time.time()
        if not quiet:
            sys.stderr.write(f"checkpoint: {ckpt} …\n")
        write_checkpoint(spec, ckpt, seed=req.seed, source_config=req.source_config,
                         notify=lambda message: sys.stderr.write(f"shardsim: {message}\n"))
        timings["checkpoint_s"] = time.time() - t0
    config = json.loads((ckpt / "config.json").read_text())
    return CheckpointFacts(ckpt, float(config.get("rope_theta", 1_000_000.0)), float(config.get("rms_norm_eps", 1e-6)),
                           bool(config.get("norm_topk_prob", True)))


def _start_ray(req: ValidateRequest, world: int) -> bool:
    """Start a local Ray instance or join ``--address``; returns whether this run started it."""
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray_kwargs = {"include_dashboard": False, "log_to_driver": False}
    started = not ray.is_initialized()
    if started and req.address and req.address != "auto":
        _check_reachable(req.address)
    if started:
        try:
            if req.address:
                ray.init(address=req.address, **ray_kwargs)
            else:
                ray.init(num_cpus=max(2, os.cpu_count() or 2), **ray_kwargs)
        except Exception as exc:  # noqa: BLE001 - any failure to reach Ray is the user's input to fix
            where = f"the Ray cluster at {req.address}" if req.address else "a local Ray instance"
            raise ShardsimError(f"cannot start or reach {where}: {str(exc).splitlines()[0][:200]}") from None
    return started


def _start_actors(req: ValidateRequest, world: int, build: Path, cpus: float) -> dict:
    """One RankWorker actor per rank: ``cpus`` each (``placement.check_fits``: a request every rank can be placed
    with on the nodes joined), and one GPU each on CUDA."""
    import ray
    from shardsim.launch.worker import RankWorker

    if req.device == "cuda":
        actor = ray.remote(num_gpus=1, num_cpus=cpus, max_restarts=0)(RankWorker)
    else:
        actor = ray.remote(num_cpus=cpus, max_restarts=0)(RankWorker)
    env = {"MASTER_ADDR": "127.0.0.1", "LOCAL_SIZE": str(min(world, 8)), "OMP_NUM_THREADS": "1",
           "TORCH_EXTENSIONS_DIR": str(build / "torch_extensions"), "PYTHONPATH": os.pathsep.join(sys.path)}
    if os.environ.get("SHARDSIM_TRACK_DETAIL"):
        env["SHARDSIM_TRACK_DETAIL"] = "1"
    return {r: actor.remote(r, world, dict(env, LOCAL_RANK=str(r % 8)), req.fault) for r in range(world)}


def _run_phase(phase: str, call, actors: dict, req: ValidateRequest, state: RunState, progress: Progress) -> None:
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
            _blame_timeout(phase, [refs[ref] for ref in pending], req, state)
            break
        rank = refs[done[0]]
        try:
            value = ray.get(done[0])
        except Exception as exc:  # noqa: BLE001 - any worker failure is reported, not raised
            state.failed[rank] = f"phase '{phase}': {_cause(exc)}"
            progress.failed(rank, state.failed[rank])
            state.outcomes[rank].update(status="failed", error=state.failed[rank])
            break
        progress.phase(phase, [rank], "done")
        if phase == "forward":
            state.forward_out[rank] = value
            value = {k: v for k, v in value.items() if k != "logits"}
        if phase == "measure":
            state.outcomes[rank]["measured"] = value
        state.results.append({"event": phase, "rank": rank, "result": value, "time": time.time()})
    state.timings[f"{phase}_s"] = time.time() - t0


def _blame_timeout(phase: str, ranks: list[int], req: ValidateRequest, state: RunState) -> None:
    """Name the ranks that did not answer in time: a stopped worker process first; the others wait on it."""
    stopped = [r for r in ranks if placement.frozen(state.pids.get(r))]
    for r in ranks:
        if r in stopped:
            state.failed[r] = f"its worker process is stopped (SIGSTOP) in phase '{phase}'"
        elif stopped:
            state.failed[r] = f"no answer in phase '{phase}': waiting on stopped rank {stopped[0]}"
        else:
            state.failed[r] = f"no answer within the {req.phase_timeout_s:.0f} s timeout of phase '{phase}'"


def _phases(req: ValidateRequest, spec, layout, ckpt: CheckpointFacts, prompt: list, state: RunState,
            progress: Progress, build: Path, cpus: float) -> None:
    """Start the actors and run setup, load, forward and measure; the actors are always killed afterwards."""

    actors: dict = {}
    try:
        progress.phase("start", range(layout.world_size), "running")
        actors = _start_actors(req, layout.world_size, build, cpus)
        readiness = placement.ready(actors, min(START_TIMEOUT_S, req.phase_timeout_s), f"{cpus:g} CPU",
                                    check_signals)
        state.failed.update(readiness.missing)
        if readiness.missing:
            return
        state.pids = readiness.pids
        port = state.port = _free_port()
        spec_json = spec.model_dump_json()
        layout_args = {"tp": layout.tp, "pp": layout.pp, "dp": layout.dp, "ep": layout.ep,
                       "pp_split": list(layout.pp_split)}
        calls = {
            "setup": lambda a: a.setup.remote(port, spec_json, layout_args, req.phase_timeout_s, req.device),
            "load": lambda a: a.load.remote(str(ckpt.path), ckpt.rope_theta, ckpt.rms_eps, ckpt.norm_topk_prob,
                                            req.backend),
            "forward": lambda a: a.forward.remote(prompt, req.context, req.decode_steps, 16),
            "measure": lambda a: a.measure.remote(),
        }
        run_phases(calls, actors, req, state, progress)
    finally:
        stop_actors(actors, state, progress)


def run_phases(calls: dict, actors: dict, req: ValidateRequest, state: RunState, progress: Progress) -> None:
    """Each phase on every rank in order, stopping at the first failure."""
    for phase, call in calls.items():
        _run_phase(phase, call, actors, req, state, progress)
        if state.failed:
            break


def stop_actors(actors: dict, state: RunState, progress: Progress) -> None:
    """Kill every actor, stop the progress display, and remove DeepSpeed's shared-memory buffers of the run."""
    import ray

    for actor in actors.values():
        try:
            ray.kill(actor)
        except Exception:  # noqa: BLE001
            pass
    progress.stop()
    remove_shm_buffers(state.port)


def _rank_records(state: RunState, world: int) -> list[dict]:
    """Per rank: predicted, measured, their comparison and whether the rank passed (``ok``)."""
    ranks = []
    for r in range(world):
        o = state.outcomes[r]
        meas = o["measured"]
        rows = compare(o["predicted"], meas) if meas else {}
        ok = bool(rows) and all(row["ok"] for row in rows.values())
        ranks.append({"rank": r, "predicted": o["predicted"],
                      "measured": {k: meas.get(k) for k in ("weights", "kv_cache", "activations", "rss_anon", "rss_file",
                                                             "zero_gather", "cuda_max_allocated", "cuda_reserved", "cuda_used")
                                   if k in meas or k in ("weights", "kv_cache", "activations", "rss_anon", "rss_file")},
                      "comparison": rows, "ok": ok, "error": state.failed.get(r)})
    return ranks


def run(req: ValidateRequest, spec, layout, quiet: bool = False) -> dict:
    """Run every phase on Ray; returns the result record (also appended to the run's results.jsonl)."""
    import ray

    world, build = layout.world_size, cache_dir()
    prompt_len = req.context - req.decode_steps
    predicted = predict(spec, layout, req.context, req.batch, prompt_len, req.backend)
    stem = f"{spec.name.split(' ')[0]}-tp{layout.tp}-pp{layout.pp}-dp{layout.dp}-ep{layout.ep}"
    run_dir = Path(req.run_dir or runs_dir() / time.strftime(f"%Y%m%d-%H%M%S-{stem}"))
    lay = {"tp": layout.tp, "pp": layout.pp, "dp": layout.dp, "ep": layout.ep, "world_size": world}
    try:
        results = ResultsFile(run_dir / "results.jsonl")
    except OSError as exc:
        raise ShardsimError(f"cannot write the run folder {run_dir}: {exc.strerror or exc}; give --run-dir a "
                            "writable folder") from None
    state = RunState({r: {"rank": r, "predicted": predicted[r], "measured": {}, "status": "pending", "error": None}
                      for r in range(world)}, results)
    state.results.append({"event": "start", "command": req.command, "versions": _versions(), "model": spec.name,
                          "layout": lay, "context": req.context, "batch": req.batch, "backend": req.backend,
                          "device": req.device, "predicted": predicted, "time": time.time()})
    t_start = time.time()
    ckpt = _checkpoint(req, spec, build, quiet, state.timings)
    if req.backend == "deepspeed":
        state.timings["op_build_s"] = prebuild_deepspeed_op(build / "torch_extensions", req.phase_timeout_s, quiet)
    t0 = time.time()
    started_ray = _start_ray(req, world)
    state.timings["ray_init_s"] = time.time() - t0
    prompt = [[(7919 * (b + 1) * (i + 1)) % spec.vocab_size for i in range(prompt_len)] for b in range(req.batch)]
    previous = _catch_signals()
    try:
        cpus = placement.check_fits(placement.alive_nodes(), world, req.device)
        _phases(req, spec, layout, ckpt, prompt, state, Progress(world, quiet), build, cpus)
    except Interrupted as exc:
        state.interrupted = exc.signal_name
    finally:
        _restore_signals(previous)
        if started_ray:
            ray.shutdown()
    if state.interrupted:
        state.results.append({"event": "interrupted", "signal": state.interrupted, "phase": state.phase,
                              "time": time.time()})
        raise RunInterrupted(state.interrupted, state.phase, run_dir)
    record = {"event": "result", "command": req.command, "versions": _versions(), "model": spec.name,
              "layout": lay, "context": req.context, "batch": req.batch, "prompt_tokens": prompt_len,
              "decode_steps": req.decode_steps, "backend": req.backend, "device": req.device,
              "run_dir": str(run_dir), "timings": state.timings}
    record["ranks"] = _rank_records(state, world)
    passed = not state.failed and all(r["ok"] for r in record["ranks"])
    record["failed"] = {str(k): v for k, v in state.failed.items()}
    if not state.failed:
        t0 = time.time()
        record["logits"] = check_logits(spec, ckpt, prompt, state.forward_out, req)
        state.timings["reference_s"] = time.time() - t0
        passed &= record["logits"]["ok"]
    record["passed"] = passed
    state.timings["total_s"] = time.time() - t_start
    state.results.append(record)
    return record
