"""``shardsim calibrate FILE.jsonl``: published (or your own) engine measurements, predicted vs measured."""

from __future__ import annotations

import typer

from shardsim.cli.common import console, print_json
from shardsim.cli.options import CheckOpt, JsonOpt, MeasurementsArg


def calibrate(path: MeasurementsArg, as_json: JsonOpt = False, check: CheckOpt = False) -> None:
    """Run published (or your own) engine measurements through shardsim: predicted vs measured, per figure.
    Exit 0 with the verdicts printed; with --check, exit 1 when a row falls outside its bounds."""
    from shardsim.engines.calibration import calibrate as run_calibration
    from shardsim.engines.calibration import summary
    from shardsim.render.calibration_text import calibration_rows_json, render_calibration

    results = run_calibration(path)
    summ = summary(results)
    if as_json:
        print_json(calibration_rows_json(results, summ))
    else:
        render_calibration(results, summ, console())
    if check and summ["rows_failed"]:
        raise typer.Exit(1)


def register(app) -> None:
    app.command()(calibrate)
