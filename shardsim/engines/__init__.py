"""Engine profiles: what vLLM, SGLang and HF transformers report on real GPUs, in their own terms.

Each engine module turns the planner's exact per-rank weights and KV geometry into the figures the engine logs
(model loading, activation peak, KV cache memory and tokens, concurrency) and says whether it would start.
Sources are the engines' own code (cited per formula) and published logs (``../shared/calibration``); the refusal
rules are in ``refusals``.

Engines are dispatched through one registry (``engines.registry``): adding one is a module defining ``ENGINE``
and one registry line.

May import: shardsim.core, shardsim.presets, shardsim.hardware, shardsim.files,
shardsim.constants, shardsim.units, shardsim.errors.
"""

from shardsim.engines.common import EngineRankReport, EngineReport
from shardsim.engines.registry import ENGINE_MODULES

ENGINES = tuple(ENGINE_MODULES)

__all__ = ["ENGINES", "EngineRankReport", "EngineReport"]
