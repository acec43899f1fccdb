"""Validation of training on Ray: one actor per rank runs real training steps (DeepSpeed ZeRO 1/2/3, FSDP2 through
accelerate, torch-native TP and pipelining),
each reports what its framework holds, and every state is compared with shardsim's prediction to the byte.

Flow as inference validation (``shardsim.launch.serve.run``): prediction (``core.train.plan.TrainPlanner``) →
seeded checkpoint → Ray → ``TrainWorker`` actors → phases ``setup`` (process group) and ``train``
(``TrainWorker.train``, the framework's runner from ``registry.TRAIN_BACKENDS``) → per rank
predicted vs measured. Weights, master weights, gradients and optimizer state must match exactly; the activation
peak measured on CPU (a live-tensor tracker over the last forward and backward) also holds the frameworks'
gathered parameters and temporary full gradients, so it is reported beside the prediction, not compared.
"""

from __future__ import annotations

import time

from shardsim.launch.checkpoints.prepare import prepare_checkpoint
from shardsim.launch.session import lifecycle, placement
from shardsim.launch.session.actors import start_ray, start_workers, stop_actors
from shardsim.launch.session.phases import RunState, run_phases
from shardsim.launch.session.progress import Progress
from shardsim.launch.session.request import ValidateRequest, cache_dir, runs_dir
from shardsim.launch.session.results import versions
from shardsim.launch.session.signals import ray_waits
from shardsim.launch.train.registry import TRAIN_BACKENDS, TrainJob

STATES = ("weights", "master_weights", "grads", "optimizer")
ACTIVATION_BAND = 0.02
"""The saved activations of the transformers model are priced tensor by tensor (``core.train.activations``); what
is left is a few scalars (measured: 12 B of 194.6 MB), hence the band."""


def predict_train(spec, layout, setup) -> dict[int, dict]:
    """Per rank: the states shardsim predicts (bytes) and its activation peak."""
    from shardsim.core.layout import rank_coords
    from shardsim.core.train.activations import train_activations
    from shardsim.core.train.plan import TrainPlanner

    planner = TrainPlanner(spec, layout, setup)
    out = {}
    for rank in range(planner.layout.world_size):
        rb, _ = planner.rank_bytes(rank)
        c = rank_coords(rank, planner.layout)
        p = planner.params(rank)
        moe = planner.moe_prefix[p.last_layer + 1] - planner.moe_prefix[p.first_layer]
        act = train_activations(planner.spec, planner.setup, layout.tp, layout.ep, layout.pp, c.pp_rank, p.layers,
                                moe, c.pp_rank == layout.pp - 1, layout.cp, p.first_layer)
        out[rank] = {"weights": rb.weights, "master_weights": rb.master_weights, "grads": rb.grads,
                     "optimizer": rb.optimizer, "activations": rb.activations,
                     "activations_saved": act.saved_in_flight, "in_flight": act.in_flight}
    return out


def _compare(predicted: dict, measured: dict) -> tuple[dict, bool]:
    rows, ok = {}, True
    for term in STATES:
        p, m = predicted[term], measured.get(term)
        exact = m is not None and p == m
        ok &= exact
        rows[term] = {"predicted": p, "measured": m, "diff": None if m is None else p - m, "ok": exact}
    p, m = predicted["activations_saved"], measured.get("activations_saved")
    within = m is not None and m > 0 and abs(p - m) <= ACTIVATION_BAND * m
    ok &= within
    flights = predicted.get("in_flight", 1)
    rows["activations"] = {"predicted": p, "measured": m, "diff": None if m is None else p - m, "ok": within,
                           "note": f"kept for backward{f', {flights} micro-batches in flight' if flights > 1 else ''}"
                                   f", within ±{ACTIVATION_BAND:.0%}"}
    rows["activation_peak"] = {"predicted": predicted["activations"], "measured": measured.get("activations_peak"),
                               "diff": None, "ok": None, "note": "reported, not compared (CPU live tensors)"}
    return rows, ok


