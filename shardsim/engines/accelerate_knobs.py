"""The accelerate engine's registry entry: ``from_pretrained(device_map=…)`` over the layout's pp GPUs, its knobs
(``--device-map``, ``--max-memory``, ``--allow-offload``) parsed once, and ``predict`` for a ServeRequest.

accelerate places whole layers in order (a naive pipeline), so the layout's pp is the GPU count; the placement
arithmetic is ``engines.accelerate``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from shardsim.core.quant import fp8_export_spec
from shardsim.engines.accelerate import MODES, predict_accelerate
from shardsim.engines.common import EngineReport
from shardsim.engines.registry import Engine
from shardsim.errors import ShardsimError
from shardsim.units import parse_size


class AccelerateKnobs(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    device_map: str = "auto"
    max_memory: str | None = None  # one SIZE for every GPU or one per GPU, and cpu=SIZE / disk=SIZE
    allow_offload: bool = False


def parse_max_memory(text: str, gpus: int) -> dict:
    """``--max-memory`` as accelerate's ``max_memory`` dict: GPU indices first, then cpu / disk."""
    max_memory, gpu_sizes = {}, []
    for item in str(text).split(","):
        key, _, size = item.strip().rpartition("=")
        if key in ("cpu", "disk"):
            max_memory[key] = parse_size(size)
        elif key == "":
            gpu_sizes.append(parse_size(size))
        else:
            raise ShardsimError(f"--max-memory item {item.strip()!r:.40} is not understood; accepted: SIZE per GPU "
                                "(one for all, or one per GPU) and cpu=SIZE, e.g. 70GiB,cpu=200GiB")
    if len(gpu_sizes) not in (1, gpus):
        raise ShardsimError(f"--max-memory gives {len(gpu_sizes)} GPU sizes for {gpus} GPUs; give one or {gpus}")
    for gpu in range(gpus):
        max_memory[gpu] = gpu_sizes[0] if len(gpu_sizes) == 1 else gpu_sizes[gpu]
    return {k: max_memory[k] for k in sorted(max_memory, key=lambda k: (isinstance(k, str), k))}


def predict(request) -> EngineReport:
    """``predict_accelerate`` for a ``requests.ServeRequest`` (whole layers on --pp N GPUs)."""
    layout, knobs = request.layout, request.engine.knobs
    if layout.tp > 1 or layout.dp > 1 or layout.ep > 1:
        raise ShardsimError("--engine accelerate places whole layers on --pp N GPUs; use --tp 1 --dp 1 --ep 1")
    if knobs.device_map not in MODES:
        raise ShardsimError(f"--device-map {knobs.device_map!r:.40} is not known; accepted: {', '.join(MODES)}")
    max_memory = parse_max_memory(knobs.max_memory, layout.pp) if knobs.max_memory is not None else None
    spec = fp8_export_spec(request.model, request.quant, loads_lm_head=True)  # transformers loads the export's lm_head
    return predict_accelerate(spec, layout.pp, request.hardware.capacity_bytes, request.workload.dtype,
                              request.quant, max_memory, knobs.device_map, allow_offload=knobs.allow_offload)


ENGINE = Engine("accelerate", AccelerateKnobs, predict)
