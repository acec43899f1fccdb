"""``shardsim calibrate FILE.jsonl``: published (or your own) engine measurements, predicted vs measured.

``--speed``: serving benchmarks instead (TTFT, TPOT, tokens/s; ``shardsim.speed.calibration``), the shipped database
by default, or a ``vllm bench serve --save-result`` JSON with the GPU and layout it ran on (``--gpu``, ``--tp`` …), or
with the GPU and the server's start-up log (``--server-log``: the release, layout, formats and server flags).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Optional

import typer

from shardsim.cli.common import console, print_json, single
from shardsim.cli.options import (
    CheckOpt,
    DpOpt,
    EngineVersionOpt,
    EpOpt,
    GpuOpt,
    JsonOpt,
    KvCacheDtypeOpt,
    MeasurementsArg,
    ModelsOpt,
    PpOpt,
    QuantOpt,
    SpeedOpt,
    TpOpt,
)
from shardsim.errors import ShardsimError

ServerLogOpt = Annotated[Optional[str], typer.Option("--server-log", metavar="PATH", show_default=False,
                                                   help="with a vllm bench serve result: the server's start-up log "
                                                        "(release, layout, formats, server flags)")]
SPEED_TARGETS = {"ttft": 0.25, "tpot": 0.15, "throughput": 0.15}
"""Held-out median error goals of the speed model (issue J): ``--check`` fails beyond them."""


@dataclass(frozen=True)
class CalibrateRequest:
    """What to calibrate: a memory measurements file, or (``speed``) serving benchmarks / a vLLM result and the
    setup the result ran on."""

    path: Optional[str]
    speed: bool
    setup: object  # speed.vllm_result.ResultSetup
    given_setup: tuple[str, ...]  # the setup flags given
    server_log: Optional[str] = None  # the server's start-up log (speed.server_log)

    def checked(self) -> "CalibrateRequest":
        from shardsim.speed.vllm_result import looks_like_result

        result = self.path is not None and looks_like_result(self.path)
        if self.server_log is not None and not (self.speed and result):
            raise ShardsimError("--server-log does nothing here; it goes with a vllm bench serve result "
                                "(calibrate --speed RESULT.json --gpu NAME --server-log LOG)")
        if self.given_setup and not (self.speed and result):
            raise ShardsimError(f"{self.given_setup[0]} does nothing here; it describes a vllm bench serve result "
                                "(calibrate --speed RESULT.json --gpu NAME …)")
        if self.path is None and not self.speed:
            raise ShardsimError("give a measurements file (calibrate FILE.jsonl), or --speed for the serving benchmarks")
        return self


def calibrate(path: MeasurementsArg = None, as_json: JsonOpt = False, check: CheckOpt = False, speed: SpeedOpt = False,
              model: ModelsOpt = None, gpu: GpuOpt = None, tp: TpOpt = 1, pp: PpOpt = 1, dp: DpOpt = 1, ep: EpOpt = 1,
              quant: QuantOpt = None, kv_cache_dtype: KvCacheDtypeOpt = None,
              engine_version: EngineVersionOpt = None, server_log: ServerLogOpt = None) -> None:
    """Run published (or your own) engine measurements through shardsim: predicted vs measured, per figure.
    Exit 0 with the verdicts printed; with --check, exit 1 when a row falls outside its bounds (--speed: when a
    held-out median error exceeds its goal).

    \b
    Examples:
      shardsim calibrate tests/data/measurements.jsonl --check
      shardsim calibrate --speed
      shardsim calibrate --speed result.json --gpu h100 --tp 2
      shardsim calibrate --speed result.json --gpu h100 --server-log serve.log
    """
    request = _request(path, speed, model, gpu, (tp, pp, dp, ep), quant, kv_cache_dtype, engine_version, server_log)
    if request.speed:
        return _speed(request, as_json, check)
    from shardsim.engines.calibration import calibrate as run_calibration
    from shardsim.engines.calibration import summary
    from shardsim.render.calibration_text import calibration_rows_json, render_calibration

    results = run_calibration(request.path)
    summ = summary(results)
    if as_json:
        print_json(calibration_rows_json(results, summ))
    else:
        render_calibration(results, summ, console())
    if check and summ["rows_failed"]:
        raise typer.Exit(1)


def _request(path, speed, model, gpu, degrees, quant, kv_cache_dtype, engine_version,
             server_log=None) -> CalibrateRequest:
    from shardsim.speed.vllm_result import ResultSetup

    tp, pp, dp, ep = degrees
    given = [flag for flag, value, default in (("--model", model, None), ("--gpu", gpu, None), ("--tp", tp, 1),
             ("--pp", pp, 1), ("--dp", dp, 1), ("--ep", ep, 1), ("--quant", quant, None),
             ("--kv-cache-dtype", kv_cache_dtype, None), ("--engine-version", engine_version, None))
             if value != default]
    setup = ResultSetup(single(model, "--model"), gpu, tp, pp, dp, ep, single(quant, "--quant"), kv_cache_dtype,
                        engine_version)
    return CalibrateRequest(path, speed, setup, tuple(given), server_log).checked()


def _speed(request: CalibrateRequest, as_json: bool, check: bool) -> None:
    from shardsim.render.speed_calibration_text import speed_calibration_json, speed_calibration_lines
    from shardsim.speed import calibration
    from shardsim.speed.vllm_result import looks_like_result, result_row, with_log

    path = request.path or calibration.DATABASE
    if looks_like_result(path):
        setup, notes = request.setup, ""
        if request.server_log is not None:
            from shardsim.speed.server_log import read_server_log

            setup, notes = with_log(setup, request.given_setup, read_server_log(request.server_log))
        results = [calibration.calibrate_row(result_row(path, setup, notes))]
        if results[0].error:
            raise ShardsimError(f"{path}: {results[0].error}")
    else:
        results = calibration.calibrate(path)
    summary = calibration.summary(results)
    if as_json:
        print_json(speed_calibration_json(results, summary))
    else:
        import sys

        sys.stdout.write("\n".join(speed_calibration_lines(results, summary, SPEED_TARGETS)) + "\n")
    held = [s for s in summary if s["split"] == "held_out" and s["gpu"] == "*"]
    if check and any(s[m] and s[m]["median"] > goal for s in held for m, goal in SPEED_TARGETS.items()):
        raise typer.Exit(1)


def register(app) -> None:
    app.command()(calibrate)
