"""The error bands an engine report prints: the held-out error of ``shardsim calibrate`` on the measurement database,
per rule set.

``HELD_OUT`` is written from ``engines.calibration_report.held_out_bands`` over ``tests/data/measurements.jsonl``
(rows no constant was fitted to, and that name their release); ``tests/golden/test_calibration_db.py`` recomputes
it and fails when the table and the database disagree. Per engine, rule set and figure: the p90 of the held-out
errors with 10 rows or more, else the largest, with the worst row named. A rule set without held-out rows of a
figure takes the nearest rule set's (by release order; the newer on a tie), named; an engine without any row
takes ``FALLBACK``, the accuracy goals, labelled so.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

HELD_OUT: dict[str, dict[str, dict[str, dict]]] = {'sglang': {'SGLang 0.5.10–0.5.19 rules': {'kv_cache_tokens': {'band': 0.002,
                                                               'rows': 2,
                                                               'worst': 'Qwen/Qwen3-Reranker-0.6B · SGLang · NVIDIA '
                                                                        'H100 80GB HBM3 · TP1',
                                                               'worst_error': 0.0016,
                                                               'under': 0.0},
                                           'model_loading_bytes': {'band': 0.06,
                                                                   'rows': 3,
                                                                   'worst': 'Qwen/Qwen3-Reranker-0.6B · SGLang · '
                                                                            'NVIDIA H100 80GB HBM3 · TP1',
                                                                   'worst_error': 0.0592,
                                                                   'under': 0.0}}},
 'vllm': {'vLLM 0.10.2–0.10.x rules': {'available_kv_cache_bytes': {'band': 0.023,
                                                                    'rows': 8,
                                                                    'worst': 'Qwen/Qwen3-8B · vLLM · NVIDIA L40S '
                                                                             "(44.39 GiB per vLLM 'Free memory on "
                                                                             'device (4',
                                                                    'worst_error': 0.023,
                                                                    'under': 0.007},
                                       'cuda_graph_bytes': {'band': 1.415,
                                                            'rows': 4,
                                                            'worst': 'Qwen/Qwen3-8B · vLLM · NVIDIA L40S (44.39 GiB '
                                                                     "per vLLM 'Free memory on device (4",
                                                            'worst_error': 1.4143,
                                                            'under': 0.008},
                                       'kv_cache_tokens': {'band': 0.024,
                                                           'rows': 8,
                                                           'worst': 'Qwen/Qwen3-8B · vLLM · NVIDIA L40S (44.39 GiB per '
                                                                    "vLLM 'Free memory on device (4",
                                                           'worst_error': 0.0231,
                                                           'under': 0.008},
                                       'model_loading_bytes': {'band': 0.008,
                                                               'rows': 9,
                                                               'worst': 'Qwen/Qwen3-8B (self-quantized AWQ W4A16 g128 '
                                                                        'asym, llm-compressor) · vLLM · NVID',
                                                               'worst_error': 0.0078,
                                                               'under': 0.008}},
          'vLLM 0.17–0.19 rules': {'available_kv_cache_bytes': {'band': 0.009,
                                                                'rows': 2,
                                                                'worst': 'Qwen/Qwen3-8B · vLLM · NVIDIA A100-SXM4-40GB '
                                                                         '(40960MiB) · TP1',
                                                                'worst_error': 0.0084,
                                                                'under': 0.0},
                                   'cuda_graph_bytes': {'band': 0.567,
                                                        'rows': 1,
                                                        'worst': 'Qwen/Qwen3-8B · vLLM · NVIDIA A100-SXM4-40GB '
                                                                 '(40960MiB) · TP1',
                                                        'worst_error': 0.5661,
                                                        'under': 0.567},
                                   'kv_cache_tokens': {'band': 0.01,
                                                       'rows': 3,
                                                       'worst': 'Qwen/Qwen3-32B · vLLM · Blackwell sm_120 GPU, model '
                                                                'not named (RTX PRO 6000 Blac',
                                                       'worst_error': 0.0094,
                                                       'under': 0.0},
                                   'model_loading_bytes': {'band': 0.001,
                                                           'rows': 2,
                                                           'worst': 'Qwen/Qwen3-8B · vLLM · NVIDIA A100-SXM4-40GB '
                                                                    '(40960MiB) · TP1',
                                                           'worst_error': 0.0002,
                                                           'under': 0.001}},
          'vLLM 0.24–0.26 rules': {'kv_cache_tokens': {'band': 0.08,
                                                       'rows': 1,
                                                       'worst': 'Qwen/Qwen3-8B · vLLM · NVIDIA GeForce RTX 5090 '
                                                                '32607MiB · TP1',
                                                       'worst_error': 0.0791,
                                                       'under': 0.0},
                                   'model_loading_bytes': {'band': 0.001,
                                                           'rows': 1,
                                                           'worst': 'Qwen/Qwen3-8B · vLLM · NVIDIA GeForce RTX 5090 '
                                                                    '32607MiB · TP1',
                                                           'worst_error': 0.0002,
                                                           'under': 0.001}},
          'vLLM 0.27–0.28 rules': {'available_kv_cache_bytes': {'band': 0.169,
                                                                'rows': 2,
                                                                'worst': 'Qwen/Qwen3-32B · vLLM · NVIDIA RTX PRO 6000 '
                                                                         'Blackwell Server Edition 95.01 GiB (',
                                                                'worst_error': 0.1685,
                                                                'under': 0.028},
                                   'kv_cache_tokens': {'band': 0.061,
                                                       'rows': 2,
                                                       'worst': 'Qwen/Qwen3-32B · vLLM · NVIDIA RTX PRO 6000 Blackwell '
                                                                'Server Edition 95.01 GiB (',
                                                       'worst_error': 0.0605,
                                                       'under': 0.027},
                                   'model_loading_bytes': {'band': 0.003,
                                                           'rows': 3,
                                                           'worst': 'Qwen/Qwen3-32B · vLLM · NVIDIA RTX PRO 6000 '
                                                                    'Blackwell Server Edition 95.01 GiB (',
                                                           'worst_error': 0.0022,
                                                           'under': 0.003}},
          'vLLM 0.8.5 rules': {'kv_cache_tokens': {'band': 0.067,
                                                   'rows': 1,
                                                   'worst': 'Qwen/Qwen3-30B-A3B · vLLM · NVIDIA A10 24GB (4x A10, 96GB '
                                                            'total as stated) · TP4',
                                                   'worst_error': 0.0668,
                                                   'under': 0.067},
                               'model_loading_bytes': {'band': 0.001,
                                                       'rows': 1,
                                                       'worst': 'Qwen/Qwen3-30B-A3B · vLLM · NVIDIA A10 24GB (4x A10, '
                                                                '96GB total as stated) · TP4',
                                                       'worst_error': 0.0001,
                                                       'under': 0.001}},
          'vLLM 0.9.1–0.10.1 rules': {'available_kv_cache_bytes': {'band': 0.002,
                                                                   'rows': 1,
                                                                   'worst': 'Qwen/Qwen3-8B · vLLM · NVIDIA '
                                                                            'A100-SXM4-40GB (40960MiB) · TP1',
                                                                   'worst_error': 0.002,
                                                                   'under': 0.002},
                                      'cuda_graph_bytes': {'band': 0.397,
                                                           'rows': 1,
                                                           'worst': 'Qwen/Qwen3-8B · vLLM · NVIDIA A100-SXM4-40GB '
                                                                    '(40960MiB) · TP1',
                                                           'worst_error': 0.3964,
                                                           'under': 0.397},
                                      'kv_cache_tokens': {'band': 0.002,
                                                          'rows': 1,
                                                          'worst': 'Qwen/Qwen3-8B · vLLM · NVIDIA A100-SXM4-40GB '
                                                                   '(40960MiB) · TP1',
                                                          'worst_error': 0.0019,
                                                          'under': 0.002},
                                      'model_loading_bytes': {'band': 0.001,
                                                              'rows': 1,
                                                              'worst': 'Qwen/Qwen3-8B · vLLM · NVIDIA A100-SXM4-40GB '
                                                                       '(40960MiB) · TP1',
                                                              'worst_error': 0.0001,
                                                              'under': 0.001}}}}
"""engine → rule-set label → figure → {band, rows, worst (its row), worst_error, under (the largest
under-estimate)}."""

FALLBACK = {"vllm": {"model_loading_bytes": 0.005, "kv_cache_tokens": 0.03},
            "sglang": {"model_loading_bytes": 0.05, "kv_cache_tokens": 0.03}}
"""Used only for an engine with no held-out row at all: the issue's accuracy goals, not a measured band."""


