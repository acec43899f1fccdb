"""``calibrate --speed`` groups the held-out rows of publishers with no fitted row (a leave-publisher-out view)."""

from __future__ import annotations

from shardsim.speed.calibration import NEW_PUBLISHER, Figure, RowResult, publisher_of, summary


def test_the_publisher_is_the_github_owner_or_the_web_host():
    assert publisher_of("gpustack/gpustack@47277d79:docs/performance-lab/qwen3-32b/h100.md") == "gpustack"
    assert publisher_of("https://github.com/tenstorrent/tt-inference-server/issues/340") == "tenstorrent"
    assert publisher_of("https://www.github.com/QwenLM/Qwen3/issues/1536") == "qwenlm"
    assert publisher_of("https://lambda.ai/inference-models/qwen/qwen3-32b") == "lambda.ai"
    assert publisher_of("https://www.example.com/a/b") == "example.com"


def _row(row_id: str, split: str, publisher: str, error: float) -> RowResult:
    # measured 100 ms; predicted 100 × (1 + error)
    return RowResult(row_id, split, "vllm", "H100-SXM-80GB", row_id,
                     [Figure("tpot", 100.0 * (1 + error), 100.0, "tpot_ms_median")], publisher=publisher)


def test_only_held_out_rows_of_publishers_never_fitted_form_the_group():
    results = [_row("a", "fitted", "gpustack", 0.05), _row("b", "held_out", "gpustack", 0.10),
               _row("c", "held_out", "qwenlm", -0.20), _row("d", "held_out", "ovg-project", 0.60),
               _row("e", "held_out", "qwenlm", 0.30)]
    groups = [s for s in summary(results) if s["split"] == NEW_PUBLISHER]
    assert len(groups) == 1
    group = groups[0]
    # b's publisher has a fitted row (a): left out; c, d, e: |errors| 0.2, 0.6, 0.3 → median 0.3, worst d
    assert group["rows"] == 3 and group["publishers"] == ["ovg-project", "qwenlm"]
    assert abs(group["tpot"]["median"] - 0.30) < 1e-12 and group["tpot"]["worst_row"] == "d"
    held = next(s for s in summary(results) if s["split"] == "held_out" and s["gpu"] == "*")
    assert held["rows"] == 4   # the plain held-out group keeps every held-out row
