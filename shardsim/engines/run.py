"""One entry point for the engine profiles: the right model of the right engine for a plan's inputs."""

from __future__ import annotations

from shardsim.core.layout import Layout
from shardsim.core.model import ModelSpec, QuantConfig
from shardsim.engines.common import EngineReport
from shardsim.errors import ShardsimError


def engine_report(engine: str, spec: ModelSpec, layout: Layout, capacity_bytes: int, gpu_name: str,
                  compute_capability: str | None, nvidia_smi_bytes: int | None, dtype: str, quant: QuantConfig,
                  knobs: dict) -> EngineReport:
    """``knobs``: the engine's options by their field names (None values mean the engine's default)."""
    knobs = {k: v for k, v in knobs.items() if v is not None}
    if engine == "vllm":
        from shardsim.engines.vllm import VllmKnobs, predict_vllm

        return predict_vllm(spec, layout, capacity_bytes, gpu_name, compute_capability, dtype, quant, VllmKnobs(**knobs))
    if engine == "sglang":
        from shardsim.engines.sglang import SglangKnobs, predict_sglang

        if layout.pp > 1 or layout.dp > 1:
            raise ShardsimError("the SGLang profile covers TP (and EP) layouts; use --pp 1 --dp 1")
        return predict_sglang(spec, layout, capacity_bytes, nvidia_smi_bytes, dtype, quant, SglangKnobs(**knobs))
    if engine == "hf":
        from shardsim.engines.hf import HfKnobs, predict_hf

        return predict_hf(spec, layout, compute_capability, dtype, quant, HfKnobs(**knobs))
    raise ShardsimError(f"--engine {engine!r} is not known; accepted: vllm, sglang, hf")
