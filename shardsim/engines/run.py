"""One entry point for the engine profiles: the right model of the right engine for a plan's inputs."""

from __future__ import annotations

from shardsim.core.layout import Layout
from shardsim.core.memory.runtime import DEFAULT_FABRIC, Fabric
from shardsim.core.model import ModelSpec, QuantConfig
from shardsim.engines.common import EngineReport
from shardsim.errors import ShardsimError


def engine_report(engine: str, spec: ModelSpec, layout: Layout, capacity_bytes: int, gpu_name: str,
                  compute_capability: str | None, nvidia_smi_bytes: int | None, dtype: str, quant: QuantConfig,
                  knobs: dict, fabric: Fabric = DEFAULT_FABRIC, suggest_fix: bool = True) -> EngineReport:
    """The engine's report; when it will not start, ``suggestion`` holds one line of flags that would
    (``engines.suggest``)."""
    report = _engine_report(engine, spec, layout, capacity_bytes, gpu_name, compute_capability, nvidia_smi_bytes,
                            dtype, quant, knobs, fabric)
    if suggest_fix and not report.starts:
        from shardsim.engines.suggest import suggest

        def run(other: Layout, other_knobs: dict) -> EngineReport:
            return _engine_report(engine, spec, other, capacity_bytes, gpu_name, compute_capability,
                                  nvidia_smi_bytes, dtype, quant, other_knobs, fabric)

        report.suggestion = suggest(engine, run, spec, layout, {k: v for k, v in knobs.items() if v is not None},
                                    report)
    return report


def _engine_report(engine: str, spec: ModelSpec, layout: Layout, capacity_bytes: int, gpu_name: str,
                   compute_capability: str | None, nvidia_smi_bytes: int | None, dtype: str, quant: QuantConfig,
                   knobs: dict, fabric: Fabric = DEFAULT_FABRIC) -> EngineReport:
    """``knobs``: the engine's options by their field names (None values mean the engine's default); ``fabric``:
    how the GPUs are wired (non-torch memory depends on it)."""
    knobs = {k: v for k, v in knobs.items() if v is not None}
    if engine == "vllm":
        from shardsim.engines.vllm import VllmKnobs, predict_vllm

        return predict_vllm(spec, layout, capacity_bytes, gpu_name, compute_capability, dtype, quant, VllmKnobs(**knobs),
                            fabric)
    if engine == "sglang":
        from shardsim.engines.sglang import SglangKnobs, predict_sglang

        if layout.pp > 1 or layout.dp > 1:
            raise ShardsimError("the SGLang profile covers TP (and EP) layouts; use --pp 1 --dp 1")
        return predict_sglang(spec, layout, capacity_bytes, nvidia_smi_bytes, dtype, quant, SglangKnobs(**knobs))
    if engine == "hf":
        from shardsim.engines.hf import HfKnobs, predict_hf

        return predict_hf(spec, layout, compute_capability, dtype, quant, HfKnobs(**knobs), capacity_bytes)
    if engine == "accelerate":
        return _accelerate(spec, layout, capacity_bytes, dtype, quant, knobs)
    raise ShardsimError(f"--engine {engine!r} is not known; accepted: vllm, sglang, hf, accelerate")


def _accelerate(spec: ModelSpec, layout: Layout, capacity_bytes: int, dtype: str, quant: QuantConfig,
                knobs: dict) -> EngineReport:
    """``from_pretrained(device_map=…)`` over the layout's pp GPUs (accelerate places whole layers in order: a
    naive pipeline), with ``--max-memory`` as one size for every GPU or one per GPU, and ``cpu=SIZE``."""
    from shardsim.engines.accelerate import MODES, predict_accelerate
    from shardsim.units import parse_size

    if layout.tp > 1 or layout.dp > 1 or layout.ep > 1:
        raise ShardsimError("--engine accelerate places whole layers on --pp N GPUs; use --tp 1 --dp 1 --ep 1")
    mode = knobs.get("device_map", "auto")
    if mode not in MODES:
        raise ShardsimError(f"--device-map {mode!r:.40} is not known; accepted: {', '.join(MODES)}")
    max_memory = None
    if "max_memory" in knobs:
        max_memory, gpu_sizes = {}, []
        for item in str(knobs["max_memory"]).split(","):
            key, _, size = item.strip().rpartition("=")
            if key in ("cpu", "disk"):
                max_memory[key] = parse_size(size)
            elif key == "":
                gpu_sizes.append(parse_size(size))
            else:
                raise ShardsimError(f"--max-memory item {item.strip()!r:.40} is not understood; accepted: SIZE per GPU "
                                    "(one for all, or one per GPU) and cpu=SIZE, e.g. 70GiB,cpu=200GiB")
        if len(gpu_sizes) not in (1, layout.pp):
            raise ShardsimError(f"--max-memory gives {len(gpu_sizes)} GPU sizes for {layout.pp} GPUs; give one or {layout.pp}")
        for gpu in range(layout.pp):
            max_memory[gpu] = gpu_sizes[0] if len(gpu_sizes) == 1 else gpu_sizes[gpu]
        max_memory = {k: max_memory[k] for k in sorted(max_memory, key=lambda k: (isinstance(k, str), k))}
    return predict_accelerate(spec, layout.pp, capacity_bytes, dtype, quant, max_memory, mode,
                              allow_offload=bool(knobs.get("allow_offload", False)))
