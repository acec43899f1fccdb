"""The speed model's fitted table and bands against the serving benchmarks, and the fit's machinery on the test
fixture (``tests/data/serving_benchmarks_test.jsonl``: made-up rows, clearly marked, not measurements)."""

from __future__ import annotations

from pathlib import Path

import pytest

from shardsim.speed import bands, calibration, fit, fitted

FIXTURE = Path(__file__).resolve().parents[1] / "data" / "serving_benchmarks_test.jsonl"
DATABASE = calibration.DATABASE


def test_fixture_rows_say_they_are_test_data():
    for row in calibration.read_rows(FIXTURE):
        assert row.source.startswith("TEST DATA")


def test_fit_is_deterministic_and_lowers_the_loss():
    rows = [r for r in calibration.read_rows(FIXTURE) if r.split == "fitted"]
    ready, skipped = fit.prepare_rows(rows)
    assert not skipped and len(ready) == 2
    prior = fitted.PRIOR.efficiency()
    first, value = fit.fit(ready)
    again, _ = fit.fit(ready)
    assert first == again
    assert value <= fit.loss(ready, prior)
    for name, grid in fit.GRIDS.items():  # every value the rows can set on its grid; no fp8 row: none of fp8
        assert getattr(first, name) in grid if name in fit.fitted_grids(ready) else getattr(first, name) is None


def test_fit_keeps_the_least_loss_of_the_profile_and_searches_from_other_values():
    """A coordinate search stops in the nearest valley; ``also_from`` (the table's previous values, in
    ``benchmarks/fit_speed.py``) are further starts, and the least loss found is kept (ties: the profile's)."""
    from dataclasses import replace

    rows = [r for r in calibration.read_rows(FIXTURE) if r.split == "fitted"]
    ready, _ = fit.prepare_rows(rows)
    other = replace(fitted.PRIOR.efficiency(), compute=0.9, memory=0.3, step_overhead_s=0.02)
    plain, from_other = fit.fit(ready), fit.fit(ready, start=other)
    best = plain if plain[1] <= from_other[1] else from_other
    assert fit.fit(ready, also_from=(other,)) == best
    # a previous fp8 speedup does not carry into a fit whose rows set none (no fp8 row here)
    assert fit.fit(ready, start=replace(other, fp8_speedup=1.5))[0].fp8_speedup is None


def test_held_out_bands_p90_with_five_rows_else_the_worst_named():
    def result(i, err):
        r = calibration.RowResult(f"r{i}", "held_out", "vllm", "H100-SXM-80GB", "")
        r.figures = [calibration.Figure("tpot", 1 + err, 1.0, "tpot_ms_median")]
        return r

    four = [result(i, e) for i, e in enumerate((0.1, -0.2, 0.05, 0.3))]
    assert calibration.held_out_bands(four)["vllm"]["tpot"] == {"band": 0.3, "rows": 4, "how": "worst", "row": "r3"}
    ten = [result(i, e) for i, e in enumerate((0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.09, 0.5))]
    # p90 of |error| sorted: between the 9th (0.09) and the 10th (0.5) value at 0.1 of the way: 0.09 + 0.041
    assert calibration.held_out_bands(ten)["vllm"]["tpot"]["band"] == pytest.approx(0.131)


@pytest.mark.skipif(not DATABASE.exists(), reason="the serving benchmarks database is not written yet")
def test_fitted_table_names_fitted_rows_of_the_database():
    rows = {r.id: r for r in calibration.read_rows(DATABASE)}
    for entry in fitted.FITTED:
        for row_id in entry.rows:
            assert row_id in rows, f"{entry.engine}: {row_id} is not in the database"
            assert rows[row_id].split == "fitted", f"{row_id} fed a fitted value but is not split 'fitted'"


@pytest.mark.skipif(not DATABASE.exists(), reason="the serving benchmarks database is not written yet")
def test_bands_table_equals_the_held_out_errors():
    results = calibration.calibrate(DATABASE)
    assert bands.HELD_OUT == calibration.held_out_bands(results, bands.P90_ROWS)


