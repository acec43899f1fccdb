"""The error bands ``shardsim speed`` prints: the held-out error of ``shardsim calibrate --speed`` per engine.

Per engine and figure (TTFT, TPOT, output tokens/s): the 90th percentile of the absolute relative error over the
held-out rows of ``shardsim/speed/data/serving_benchmarks.jsonl`` when there are at least ``P90_ROWS`` of them, else
the largest (its row named). Written from ``speed.calibration.held_out_bands`` (``benchmarks/fit_speed.py`` prints
it); ``tests/unit/test_speed_fit.py`` recomputes it and fails when the table and the database disagree.
"""

from __future__ import annotations

P90_ROWS = 5

HELD_OUT: dict[str, dict[str, dict]] = {
    'sglang': {
        'ttft': {'band': 0.697, 'rows': 35, 'how': 'p90', 'row': 'gpustack-q3-8b-h100-e'},
        'tpot': {'band': 0.549, 'rows': 34, 'how': 'p90', 'row': 'gpustack-q3-14b-a100-b'},
        'throughput': {'band': 0.531, 'rows': 50, 'how': 'p90', 'row': 'sglcookbook-q3next-b200-b'},
    },
    'vllm': {
        'ttft': {'band': 0.697, 'rows': 40, 'how': 'p90', 'row': 'tt-issue-394-q3-4b-4090-4096-128'},
        'tpot': {'band': 0.568, 'rows': 29, 'how': 'p90', 'row': 'kvcached-h100-qwen3-0.6b-rateinf-vanilla'},
        'throughput': {'band': 0.517, 'rows': 38, 'how': 'p90', 'row': 'gpustack-q3-235b-a100-c'},
    },
}
"""engine → figure (``ttft``, ``tpot``, ``throughput``) → {"band": relative error, "rows": n, "how": "p90" or
"worst", "row": the worst row's id}."""

METRICS = ("ttft", "tpot", "throughput")


def speed_bands(engine: str | None) -> dict[str, dict | None]:
    """Per figure, the band of ``engine`` (None: the planner alone, banded like vLLM), or None without held-out
    rows."""
    table = HELD_OUT.get(engine or "vllm", {})
    return {metric: table.get(metric) for metric in METRICS}
