"""Options grouped by concern, and the one typed request each command builds from them (``shardsim.core.requests``).

A command gathers its options into these records in its first lines and calls ``serve_request`` or
``train_request``; every refusal of an option happens here or in the record the option feeds (``core.layout``,
``core.workload``, ``core.train.setup``, the engine's knobs model), in the same order for every command.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from shardsim.cli import common
from shardsim.errors import ShardsimError


def with_rope_scaling(spec, text: Optional[str]):
    """``--rope-scaling yarn:FACTOR[:ORIGINAL]``: the window the engines allow with YaRN, ORIGINAL × FACTOR (vLLM
    config/model.py ``_get_and_verify_max_len``: the rope_scaling's original_max_position_embeddings × factor;
    Qwen3's model cards: factor 4 over 32,768 → 131,072). ORIGINAL defaults to max_position_embeddings."""
    if text is None:
        return spec
    parts = str(text).split(":")
    try:
        if parts[0] != "yarn" or len(parts) not in (2, 3):
            raise ValueError
        factor = float(parts[1])
        original = int(parts[2]) if len(parts) == 3 else spec.max_position_embeddings
        if not (1 < factor <= 64 and 1 <= original <= 1 << 24):
            raise ValueError
    except ValueError:
        raise ShardsimError(f"--rope-scaling {str(text)[:40]!r} is not understood; accepted: yarn:FACTOR[:ORIGINAL] "
                            "(factor 1–64, e.g. yarn:4:32768 for Qwen3's 131,072 tokens)") from None
    return spec.model_copy(update={"max_position_embeddings": int(original * factor)})


def check_context(spec, context: int) -> None:
    """A context beyond the model's window is refused, as the engines refuse a --max-model-len beyond it."""
    if context > spec.max_position_embeddings:
        raise ShardsimError(f"--context {context:,} is beyond {spec.name}'s window of {spec.max_position_embeddings:,} "
                            "tokens (max_position_embeddings); with YaRN, add --rope-scaling yarn:4 (as the engines do)")


@dataclass(frozen=True)
class ModelOptions:
    model: Optional[str] = None
    config: Optional[str] = None
    speculative_tokens: int = 0  # serving: MTP draft tokens per step (0: no MTP head)
    language_model_only: bool = False  # serving: no vision tower
    rope_scaling: Optional[str] = None  # yarn:FACTOR[:ORIGINAL]: a window beyond max_position_embeddings

    def spec(self):
        """The ModelSpec as served (``ModelSpec.served``); a checkpoint folder given as MODEL has its safetensors
        headers read (and refused) here."""
        from shardsim.presets import resolve_model

        if not 0 <= self.speculative_tokens <= 64:
            raise ShardsimError(f"--speculative-tokens {self.speculative_tokens} is out of range; accepted: 0 … 64")
        spec = resolve_model(self.model, self.config)
        self.checkpoint()
        return with_rope_scaling(spec.served(self.speculative_tokens, self.language_model_only), self.rope_scaling)

    def checkpoint(self):
        """The ``CheckpointFacts`` of a checkpoint folder given as MODEL (its safetensors headers), else None."""
        from shardsim.presets.checkpoints import checkpoint_folder, read_checkpoint

        folder = None if self.config else checkpoint_folder(self.model)
        return read_checkpoint(folder) if folder is not None else None


@dataclass(frozen=True)
class LayoutOptions:
    tp: int = 1
    pp: int = 1
    dp: int = 1
    ep: int = 1
    zero: int = 0
    pp_split: Optional[str] = None
    cp: int = 1
    etp: Optional[int] = None

    def layout(self, spec):
        """The validated ``core.layout.Layout`` (every degree refused in ``validate_layout``)."""
        from shardsim.core.layout import Layout, validate_layout

        return validate_layout(spec, Layout(tp=self.tp, pp=self.pp, dp=self.dp, ep=self.ep, zero=self.zero,
                                            pp_split=common.parse_split(self.pp_split), cp=self.cp,
                                            etp=self.etp or 0))


@dataclass(frozen=True)
class WorkloadOptions:
    context: Optional[int] = None
    batch: int = 1
    max_num_batched_tokens: Optional[int] = None
    chunked_prefill_size: Optional[int] = None
    dtype: str = "bf16"
    quant: Optional[list[str]] = None
    group_size: Optional[int] = None
    kv_dtype: Optional[list[str]] = None
    block_size: Optional[int] = None

    def workload(self):
        return common.workload(common.resolve_context(self.context), self.batch,
                               common.step_budget(self.max_num_batched_tokens, self.chunked_prefill_size),
                               self.dtype, common.single(self.quant, "--quant"), self.group_size,
                               common.single(self.kv_dtype, "--kv-dtype"), self.block_size)


@dataclass(frozen=True)
class HardwareOptions:
    cluster: Optional[list[str]] = None
    gpu: Optional[str] = None
    gpu_memory: Optional[str] = None
    interconnect: Optional[str] = None

    def hardware(self, world_size: int, layout: Any = None):
        return common.hardware(self.cluster, self.gpu, self.gpu_memory, world_size, layout, self.interconnect)


@dataclass(frozen=True)
class EngineOptions:
    """``--engine`` and every engine knob given, by the knob's field name (None: not given)."""

    engine: Optional[str] = None
    knobs: dict = field(default_factory=dict)

    def choice(self, command: str = "plan"):
        """The ``requests.EngineChoice``, or None for the planner alone; a knob that does nothing is refused."""
        from shardsim.engines.registry import engine_names

        name = common.check_engine(self.engine, engine_names(), command)
        given = common.engine_knobs(name, self.knobs)
        if name is None:
            return None
        from shardsim.engines.registry import choose

        return choose(name, given)


KV_CACHE_DTYPE_AS_KV_DTYPE = {"auto": None, "bf16": "bf16", "fp16": "fp16", "fp8": "fp8", "fp8_e4m3": "fp8",
                              "fp8_e5m2": "fp8"}
"""The engines' ``--kv-cache-dtype`` values as the planner's ``--kv-dtype`` (auto: the model's dtype)."""


def one_kv_dtype(workload: WorkloadOptions, engine: EngineOptions) -> tuple[WorkloadOptions, EngineOptions]:
    """One KV dtype per plan: ``--kv-cache-dtype`` (the engines' spelling) and ``--kv-dtype`` set the planner's table
    and the engine's figures alike; given both, they must agree."""
    from dataclasses import replace

    from shardsim.engines.registry import engine_names, get_engine

    planner = common.single(workload.kv_dtype, "--kv-dtype") if workload.kv_dtype else None
    engine_kv = engine.knobs.get("kv_cache_dtype")
    if engine_kv is not None and engine_kv not in KV_CACHE_DTYPE_AS_KV_DTYPE:
        raise ShardsimError(f"--kv-cache-dtype {engine_kv!r:.40} is not known; accepted: "
                            + ", ".join(KV_CACHE_DTYPE_AS_KV_DTYPE))
    as_planner = KV_CACHE_DTYPE_AS_KV_DTYPE.get(engine_kv) if engine_kv is not None else None
    if planner and engine_kv is not None and as_planner != planner:
        raise ShardsimError(f"--kv-dtype {planner} and --kv-cache-dtype {engine_kv} differ; one KV dtype per plan: give "
                            "one (--kv-cache-dtype is the engines' spelling of --kv-dtype)")
    knobs = dict(engine.knobs)
    if engine.engine not in engine_names() or "kv_cache_dtype" not in get_engine(engine.engine).knob_names():
        knobs.pop("kv_cache_dtype", None)
    elif planner and engine_kv is None:
        knobs["kv_cache_dtype"] = planner
    if as_planner and not planner:
        workload = replace(workload, kv_dtype=[as_planner])
    return workload, replace(engine, knobs=knobs)


def serve_request(model: ModelOptions, layout: LayoutOptions, workload: WorkloadOptions, hardware: HardwareOptions,
                  engine: EngineOptions):
    """The ``ServeRequest`` of a serving command: engine and knobs, model, layout, workload, then hardware (with the
    warnings of TP groups that cross nodes and vLLM's refusal of the layout), each refused in that order."""
    from shardsim.engines.refusals import fp8_block_refusal
    from shardsim.core.requests import ServeRequest

    workload, engine = one_kv_dtype(workload, engine)
    choice = engine.choice()
    spec = model.spec()
    lay = layout.layout(spec)
    wl = workload.workload()
    check_context(spec, wl.context)
    hw = hardware.hardware(lay.world_size, lay)
    quant = wl.quant if wl.quant is not None else spec.quant
    refusal = fp8_block_refusal(spec, lay, quant)
    if refusal:
        hw = common.with_warnings(hw, [f"vLLM refuses this layout: {refusal}"])
    return ServeRequest(spec, lay, wl, hw, choice)


def engine_knob_options(**given: Any) -> dict:
    """The engine knobs of a command's options by field name: ``--max-model-len auto`` becomes
    ``max_model_len_auto``, sizes are parsed, and flags left off are None (not given)."""
    from shardsim.units import parse_size

    auto_len = given.get("max_model_len") == -1
    out = {"engine_version": given.get("engine_version"), "max_model_len_auto": auto_len or None, **given}
    out["max_model_len"] = None if auto_len else given.get("max_model_len")
    if out.get("kv_cache_memory_bytes") is not None:
        out["kv_cache_memory_bytes"] = parse_size(out["kv_cache_memory_bytes"])
    for flag in ("enforce_eager", "allow_offload", "disable_radix_cache"):
        out[flag] = out.get(flag) or None
    return out