@dataclass(frozen=True, slots=True)
class Band:
    """One figure's band and where it comes from."""

    figure: str
    band: float
    rules: str            # the rule set whose held-out rows set it ("goal" for FALLBACK)
    rows: int = 0
    worst: str = ""
    worst_error: float = 0.0
    under: float = 0.0    # the largest under-estimate held out, (measured − predicted) / measured

    def describe(self) -> str:
        if self.rules == "goal":
            return f"{self.figure} ±{100 * self.band:g} % (accuracy goal: no held-out row yet)"
        kind = "p90" if self.rows >= 10 else ("largest" if self.rows > 1 else "one row")
        return (f"{self.figure} ±{100 * self.band:g} % ({kind} of {self.rows} held-out row(s) of {self.rules}; worst "
                f"{100 * self.worst_error:.1f} %: {self.worst})")


def _labels(engine: str) -> list[str]:
    from shardsim.engines.releases import RELEASE_TABLES

    table = RELEASE_TABLES.get(engine)
    return list(dict.fromkeys(row.label for row in table.rows)) if table else []


def band_details(engine: str, rules_label: str | None = None) -> dict[str, Band]:
    """Per figure, the band for ``engine`` at the rule set ``rules_label`` and its source (module docstring)."""
    return dict(_band_details(engine, rules_label))


