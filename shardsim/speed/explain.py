"""The arithmetic behind a speed estimate, as numbers: each stage's per-token coefficients and the two steps of
the steady state (a decode step and a step carrying prompt tokens), per op group and collective."""

from __future__ import annotations

from shardsim.speed import comm, roofline, work
from shardsim.speed.work import StepShape


def _step(pipe, shape: StepShape) -> dict:
    m = pipe.micro_batches(shape)
    sub = StepShape(shape.decode / m, shape.decode_keys, shape.prefill / m, shape.prefill_keys,
                    shape.prefill_done / m, shape.prefill_kv_read / m)
    stages = []
    for stage, links in zip(pipe.stages, pipe.links):
        w = work.step_work(stage, sub)
        groups = roofline.group_times(w, pipe.peaks, pipe.eff)
        colls = comm.step_collectives(stage, pipe.layout, links, sub.tokens, sub.sequences, pipe.vocab,
                                      stage.pp_rank == 0)
        stages.append({
            "stage": stage.pp_rank,
            "groups": [{"name": g.name, "flops": g.flops, "bytes": g.nbytes, "compute_s": g.compute_s,
                        "memory_s": g.memory_s, "bound": g.bound} for g in groups],
            "collectives": [c.to_dict() for c in colls],
            "layer_overhead_s": pipe.layer_seconds(stage, sub), "layers": stage.layers, "graphed": pipe.graphed(sub),
            "seconds": sum(g.seconds for g in groups) + sum(c.seconds for c in colls) + pipe.layer_seconds(stage, sub),
        })
    times = [s["seconds"] for s in stages]
    return {"shape": {"decode": shape.decode, "decode_keys": shape.decode_keys, "prefill": shape.prefill,
                      "prefill_keys": shape.prefill_keys, "sampled": shape.sequences},
            "micro_batches": m, "stages": stages, "pipeline_s": max(sum(times), m * max(times)),
            "overhead_s": pipe.host_seconds(shape), "seconds": pipe(shape)}


def breakdown(pipe, steady) -> dict:
    """The two steps of the steady state (``serving.Steady``: a decode step, and the step carrying prompt tokens)
    and each stage's per-token coefficients."""
    coeffs = [{f: getattr(s, f) for f in s.__slots__} for s in pipe.stages]
    return {"stage_coefficients": coeffs, "decode_step": _step(pipe, steady.decode_shape),
            "prefill_step": _step(pipe, steady.prefill_shape)}
