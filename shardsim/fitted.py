"""Every value shardsim fitted to measurements, in one table, each naming the database rows it was fitted to.

The rows are in ``tests/data/measurements.jsonl`` (``"set": "fitted"``); no held-out row was used, so the
held-out error ``shardsim calibrate`` reports (and the bands ``plan`` prints, ``engines/bands.py``) is out of
sample. Every other constant cites its source in ``shardsim.constants``.
"""

from __future__ import annotations

from dataclasses import dataclass

MiB = 1 << 20


@dataclass(frozen=True, slots=True)
class FittedValue:
    name: str
    value: int
    rows: tuple[str, ...]
    how: str


FITTED: tuple[FittedValue, ...] = (
    FittedValue("CUDA_CONTEXT_BYTES", 624 * MiB, ("fit-04", "fit-05", "fit-06", "fit-07"),
                "vLLM 0.11.0 on H100 logs 'Free memory on device 78.57/79.18 GiB on startup': 0.61 GiB used before "
                "any tensor (llm-d-benchmark empirical-vllm-memory-results.md)"),
    FittedValue("VLLM_NON_TORCH_BYTES", 133 * MiB, ("fit-04", "fit-05", "fit-06"),
                "non-torch memory vLLM 0.11.0 logs at TP1 on H100: 0.13 GiB"),
    FittedValue("VLLM_V0_NON_TORCH_BYTES", 61 * MiB, ("fit-03",),
                "vLLM 0.8.5 V0 memory-profiling line: non-torch 0.06 GiB (vllm#17327)"),
    FittedValue("VLLM_CUDA_GRAPH_BYTES_PER_GRAPH", 565_296, ("pub-a014",),
                "vLLM 0.26.0 captures Qwen3-32B's CUDA graphs on H100 in 1.86 GiB: less the pool's 90 MiB (the "
                "512-token forward), over its 3,366 graphs (51 sizes × 65 pieces + 51 FULL decode graphs, "
                "engines/vllm_profile.py) = 565,296 B per graph, what the driver keeps per executable graph. Held-out "
                "check: Qwen3-235B-A22B-FP8 TP8 on L40S, vLLM 0.10.2, 3.45 GiB over 6,365 graphs = 574,619 B (pub-v033); "
                "older stacks keep more (Qwen3-8B, A100, CUDA 12.2 driver: ~0.9–1.3 MiB, pub-a005/pub-a006), the "
                "0.11.0 log of Qwen3-0.6B (fit-04) far less (its capture figure is taken without emptying the cache)"),
    FittedValue("SGLANG_LOAD_OVERHEAD_BYTES", 123 * MiB, ("fit-01",),
                "SGLang 'Load weight end: mem usage=1.25 GB' for Qwen3-0.6B on an RTX 5080 less its weights and fp32 "
                "rotary cache (1.13 GiB)"),
)

_BY_NAME = {v.name: v for v in FITTED}


def fitted(name: str) -> int:
    """The fitted value called ``name``."""
    return _BY_NAME[name].value
