"""Every value the speed model fitted to measurements, in one table, each naming the rows it was fitted to and how.

The rows are in ``shardsim/speed/data/serving_benchmarks.jsonl`` (``"split": "fitted"``); no held-out row was
used, so the held-out errors ``shardsim calibrate --speed`` reports (and the bands ``speed`` prints,
``speed.bands``) are out of sample. ``benchmarks/fit_speed.py`` prints these values from the database (a
deterministic search, below); they are written here by hand and never recomputed at import.

How: for each engine, the seven values (eight with the fp8 speedup) minimise the sum over its fitted rows of the
squared log errors of TPOT, TTFT and output tokens/s (each row's figures present), on fixed grids (compute and
memory efficiency 0.05 … 1.00 in steps of 0.01, step overhead 0 … 30 ms in steps of 0.1 ms, request overhead 0 … 300
ms in steps of 1 ms, overhead per sampled sequence and step 0 … 300 µs, per layer and step 0 … 200 µs and more per
MoE layer 0 … 300 µs, all in steps of 1 µs; and, for an engine whose fitted rows include an fp8 checkpoint on a GPU
with fp8 tensor cores, the speedup of its fp8 matmuls over bf16's achieved rate, 1.00 … 2.00 in steps of 0.01): a
profile holding memory efficiency at each of ``fit.PROFILE_MEMORY`` while a coordinate search settles the others,
then a coordinate search of all of them from the profile's best point, and another from the values this table held
before; the lower loss is kept: deterministic.

The fp8 speedup is fitted rather than taken from the datasheets' 2× (``roofline.FP8_DENSE_OVER_BF16``) because the
engines' block-scaled fp8 paths do not reach it: published comparisons find Qwen3 fp8 checkpoints serving at about
bf16's speed (vLLM issues #25915, Qwen3-8B vs -FP8 on H100 at 0.10.2, 1.04× the input tokens/s; #17788, Qwen3-32B vs
-FP8 on H100, "almost the same"; llm-compressor #2069, Qwen3-235B FP8 on H200 at TP 8, "barely any" gain). Its grid
stops at 1.00 (fp8 no slower than bf16 in compute-bound steps; vLLM #25540 reports a 235B FP8 checkpoint slower than
bf16 end to end, which the bound does not follow) and 2.00 (the datasheets' ratio). An engine with fewer than
``MIN_ROWS`` fitted rows takes the values fitted to all engines' fitted rows together (named ``"*"``).
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_ROWS = 3
"""Fitted rows an engine needs for its own values; fewer: the all-engine fit."""


@dataclass(frozen=True, slots=True)
class SpeedFit:
    """The fitted values of one engine ("*": all engines' fitted rows together)."""

    engine: str
    compute_efficiency: float
    memory_efficiency: float
    step_overhead_ms: float
    ttft_overhead_ms: float
    seq_overhead_us: float
    layer_overhead_us: float
    moe_layer_overhead_us: float
    rows: tuple[str, ...]
    how: str
    fp8_speedup: float | None = None  # fp8 matmuls' FLOP/s over bf16's (None: no fitted fp8 row; the peaks' 2×)

    def efficiency(self):
        """These values as the step-time model takes them (``roofline.Efficiency``, seconds)."""
        from shardsim.speed.roofline import Efficiency

        return Efficiency(self.compute_efficiency, self.memory_efficiency, self.step_overhead_ms / 1e3,
                          self.ttft_overhead_ms / 1e3, self.seq_overhead_us / 1e6, self.layer_overhead_us / 1e6,
                          self.moe_layer_overhead_us / 1e6, self.fp8_speedup)


PRIOR = SpeedFit("prior", 0.55, 0.75, 2.0, 20.0, 0.0, 0.0, 0.0, (),
                 "the search's starting point, not fitted: 55 % of dense peak and 75 % of HBM bandwidth are where "
                 "the FlashAttention-2 paper puts fused GEMM + attention forward on A100 (Dao 2023, arXiv:2307.08691, "
                 "§4.1: 50–73 % of peak) and where STREAM-like kernels sit on HBM; 2 ms and 20 ms per step and "
                 "request are placeholders; no per-sequence or per-layer overhead")

FITTED: tuple[SpeedFit, ...] = (
    SpeedFit('*', 0.54, 0.74, 0.3, 12, 130, 80, 18, ('gpustack-q3-14b-h100-a', 'gpustack-q3-14b-h100-b', 'gpustack-q3-14b-h100-d', 'gpustack-q3-14b-h100-e', 'gpustack-q3-14b-h100-f', 'gpustack-q3-14b-h100-g', 'gpustack-q3-14b-h100-h', 'gpustack-q3-32b-a100-a', 'gpustack-q3-32b-a100-b', 'gpustack-q3-32b-a100-d', 'gpustack-q3-32b-a100-e', 'gpustack-q3-32b-a100-f', 'gpustack-q3-32b-a100-g', 'gpustack-q3-235b-h100-a', 'gpustack-q3-235b-h100-b', 'gpustack-q3-235b-h100-c', 'gpustack-q3-235b-h100-d', 'gpustack-q3-235b-h100-e', 'gpustack-q3-235b-h100-f', 'gpustack-q3-235b-h100-g', 'sglcookbook-q3-235b-b200-a', 'sglcookbook-q3-235b-b200-b', 'sglcookbook-q3-235b-b200-c', 'sglcookbook-q3-235b-b200-d', 'sglcookbook-q3-235b-b200-e', 'sglcookbook-q3-235b-b200-f', 'sglcookbook-q3-235b-b200-g', 'sglcookbook-q3-235b-b200-h', 'sglcookbook-q3-235b-b200-i', 'pegainfer-vllm0240-q3-8b-rtx5090-qps1', 'pegainfer-vllm0240-q3-8b-rtx5090-qps2', 'pegainfer-vllm0240-q3-8b-rtx5090-qps4', 'pegainfer-vllm0240-q3-8b-rtx5090-qps8', 'sglang-pr-10467-tp4', 'sglang-pr-10467-tp8', 'vllm-pr-17530-5000-1000', 'vllm-pr-17530-1000-2000', 'vllm-pr-17530-10000-500', 'gpustack-q35-9b-h100-a', 'gpustack-q35-9b-h100-b', 'gpustack-q35-9b-h100-c', 'gpustack-q35-9b-h100-d', 'gpustack-q35-9b-h100-e', 'gpustack-q35-35b-h200-lat-a', 'gpustack-q35-35b-h200-lat-b', 'gpustack-q35-35b-h200-lat-c', 'gpustack-q35-35b-h200-lat-d', 'tt-issue-340-q3-0.6b-128-128', 'tt-issue-340-q3-0.6b-128-1024', 'tt-issue-340-q3-1.7b-128-128', 'tt-issue-340-q3-1.7b-128-1024', 'tt-issue-340-q3-1.7b-1024-128', 'tt-issue-340-q3-1.7b-2048-128', 'tt-issue-340-q3-30b-128-128', 'tt-issue-340-q3-30b-128-1024', 'tt-issue-340-q3-30b-1024-128', 'tt-issue-340-q3-30b-2048-128', 'tt-issue-340-q3-30b-8192-128', 'gpustack-lmcache-q3-8b-rtx4090-rand1k', 'gpustack-lmcache-q3-8b-rtx4090-rand8k', 'gpustack-lmcache-q3-8b-rtx4090-rand20k', 'vllmpr43232-q3-235b-2507fp8-b200-tp4-c64', 'arle0422-q3-4b-l4-sglang-c1', 'arle0422-q3-4b-l4-sglang-c2', 'arle0422-q3-4b-l4-sglang-c4', 'arle0422-q3-4b-l4-sglang-c8', 'arle0422-q3-4b-l4-sglang-c16', 'arle0429-q3-4b-l4-sglang-c16-fp8kv', 'arle0429-q35-4b-l4-sglang-c16-fp8kv', 'arle0418-q3-4b-l4-sglang-c8'),
             'profile over memory efficiency and coordinate search, and a search from the previous values (speed.fit): least sum of squared log errors 36.4926 over 70 rows', 1.00),
    SpeedFit('sglang', 0.35, 0.92, 3.9, 75, 67, 19, 22, ('gpustack-q3-14b-h100-b', 'gpustack-q3-14b-h100-d', 'gpustack-q3-14b-h100-h', 'gpustack-q3-32b-a100-b', 'gpustack-q3-235b-h100-b', 'sglcookbook-q3-235b-b200-a', 'sglcookbook-q3-235b-b200-b', 'sglcookbook-q3-235b-b200-c', 'sglcookbook-q3-235b-b200-d', 'sglcookbook-q3-235b-b200-e', 'sglcookbook-q3-235b-b200-f', 'sglcookbook-q3-235b-b200-g', 'sglcookbook-q3-235b-b200-h', 'sglcookbook-q3-235b-b200-i', 'sglang-pr-10467-tp4', 'sglang-pr-10467-tp8', 'gpustack-q35-9b-h100-b', 'arle0422-q3-4b-l4-sglang-c1', 'arle0422-q3-4b-l4-sglang-c2', 'arle0422-q3-4b-l4-sglang-c4', 'arle0422-q3-4b-l4-sglang-c8', 'arle0422-q3-4b-l4-sglang-c16', 'arle0429-q3-4b-l4-sglang-c16-fp8kv', 'arle0429-q35-4b-l4-sglang-c16-fp8kv', 'arle0418-q3-4b-l4-sglang-c8'),
             'profile over memory efficiency and coordinate search, and a search from the previous values (speed.fit): least sum of squared log errors 2.1911 over 25 rows', 1.47),
    SpeedFit('vllm', 0.54, 0.99, 1.6, 8, 159, 52, 63, ('gpustack-q3-14b-h100-a', 'gpustack-q3-14b-h100-e', 'gpustack-q3-14b-h100-f', 'gpustack-q3-14b-h100-g', 'gpustack-q3-32b-a100-a', 'gpustack-q3-32b-a100-d', 'gpustack-q3-32b-a100-e', 'gpustack-q3-32b-a100-f', 'gpustack-q3-32b-a100-g', 'gpustack-q3-235b-h100-a', 'gpustack-q3-235b-h100-c', 'gpustack-q3-235b-h100-d', 'gpustack-q3-235b-h100-e', 'gpustack-q3-235b-h100-f', 'gpustack-q3-235b-h100-g', 'pegainfer-vllm0240-q3-8b-rtx5090-qps1', 'pegainfer-vllm0240-q3-8b-rtx5090-qps2', 'pegainfer-vllm0240-q3-8b-rtx5090-qps4', 'pegainfer-vllm0240-q3-8b-rtx5090-qps8', 'vllm-pr-17530-5000-1000', 'vllm-pr-17530-1000-2000', 'vllm-pr-17530-10000-500', 'gpustack-q35-9b-h100-a', 'gpustack-q35-9b-h100-c', 'gpustack-q35-9b-h100-d', 'gpustack-q35-9b-h100-e', 'gpustack-q35-35b-h200-lat-a', 'gpustack-q35-35b-h200-lat-b', 'gpustack-q35-35b-h200-lat-c', 'gpustack-q35-35b-h200-lat-d', 'tt-issue-340-q3-0.6b-128-128', 'tt-issue-340-q3-0.6b-128-1024', 'tt-issue-340-q3-1.7b-128-128', 'tt-issue-340-q3-1.7b-128-1024', 'tt-issue-340-q3-1.7b-1024-128', 'tt-issue-340-q3-1.7b-2048-128', 'tt-issue-340-q3-30b-128-128', 'tt-issue-340-q3-30b-128-1024', 'tt-issue-340-q3-30b-1024-128', 'tt-issue-340-q3-30b-2048-128', 'tt-issue-340-q3-30b-8192-128', 'gpustack-lmcache-q3-8b-rtx4090-rand1k', 'gpustack-lmcache-q3-8b-rtx4090-rand8k', 'gpustack-lmcache-q3-8b-rtx4090-rand20k', 'vllmpr43232-q3-235b-2507fp8-b200-tp4-c64'),
             'profile over memory efficiency and coordinate search, and a search from the previous values (speed.fit): least sum of squared log errors 26.2337 over 45 rows', 1.00),
)
"""Written from ``benchmarks/fit_speed.py``; ``tests/unit/test_speed_fit.py`` refits and compares."""

_BY_ENGINE = {f.engine: f for f in FITTED}


def speed_fit(engine: str | None) -> SpeedFit:
    """The fitted values for ``engine`` (None: the planner alone, which schedules like vLLM V1), else all engines'."""
    return _BY_ENGINE.get(engine or "vllm") or _BY_ENGINE["*"]
