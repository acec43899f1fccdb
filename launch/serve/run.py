"""Run an inference validation on Ray: prediction, checkpoint, one actor per rank, phases, comparison, logits.

Flow: plan the (possibly truncated) model with shardsim's planner (``predict``) → write or reuse the checkpoint
→ start or join a Ray cluster → one ``ServeWorker`` actor per rank (fractional CPUs on CPU, one GPU each on CUDA)
→ phases ``setup`` (process group), ``load`` (the rank's slices), ``forward`` (prefill + decode), ``measure`` →
the unsharded reference's logits → per-rank predicted vs measured. Every phase result is appended to
``results.jsonl`` in the run directory as it arrives, so nothing measured is lost when a rank fails.

Faults: any actor that dies or raises is reported with its rank and cause, the other actors are killed, and the
run ends with exit code 1 within the phase timeout (the process group's own timeout bounds stuck collectives).
"""

from __future__ import annotations

import time
from pathlib import Path

from shardsim.launch.checkpoints.prepare import CheckpointFacts, prepare_checkpoint
from shardsim.launch.serve.predict import compare, predict
from shardsim.launch.serve.reference import check_logits
from shardsim.launch.serve.registry import SERVE_BACKENDS
from shardsim.launch.session import placement
from shardsim.launch.session.actors import START_TIMEOUT_S, start_actors, start_ray, stop_actors
from shardsim.launch.session.phases import RunState, run_phases
from shardsim.launch.session.prebuild import prebuild_deepspeed_op
from shardsim.launch.session.progress import Progress
from shardsim.launch.session.request import ValidateRequest, cache_dir, runs_dir
from shardsim.launch.session.results import ResultsFile, free_port, versions
from shardsim.launch.session.signals import (
    Interrupted,
    RunInterrupted,
    catch_signals,
    check_signals,
    restore_signals,
)

from shardsim.errors import ShardsimError

MEASURED_TERMS = ("weights", "kv_cache", "activations", "rss_anon", "rss_file")
MEASURED_IF_PRESENT = ("state", "zero_gather", "cuda_max_allocated", "cuda_reserved", "cuda_used")


def _keeper(state: RunState, forward_out: dict):
    """What the inference phases keep: the forward's outputs (logits kept out of results.jsonl) and the measured
    bytes per rank."""
    def keep(phase: str, rank: int, value):
        if phase == "forward":
            forward_out[rank] = value
            value = {k: v for k, v in value.items() if k != "logits"}
        if phase == "measure":
            state.outcomes[rank]["measured"] = value
        return value

    return keep


def _phases(req: ValidateRequest, spec, layout, ckpt: CheckpointFacts, prompt: list, state: RunState,
            progress: Progress, build: Path, cpus: float, forward_out: dict) -> None:
    """Start the actors and run setup, load, forward and measure; the actors are always killed afterwards."""
    from shardsim.launch.serve.worker import ServeWorker

    actors: dict = {}
    try:
        progress.phase("start", range(layout.world_size), "running")
        actors = start_actors(ServeWorker, req, layout.world_size, build, cpus)
        readiness = placement.ready(actors, min(START_TIMEOUT_S, req.phase_timeout_s), f"{cpus:g} CPU",
                                    check_signals)
        state.failed.update(readiness.missing)
        if readiness.missing:
            return
        state.pids = readiness.pids
        port = state.port = free_port()
        calls = {
            "setup": lambda a: a.setup.remote(port, req),
            "load": lambda a: a.load.remote(ckpt, req.backend),
            "forward": lambda a: a.forward.remote(prompt, req.context, req.decode_steps, 16),
            "measure": lambda a: a.measure.remote(),
        }
        run_phases(calls, actors, req, state, progress, _keeper(state, forward_out))
    finally:
        stop_actors(actors, progress, state.port)


def _rank_records(state: RunState, world: int) -> list[dict]:
    """Per rank: predicted, measured, their comparison and whether the rank passed (``ok``)."""
    ranks = []
    for r in range(world):
        o = state.outcomes[r]
        meas = o["measured"]
        rows = compare(o["predicted"], meas) if meas else {}
        ok = bool(rows) and all(row["ok"] for row in rows.values())
        ranks.append({"rank": r, "predicted": o["predicted"],
                      "measured": {k: meas.get(k) for k in MEASURED_TERMS + MEASURED_IF_PRESENT
                                   if k in meas or k in MEASURED_TERMS},
                      "comparison": rows, "ok": ok, "error": state.failed.get(r)})
    return ranks