def run_train(req: ValidateRequest, quiet: bool = False) -> dict:
    """Real training steps on every rank; returns the result record (also appended to results.jsonl). A signal,
    a full disk or an error on the way ends it with an ``interrupted`` or ``failed`` record (``lifecycle``)."""
    spec, layout, setup = req.model, req.layout, req.setup
    predicted = predict_train(spec, layout, setup)
    stem = f"{spec.name.split(' ')[0]}-train-{setup.framework}{setup.zero if setup.framework == 'deepspeed' else ''}"
    results = lifecycle.open_results(req.run_dir, runs_dir(), f"{stem}-tp{layout.tp}-pp{layout.pp}-dp{layout.dp}", {
        "event": "start", "mode": "train", "command": req.command, "versions": versions(), "model": spec.name,
        "setup": setup.model_dump(mode="json"), "predicted": predicted, "time": time.time()})
    state = RunState({r: {"rank": r, "predicted": predicted[r], "measured": {}, "status": "pending", "error": None}
                      for r in range(layout.world_size)}, results)
    with lifecycle.guarded(state):
        return lifecycle.keep_result(state, _run_train(req, state, predicted, quiet))


def _run_train(req: ValidateRequest, state: RunState, predicted: dict, quiet: bool) -> dict:
    """The run inside ``lifecycle.guarded``: checkpoint, DeepSpeed's op, Ray and the phases, the comparison."""
    import ray

    spec, layout, setup, steps = req.model, req.layout, req.setup, req.steps
    world, build = layout.world_size, cache_dir()
    t_start = time.time()
    state.phase = "checkpoint"
    ckpt = prepare_checkpoint(req, spec, build, quiet, state.timings)
    if TRAIN_BACKENDS[setup.framework].deepspeed_op:
        from shardsim.launch.session.prebuild import prebuild_deepspeed_op

        state.phase = "op build"
        state.timings["op_build_s"] = prebuild_deepspeed_op(build / "torch_extensions", req.phase_timeout_s, quiet)
    state.phase = "start"
    with ray_waits():
        started = start_ray(req)
        try:
            cpus = placement.check_fits(placement.alive_nodes(), world, req.device)
            _train_phases(req, ckpt, state, Progress(world, quiet), build, cpus)
        finally:
            if started:
                ray.shutdown()
    ranks = []
    measured = {e["rank"]: e["result"] for e in state.results.entries if e.get("event") == "train"}
    for r in range(world):
        meas = measured.get(r, {})
        rows, ok = _compare(predicted[r], meas) if meas else ({}, False)
        ranks.append({"rank": r, "predicted": predicted[r], "node": state.nodes.get(r),
                      "measured": {k: meas.get(k) for k in STATES} | {"activations": meas.get("activations_saved"),
                                                                       "activation_peak": meas.get("activations_peak")},
                      "comparison": rows, "ok": ok, "error": state.failed.get(r),
                      "details": meas.get("details", {})})
    record = {"event": "result", "mode": "train", "command": req.command, "versions": versions(), "model": spec.name,
              "layout": {"tp": layout.tp, "pp": layout.pp, "dp": layout.dp, "world_size": world},
              "setup": setup.model_dump(mode="json"), "steps": steps, "device": req.device,
              "run_dir": str(state.results.path.parent), "ranks": ranks,
              "failed": {str(k): v for k, v in state.failed.items()}}
    record["passed"] = not state.failed and all(r["ok"] for r in ranks)
    state.timings["total_s"] = time.time() - t_start
    record["timings"] = state.timings
    return record


def _train_phases(req, ckpt, state, progress, build, cpus) -> None:
    """Start the actors and run setup and train; the actors are always killed afterwards."""
    from shardsim.launch.train.worker import TrainWorker

    setup = req.setup
    actors: dict = {}
    try:
        start_workers(TrainWorker, req, build, cpus, state, progress, actors)
        if state.failed:
            return
        job = TrainJob(str(ckpt.path), setup.framework, setup.zero, setup.fsdp, setup.grad_accum, req.steps,
                       setup.micro_batch, setup.seq_len, req.seed)
        calls = {
            "setup": lambda a: a.setup.remote(state.meeting, req),
            "train": lambda a: a.train.remote(job),
        }
        run_phases(calls, actors, req, state, progress)
    finally:
        stop_actors(actors, progress, state.meeting)
