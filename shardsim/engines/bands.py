"""The error bands an engine report prints: the held-out error of ``shardsim calibrate`` on the measurement database.

``HELD_OUT`` is written from ``engines.calibration.held_out_bands`` over ``tests/data/measurements.jsonl`` (rows no
constant was fitted to); ``tests/golden/test_calibration_db.py`` recomputes it and fails when the table and the
database disagree. Per engine and rule set, per figure: the largest relative error over the held-out rows (the
band a user should expect), or the engine's figure over all its releases when a rule set has no held-out row.
"""

from __future__ import annotations

HELD_OUT: dict[str, dict[str, dict[str, float]]] = {'sglang': {'*': {'kv_cache_tokens': 0.082, 'model_loading_bytes': 0.06},
            'SGLang 0.5.10–0.5.19 rules': {'model_loading_bytes': 0.06}},
 'vllm': {'*': {'available_kv_cache_bytes': 0.733, 'kv_cache_tokens': 0.753, 'model_loading_bytes': 0.008},
          'vLLM 0.10.2–0.10.x rules': {'available_kv_cache_bytes': 0.058,
                                       'kv_cache_tokens': 0.058,
                                       'model_loading_bytes': 0.008},
          'vLLM 0.17–0.19 rules': {'available_kv_cache_bytes': 0.135,
                                   'kv_cache_tokens': 0.135,
                                   'model_loading_bytes': 0.001},
          'vLLM 0.27–0.28 rules': {'model_loading_bytes': 0.003}}}
"""engine → rule-set label (or "*": all releases) → figure → largest held-out relative error."""

FALLBACK = {"vllm": {"model_loading_bytes": 0.005, "kv_cache_tokens": 0.03},
            "sglang": {"model_loading_bytes": 0.05, "kv_cache_tokens": 0.03}}
"""Used only for an engine with no held-out row at all: the issue's accuracy goals, not a measured band."""


def error_bands(engine: str, rules_label: str | None = None) -> dict[str, float]:
    """Per figure, the band to print for ``engine`` at the rule set ``rules_label``."""
    table = HELD_OUT.get(engine, {})
    merged = dict(FALLBACK.get(engine, {}))
    merged.update(table.get("*", {}))
    if rules_label is not None:
        merged.update(table.get(rules_label, {}))
    return merged
