"""Run an inference validation on Ray: prediction, checkpoint, one actor per rank, phases, comparison, logits.

Flow: plan the (possibly truncated) model with shardsim's planner (``predict``) → write or reuse the checkpoint
→ start or join a Ray cluster → one ``ServeWorker`` actor per rank (fractional CPUs on CPU, one GPU each on CUDA)
→ phases ``setup`` (process group), ``load`` (the rank's slices), ``forward`` (prefill + decode), ``measure`` →
the unsharded reference's logits → per-rank predicted vs measured. Every phase result is appended to
``results.jsonl`` in the run directory as it arrives, so nothing measured is lost when a rank fails.

Faults: any actor that dies or raises is reported with its rank and cause, the other actors are killed, and the
run ends with exit code 1 within the phase timeout (the process group's own timeout bounds stuck collectives). A
signal or a full disk at any point (the checkpoint write, the phases, the reference check) ends it with an
``interrupted`` or ``failed`` record and one line (``session.lifecycle``).
"""

from __future__ import annotations

import time
from pathlib import Path

from shardsim.launch.checkpoints.prepare import CheckpointFacts, prepare_checkpoint
from shardsim.launch.serve.predict import compare, predict
from shardsim.launch.serve.reference import check_logits
from shardsim.launch.serve.registry import SERVE_BACKENDS
from shardsim.launch.session import lifecycle, placement
from shardsim.launch.session.actors import start_ray, start_workers, stop_actors
from shardsim.launch.session.phases import RunState, run_phases
from shardsim.launch.session.prebuild import prebuild_deepspeed_op
from shardsim.launch.session.progress import Progress
from shardsim.launch.session.request import ValidateRequest, cache_dir, runs_dir
from shardsim.launch.session.results import versions
from shardsim.launch.session.signals import ray_waits

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


def _phases(req: ValidateRequest, ckpt: CheckpointFacts, prompt: list, state: RunState, progress: Progress,
            build: Path, cpus: float, forward_out: dict) -> None:
    """Start the actors and run setup, load, forward and measure; the actors are always killed afterwards."""
    from shardsim.launch.serve.worker import ServeWorker

    actors: dict = {}
    try:
        start_workers(ServeWorker, req, build, cpus, state, progress, actors)
        if state.failed:
            return
        calls = {
            "setup": lambda a: a.setup.remote(state.meeting, req),
            "load": lambda a: a.load.remote(ckpt, req.backend),
            "forward": lambda a: a.forward.remote(prompt, req.context, req.decode_steps, 16),
            "measure": lambda a: a.measure.remote(),
        }
        run_phases(calls, actors, req, state, progress, _keeper(state, forward_out))
    finally:
        stop_actors(actors, progress, state.meeting)


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
                      "comparison": rows, "ok": ok, "error": state.failed.get(r), "node": state.nodes.get(r)})
    return ranks


def _open_run(req: ValidateRequest, spec, layout, predicted: dict) -> RunState:
    """The run's state, its results file opened (in ``--run-dir`` or a new folder of its own, named by the time,
    the process, a random suffix, the model and the layout) with its ``start`` record."""
    stem = f"{spec.name.split(' ')[0]}-tp{layout.tp}-pp{layout.pp}-dp{layout.dp}-ep{layout.ep}"
    results = lifecycle.open_results(req.run_dir, runs_dir(), stem, {
        "event": "start", "command": req.command, "versions": versions(), "model": spec.name,
        "layout": _layout_record(layout), "context": req.context, "batch": req.batch, "backend": req.backend,
        "device": req.device, "predicted": predicted, "time": time.time()})
    return RunState({r: {"rank": r, "predicted": predicted[r], "measured": {}, "status": "pending", "error": None}
                     for r in range(layout.world_size)}, results)


def _layout_record(layout) -> dict:
    return {"tp": layout.tp, "pp": layout.pp, "dp": layout.dp, "ep": layout.ep, "world_size": layout.world_size}


def run(req: ValidateRequest, quiet: bool = False) -> dict:
    """Run every phase on Ray; returns the result record (also appended to the run's results.jsonl). A signal,
    a full disk or an error on the way ends it with an ``interrupted`` or ``failed`` record (``lifecycle``)."""
    spec, layout = req.model, req.layout
    prompt_len = req.context - req.decode_steps
    predicted = predict(spec, layout, req.context, req.batch, prompt_len, req.backend)
    state = _open_run(req, spec, layout, predicted)
    with lifecycle.guarded(state):
        return lifecycle.keep_result(state, _run(req, state, prompt_len, quiet))


def _run(req: ValidateRequest, state: RunState, prompt_len: int, quiet: bool) -> dict:
    """The run inside ``lifecycle.guarded``: checkpoint, DeepSpeed's op, Ray and the phases, the reference check."""
    import ray

    spec, layout = req.model, req.layout
    world, build = layout.world_size, cache_dir()
    t_start = time.time()
    state.phase = "checkpoint"
    ckpt = prepare_checkpoint(req, spec, build, quiet, state.timings)
    if SERVE_BACKENDS[req.backend].deepspeed_op:
        state.phase = "op build"
        state.timings["op_build_s"] = prebuild_deepspeed_op(build / "torch_extensions", req.phase_timeout_s, quiet)
    prompt = [[(7919 * (b + 1) * (i + 1)) % spec.vocab_size for i in range(prompt_len)] for b in range(req.batch)]
    forward_out: dict = {}
    state.phase = "start"
    with ray_waits():
        t0 = time.time()
        started_ray = start_ray(req)
        state.timings["ray_init_s"] = time.time() - t0
        try:
            cpus = placement.check_fits(placement.alive_nodes(), world, req.device)
            _phases(req, ckpt, prompt, state, Progress(world, quiet), build, cpus, forward_out)
        finally:
            if started_ray:
                ray.shutdown()
    record = {"event": "result", "command": req.command, "versions": versions(), "model": spec.name,
              "layout": _layout_record(layout), "context": req.context, "batch": req.batch,
              "prompt_tokens": prompt_len, "decode_steps": req.decode_steps, "backend": req.backend,
              "device": req.device, "run_dir": str(state.results.path.parent), "timings": state.timings}
    record["ranks"] = _rank_records(state, world)
    passed = not state.failed and all(r["ok"] for r in record["ranks"])
    record["failed"] = {str(k): v for k, v in state.failed.items()}
    if not state.failed:
        state.phase = "reference"
        t0 = time.time()
        record["logits"] = check_logits(spec, ckpt, prompt, forward_out, req)
        state.timings["reference_s"] = time.time() - t0
        passed &= record["logits"]["ok"]
    record["passed"] = passed
    state.timings["total_s"] = time.time() - t_start
    return record