def _run_dir(req: ValidateRequest, spec, layout) -> Path:
    """``--run-dir``, else a folder named by the time, the model and the layout under ``runs_dir()``."""
    stem = f"{spec.name.split(' ')[0]}-tp{layout.tp}-pp{layout.pp}-dp{layout.dp}-ep{layout.ep}"
    return Path(req.run_dir or runs_dir() / time.strftime(f"%Y%m%d-%H%M%S-{stem}"))


def _open_run(req: ValidateRequest, spec, layout, predicted: dict, run_dir: Path) -> RunState:
    """The run's state, its results file opened in ``run_dir`` and its ``start`` record appended."""
    try:
        results = ResultsFile(run_dir / "results.jsonl")
    except OSError as exc:
        raise ShardsimError(f"cannot write the run folder {run_dir}: {exc.strerror or exc}; give --run-dir a "
                            "writable folder") from None
    state = RunState({r: {"rank": r, "predicted": predicted[r], "measured": {}, "status": "pending", "error": None}
                      for r in range(layout.world_size)}, results)
    state.results.append({"event": "start", "command": req.command, "versions": versions(), "model": spec.name,
                          "layout": _layout_record(layout), "context": req.context, "batch": req.batch,
                          "backend": req.backend, "device": req.device, "predicted": predicted, "time": time.time()})
    return state


def _layout_record(layout) -> dict:
    return {"tp": layout.tp, "pp": layout.pp, "dp": layout.dp, "ep": layout.ep, "world_size": layout.world_size}


def run(req: ValidateRequest, quiet: bool = False) -> dict:
    """Run every phase on Ray; returns the result record (also appended to the run's results.jsonl)."""
    import ray

    spec, layout = req.model, req.layout
    world, build = layout.world_size, cache_dir()
    backend = SERVE_BACKENDS[req.backend]
    prompt_len = req.context - req.decode_steps
    predicted = predict(spec, layout, req.context, req.batch, prompt_len, req.backend)
    run_dir = _run_dir(req, spec, layout)
    state = _open_run(req, spec, layout, predicted, run_dir)
    t_start = time.time()
    ckpt = prepare_checkpoint(req, spec, build, quiet, state.timings)
    if backend.deepspeed_op:
        state.timings["op_build_s"] = prebuild_deepspeed_op(build / "torch_extensions", req.phase_timeout_s, quiet)
    t0 = time.time()
    started_ray = start_ray(req)
    state.timings["ray_init_s"] = time.time() - t0
    prompt = [[(7919 * (b + 1) * (i + 1)) % spec.vocab_size for i in range(prompt_len)] for b in range(req.batch)]
    forward_out: dict = {}
    previous = catch_signals()
    try:
        cpus = placement.check_fits(placement.alive_nodes(), world, req.device)
        _phases(req, spec, layout, ckpt, prompt, state, Progress(world, quiet), build, cpus, forward_out)
    except Interrupted as exc:
        state.interrupted = exc.signal_name
    finally:
        restore_signals(previous)
        if started_ray:
            ray.shutdown()
    if state.interrupted:
        state.results.append({"event": "interrupted", "signal": state.interrupted, "phase": state.phase,
                              "time": time.time()})
        raise RunInterrupted(state.interrupted, state.phase, run_dir)
    record = {"event": "result", "command": req.command, "versions": versions(), "model": spec.name,
              "layout": _layout_record(layout), "context": req.context, "batch": req.batch,
              "prompt_tokens": prompt_len, "decode_steps": req.decode_steps, "backend": req.backend,
              "device": req.device, "run_dir": str(run_dir), "timings": state.timings}
    record["ranks"] = _rank_records(state, world)
    passed = not state.failed and all(r["ok"] for r in record["ranks"])
    record["failed"] = {str(k): v for k, v in state.failed.items()}
    if not state.failed:
        t0 = time.time()
        record["logits"] = check_logits(spec, ckpt, prompt, forward_out, req)
        state.timings["reference_s"] = time.time() - t0
        passed &= record["logits"]["ok"]
    record["passed"] = passed
    state.timings["total_s"] = time.time() - t_start
    state.results.append(record)
    return record