@pytest.mark.skipif(not DATABASE.exists(), reason="the serving benchmarks database is not written yet")
def test_a_row_that_names_no_release_runs_at_the_release_of_its_date():
    """Tenstorrent's A100 runs name no vLLM release but are dated 2025-06-24: modelled at 0.9.1, the newest release
    then (PIECEWISE graphs); a row naming its release keeps it."""
    rows = {r.id: r for r in calibration.read_rows(DATABASE)}
    dated, named = rows["tt-issue-340-q3-0.6b-128-128"], rows["gpustack-q3-8b-h100-a"]
    assert dated.release is None and dated.release_by_date == "0.9.1"
    assert calibration.speed_request_of(dated).serve.engine.given()["engine_version"] == "0.9.1"
    assert calibration.speed_request_of(named).serve.engine.given()["engine_version"] == "0.11.0"


def test_server_flags_quoted_in_a_rows_notes_set_its_knobs():
    """A row's ``vllm serve`` flags are the server it measured: the abbreviated ``--max-num-seq 30`` is argparse's
    prefix of --max-num-seqs; a flag inside a longer word is not one."""
    notes = ("vllm serve --gpu-memory-utilization 0.95 --max-model-len 16384 --enforce-eager --max-num-seq 30; "
             "--max-num-batched-tokens 16384.")
    assert calibration.server_flags("vllm", notes) == {
        "max_model_len": 16384, "max_num_seqs": 30, "max_num_batched_tokens": 16384, "gpu_memory_utilization": 0.95,
        "enforce_eager": True}
    assert calibration.server_flags("vllm", "--enforce-eagerly --max-num-seqsx 4") == {}
    # SGLang's launch flags set SGLang's knobs; the other engine's flags set nothing
    sglang = ("python -m sglang.launch_server --mem-fraction-static 0.8 --context-length=32768 "
              "--chunked-prefill-size 4096 --max-running-requests 64 --disable-radix-cache")
    assert calibration.server_flags("sglang", sglang) == {
        "mem_fraction_static": 0.8, "context_length": 32768, "chunked_prefill_size": 4096, "max_running_requests": 64,
        "disable_radix_cache": True}
    assert calibration.server_flags("sglang", notes) == {} and calibration.server_flags("trtllm", sglang) == {}


@pytest.mark.skipif(not DATABASE.exists(), reason="the serving benchmarks database is not written yet")
def test_an_eager_row_is_modelled_eager_with_its_memory_share():
    """vllm-issue-20469-a ran ``--enforce-eager --gpu-memory-utilization 0.95 --max-num-seq 30``: its request
    carries those knobs, so its decode steps replay no CUDA graph and its KV cache is 95 % of the card's share."""
    from shardsim.speed.estimate import prepare

    row = {r.id: r for r in calibration.read_rows(DATABASE)}["vllm-issue-20469-a"]
    given = calibration.speed_request_of(row).serve.engine.given()
    assert given["enforce_eager"] is True and given["gpu_memory_utilization"] == 0.95 and given["max_num_seqs"] == 30
    sched, pipe, _ = prepare(calibration.speed_request_of(row))
    assert sched.max_seqs == 30 and pipe.graph_decode_max == 0


@pytest.mark.skipif(not DATABASE.exists(), reason="the serving benchmarks database is not written yet")
def test_a_dense_sglang_rows_running_cap_is_its_max_running_requests():
    """arle0418-q3-4b-l4-sglang-c8 launched SGLang with ``--max-running-requests 8 --mem-fraction-static 0.88`` for
    Qwen3-4B (a dense model): the scheduler runs at most 8 requests and the pool is 88 % of the card's share."""
    from shardsim.speed.estimate import prepare

    row = {r.id: r for r in calibration.read_rows(DATABASE)}["arle0418-q3-4b-l4-sglang-c8"]
    given = calibration.speed_request_of(row).serve.engine.given()
    assert given["max_running_requests"] == 8 and given["mem_fraction_static"] == 0.88
    sched, _, _ = prepare(calibration.speed_request_of(row))
    assert sched.max_seqs == 8
