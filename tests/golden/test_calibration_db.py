"""The measurement database: published rows with sources, fitted and held-out kept apart, and the error bands
``plan`` prints equal to what the held-out rows give."""

import json
from pathlib import Path

from shardsim.engines import bands
from shardsim.engines.calibration import calibrate, held_out_bands, read_rows, summary

DB = Path(__file__).resolve().parent.parent / "data" / "measurements.jsonl"


def test_database_rows_name_their_source_engine_and_set():
    rows = [row for _, row in read_rows(DB)]
    assert len(rows) >= 60
    ids = [r["id"] for r in rows]
    assert len(set(ids)) == len(ids)
    for r in rows:
        assert r["source"] and r["engine"] and r["set"] in ("fitted", "held_out"), r["id"]
        assert r.get("evaluate", True) or r["skip_reason"], r["id"]   # a row left out says why
    engines = {r["engine"] for r in rows}
    assert {"vLLM", "SGLang"} <= engines


def test_fitted_constants_name_rows_of_the_fitted_set():
    from shardsim.fitted import FITTED

    rows = {r["id"]: r for _, r in read_rows(DB)}
    for value in FITTED:
        assert value.rows, value.name
        for row_id in value.rows:
            assert rows[row_id]["set"] == "fitted", (value.name, row_id)


def test_bands_are_the_held_out_errors():
    results = calibrate(DB)
    assert bands.HELD_OUT == held_out_bands(results)
    s = summary(results)
    # nothing the bands come from was fitted to
    assert s["held_out"]["rows"] + s["fitted"]["rows"] == s["rows"]
    assert all(r.set == "held_out" for r in results if r.line in {x.line for x in results if x.set == "held_out"})


def test_held_out_rows_are_not_in_sample(tmp_path):
    rows = [row for _, row in read_rows(DB)]
    fitted_sources = {r["source"] for r in rows if r["set"] == "fitted"}
    held_sources = {r["source"] for r in rows if r["set"] == "held_out"}
    assert not fitted_sources & held_sources
    json.dumps(rows)
