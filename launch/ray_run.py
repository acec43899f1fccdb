"""Run a validation on Ray: actors per rank, phases with timeouts and fault handling, progress by phase."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from shardsim.launch.driver import (
    LOGITS_TOLERANCE,
    LOGITS_TOLERANCE_ANY_POSITION,
    ResultsFile,
    ValidateRequest,
    _free_port,
    _versions,
    compare,
    predict,
)
from shardsim.launch.request import build_dir

from shardsim.errors import ShardsimError

PHASES = ("start", "setup", "load", "forward", "measure")


class Progress:
    """Per-rank status by phase, redrawn on stderr (a rich Live table when stderr is a terminal)."""

    def __init__(self, world_size: int, quiet: bool = False):
        self.status = {r: "waiting" for r in range(world_size)}
        self.quiet = quiet
        self.live = None
        if not quiet and sys.stderr.isatty():
            from rich.console import Console
            from rich.live import Live

            self.live = Live(self._table(), console=Console(stderr=True), refresh_per_second=4, transient=True)
            self.live.start()

    def _table(self):
        from rich.table import Table

        table = Table(show_edge=False, header_style="bold")
        table.add_column("rank")
        table.add_column("status")
        for r, s in self.status.items():
            table.add_row(str(r), s)
        return table

    def phase(self, name: str, ranks, state: str) -> None:
        for r in ranks:
            self.status[r] = f"{name}: {state}"
        if self.live is not None:
            self.live.update(self._table())
        elif not self.quiet and state != "running":
            done = sum(1 for s in self.status.values() if s == f"{name}: {state}")
            if done == len(self.status):
                sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] {name}: all {done} ranks {state}\n")

    def failed(self, rank: int, cause: str) -> None:
        self.status[rank] = f"FAILED: {cause}"
        if self.live is not None:
            self.live.update(self._table())
        elif not self.quiet:
            sys.stderr.write(f"[{time.strftime('%H:%M:%S')}] rank {rank} FAILED: {cause}\n")

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()


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


def run(req: ValidateRequest, spec, layout, quiet: bool = False) -> dict:
    """Run every phase on Ray; returns the result record (also appended to the run's results.jsonl)."""
    import ray
    from shardsim.launch.checkpoint import write_checkpoint

    world = layout.world_size
    build = build_dir()
    prompt_len = req.context - req.decode_steps
    predicted = predict(spec, layout, req.context, req.batch, prompt_len, req.backend)
    run_dir = Path(req.run_dir or build / "runs" / time.strftime(f"%Y%m%d-%H%M%S-{spec.name.split(' ')[0]}-tp{layout.tp}-pp{layout.pp}-dp{layout.dp}-ep{layout.ep}"))
    results = ResultsFile(run_dir / "results.jsonl")
    header = {"event": "start", "command": req.command, "versions": _versions(), "model": spec.name,
              "layout": {"tp": layout.tp, "pp": layout.pp, "dp": layout.dp, "ep": layout.ep, "world_size": world},
              "context": req.context, "batch": req.batch, "backend": req.backend, "device": req.device,
              "predicted": predicted, "time": time.time()}
    results.append(header)
    timings = {}
    t_start = time.time()

    if req.checkpoint:
        ckpt = Path(req.checkpoint)
    else:
        ckpt = build / "checkpoints" / f"{spec.name.split(' ')[0]}-L{spec.num_layers}-seed{req.seed}"
        t0 = time.time()
        if not quiet:
            sys.stderr.write(f"checkpoint: {ckpt} …\n")
        write_checkpoint(spec, ckpt, seed=req.seed, source_config=req.source_config)
        timings["checkpoint_s"] = time.time() - t0
    config = json.loads((ckpt / "config.json").read_text())
    rope_theta = float(config.get("rope_theta", 1_000_000.0))
    rms_eps = float(config.get("rms_norm_eps", 1e-6))
    norm_topk = bool(config.get("norm_topk_prob", True))

    outcomes = {r: {"rank": r, "predicted": predicted[r], "measured": {}, "status": "pending", "error": None}
                for r in range(world)}
    progress = Progress(world, quiet)
    actors: dict[int, object] = {}
    failed: dict[int, str] = {}
    t0 = time.time()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    ray_kwargs = {"include_dashboard": False, "log_to_driver": False}
    started_ray = not ray.is_initialized()
    if started_ray and req.address and req.address != "auto":
        _check_reachable(req.address)
    if started_ray:
        try:
            if req.address:
                ray.init(address=req.address, **ray_kwargs)
            else:
                ray.init(num_cpus=max(2, os.cpu_count() or 2), **ray_kwargs)
        except Exception as exc:  # noqa: BLE001 - any failure to reach Ray is the user's input to fix
            where = f"the Ray cluster at {req.address}" if req.address else "a local Ray instance"
            raise ShardsimError(f"cannot start or reach {where}: {str(exc).splitlines()[0][:200]}") from None
    timings["ray_init_s"] = time.time() - t0
    if req.device == "cuda":
        gpus = int(ray.cluster_resources().get("GPU", 0))
        if gpus < world:
            if started_ray:
                ray.shutdown()
            raise ShardsimError(f"--device cuda needs one GPU per rank: the layout has {world} ranks, the Ray cluster {gpus} GPUs")

    from shardsim.launch.worker import RankWorker

    try:
        if req.device == "cuda":
            Actor = ray.remote(num_gpus=1, num_cpus=1)(RankWorker)
        else:
            cpus = float(ray.available_resources().get("CPU", 2))
            Actor = ray.remote(num_cpus=min(1.0, cpus / world), max_restarts=0)(RankWorker)
        env = {"MASTER_ADDR": "127.0.0.1", "LOCAL_SIZE": str(min(world, 8)), "OMP_NUM_THREADS": "1",
               "TORCH_EXTENSIONS_DIR": str(build / "torch_extensions"), "PYTHONPATH": os.pathsep.join(sys.path)}
        if os.environ.get("SHARDSIM_TRACK_DETAIL"):
            env["SHARDSIM_TRACK_DETAIL"] = "1"
        progress.phase("start", range(world), "running")
        actors = {r: Actor.remote(r, world, dict(env, LOCAL_RANK=str(r % 8)), req.fault) for r in range(world)}
        port = _free_port()
        spec_json = spec.model_dump_json()
        layout_args = {"tp": layout.tp, "pp": layout.pp, "dp": layout.dp, "ep": layout.ep,
                       "pp_split": list(layout.pp_split)}
        prompt = [[(7919 * (b + 1) * (i + 1)) % spec.vocab_size for i in range(prompt_len)] for b in range(req.batch)]
        phase_calls = {
            "setup": lambda a: a.setup.remote(port, spec_json, layout_args, req.phase_timeout_s, req.device),
            "load": lambda a: a.load.remote(str(ckpt), rope_theta, rms_eps, norm_topk, req.backend),
            "forward": lambda a: a.forward.remote(prompt, req.context, req.decode_steps, 16),
            "measure": lambda a: a.measure.remote(),
        }
        forward_out = {}
        for phase, call in phase_calls.items():
            t0 = time.time()
            progress.phase(phase, range(world), "running")
            refs = {call(actors[r]): r for r in range(world)}
            pending = list(refs)
            deadline = time.time() + req.phase_timeout_s
            while pending and not failed:
                done, pending = ray.wait(pending, num_returns=1, timeout=max(0.1, deadline - time.time()))
                if not done:
                    for ref in pending:
                        failed[refs[ref]] = f"no answer within the {req.phase_timeout_s:.0f} s timeout of phase '{phase}'"
                    break
                ref = done[0]
                rank = refs[ref]
                try:
                    value = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - any worker failure is reported, not raised
                    failed[rank] = f"phase '{phase}': {_cause(exc)}"
                    progress.failed(rank, failed[rank])
                    outcomes[rank]["status"] = "failed"
                    outcomes[rank]["error"] = failed[rank]
                    break
                progress.phase(phase, [rank], "done")
                if phase == "forward":
                    forward_out[rank] = value
                    value = {k: v for k, v in value.items() if k != "logits"}
                if phase == "measure":
                    outcomes[rank]["measured"] = value
                results.append({"event": phase, "rank": rank, "result": value, "time": time.time()})
            timings[f"{phase}_s"] = time.time() - t0
            if failed:
                break
    finally:
        for actor in actors.values():
            try:
                ray.kill(actor)
            except Exception:  # noqa: BLE001
                pass
        progress.stop()
        if started_ray:
            ray.shutdown()

    record = {"event": "result", "command": req.command, "versions": _versions(), "model": spec.name,
              "layout": header["layout"], "context": req.context, "batch": req.batch, "prompt_tokens": prompt_len,
              "decode_steps": req.decode_steps, "backend": req.backend, "device": req.device,
              "run_dir": str(run_dir), "timings": timings}
    passed = not failed
    ranks = []
    for r in range(world):
        o = outcomes[r]
        rows, ok = compare(o["predicted"], o["measured"]) if o["measured"] else ({}, False)
        meas = o["measured"]
        ranks.append({"rank": r, "predicted": o["predicted"],
                      "measured": {k: meas.get(k) for k in ("weights", "kv_cache", "activations", "rss_anon", "rss_file",
                                                             "zero_gather", "cuda_max_allocated", "cuda_reserved", "cuda_used")
                                   if k in meas or k in ("weights", "kv_cache", "activations", "rss_anon", "rss_file")},
                      "comparison": rows, "ok": ok, "error": failed.get(r)})
        passed &= ok
    record["ranks"] = ranks
    record["failed"] = {str(k): v for k, v in failed.items()}

    if not failed:
        t0 = time.time()
        record["logits"] = check_logits(spec, ckpt, prompt, forward_out, layout, req, rope_theta, rms_eps, norm_topk)
        timings["reference_s"] = time.time() - t0
        passed &= record["logits"]["ok"]
    record["passed"] = passed
    timings["total_s"] = time.time() - t_start
    results.append(record)
    return record


def check_logits(spec, ckpt, prompt, forward_out, layout, req, rope_theta, rms_eps, norm_topk) -> dict:
    """Compare every last-stage leader's logits (one per DP replica) with the unsharded reference."""

    from shardsim.launch.reference import reference_logits

    leaders = [r for r, v in forward_out.items() if v.get("logits") is not None]
    if not leaders:
        return {"ok": False, "error": "no rank returned logits"}
    generated = forward_out[leaders[0]]["generated"]
    sequences = [prompt[b] + [generated[s][b] for s in range(req.decode_steps)] for b in range(req.batch)]
    ref = reference_logits(spec, str(ckpt), sequences, req.decode_steps + 1, rope_theta, rms_eps, norm_topk)
    worst_l2, worst_abs, worst_median = 0.0, 0.0, 0.0
    argmax_agree = True
    for r in leaders:
        got = forward_out[r]["logits"]
        diff = got - ref
        per_position = diff.norm(dim=-1) / ref.norm(dim=-1).clamp_min(1e-6)  # [batch, positions]
        per_position_worst = [round(v, 5) for v in per_position.max(dim=0).values.tolist()]
        worst_l2 = max(worst_l2, per_position.max().item())
        worst_median = max(worst_median, per_position.median().item())
        worst_abs = max(worst_abs, diff.abs().max().item() / max(ref.abs().max().item(), 1e-6))
        argmax_agree &= bool((got[:, 0].argmax(-1) == ref[:, 0].argmax(-1)).all())
    ok = worst_median <= LOGITS_TOLERANCE and worst_l2 <= LOGITS_TOLERANCE_ANY_POSITION and argmax_agree
    return {"ok": ok, "max_rel_l2_error": worst_l2, "median_rel_l2_error": worst_median,
            "tolerance_any_position": LOGITS_TOLERANCE_ANY_POSITION,
            "max_abs_error_rel_to_max": worst_abs, "tolerance": LOGITS_TOLERANCE,
            "rel_l2_by_position": per_position_worst,
            "prefill_argmax_agrees": argmax_agree, "compared_ranks": leaders, "positions": req.decode_steps + 1}
