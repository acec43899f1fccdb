"""Engine profiles: what vLLM, SGLang and HF transformers report on real GPUs, in their own terms.

Each engine module turns the planner's exact per-rank weights and KV geometry into the figures the engine logs
(model loading, activation peak, KV cache memory and tokens, concurrency) and says whether it would start.
Sources are the engines' own code (cited per formula) and published logs (``../shared/calibration``); the refusal
rules are in ``refusals``.

May import: shardsim.core, shardsim.presets, shardsim.hardware, shardsim.files, shardsim.constants,
shardsim.units, shardsim.errors.
"""

from shardsim.engines.common import EngineRankReport, EngineReport

ENGINES = ("vllm", "sglang", "hf", "accelerate")

__all__ = ["ENGINES", "EngineRankReport", "EngineReport"]