@lru_cache(maxsize=256)
def _band_details(engine: str, rules_label: str | None) -> tuple[tuple[str, Band], ...]:
    """``band_details`` as items, once per engine and rule set (the tables are constants of this module)."""
    table = HELD_OUT.get(engine, {})
    labels = _labels(engine)
    here = labels.index(rules_label) if rules_label in labels else len(labels) - 1
    out: dict[str, Band] = {}
    figures = sorted({f for rows in table.values() for f in rows} | set(FALLBACK.get(engine, {})))
    for figure in figures:
        having = [label for label in labels if figure in table.get(label, {})]
        if not having:
            if figure in FALLBACK.get(engine, {}):
                out[figure] = Band(figure, FALLBACK[engine][figure], "goal")
            continue
        nearest = min(having, key=lambda label: (abs(labels.index(label) - here), -labels.index(label)))
        row = table[nearest][figure]
        out[figure] = Band(figure, row["band"], nearest, row["rows"], row["worst"], row["worst_error"],
                           row.get("under", 0.0))
    return tuple(out.items())


def error_bands(engine: str, rules_label: str | None = None) -> dict[str, float]:
    """Per figure, the band to print for ``engine`` at the rule set ``rules_label``."""
    return {figure: b.band for figure, b in band_details(engine, rules_label).items()}


def under_band(engine: str, rules_label: str | None, figure: str) -> float:
    """The largest held-out under-estimate of ``figure`` at the rule set (nearest with rows, as ``band_details``);
    0 without rows: how much more than predicted the figure may take (a term that can run out of memory)."""
    band = band_details(engine, rules_label).get(figure)
    return band.under if band else 0.0
