"""The engines, by name: one registry line each, pointing at the module that defines its ``ENGINE`` record.

An ``Engine`` is its knobs model (the engine's own options, by field name) and ``predict(ServeRequest) →
EngineReport``; ``serve_command`` spells a fix as the engine's command line (``engines.suggest``), where the engine
has one. Adding an engine is one module defining ``ENGINE`` and one line in ``ENGINE_MODULES``. Modules are imported
on first use, so a plan without ``--engine`` loads none of them.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

from shardsim.errors import ShardsimError

ENGINE_MODULES: dict[str, str] = {
    "vllm": "shardsim.engines.vllm",
    "sglang": "shardsim.engines.sglang",
    "hf": "shardsim.engines.hf",
    "accelerate": "shardsim.engines.accelerate_knobs",
}


@dataclass(frozen=True)
class SuggestKnobs:
    """How the fixes of ``engines.suggest`` are spelled for one engine: the knob holding the longest context, the
    memory fraction, the fp8 KV dtype's value, and the command line of a serve."""

    length: str
    fraction: str
    fp8_kv: str
    serve_command: Callable[[Any, Any, dict], str]  # (spec, layout, knobs) → the command line
    eager: str | None = None  # the knob that captures no CUDA graphs, where graphs can fail after the KV cache


@dataclass(frozen=True)
class Engine:
    name: str
    knobs: type  # a pydantic model: the engine's options by field name
    predict: Callable[[Any], Any]  # ServeRequest → EngineReport
    suggest: SuggestKnobs | None = None  # None: no one-line fix is offered

    def knob_names(self) -> tuple[str, ...]:
        return tuple(self.knobs.model_fields)


def engine_names() -> tuple[str, ...]:
    return tuple(ENGINE_MODULES)


def get_engine(name: str) -> Engine:
    """The registry entry of ``name``, its module imported on first use."""
    module = ENGINE_MODULES.get(name)
    if module is None:
        raise ShardsimError(f"--engine {name!r} is not known; accepted: {', '.join(ENGINE_MODULES)}")
    return importlib.import_module(module).ENGINE


def choose(name: str, given: dict) -> Any:
    """A ``requests.EngineChoice`` of ``name`` with the knobs ``given`` (None values: the engine's default)."""
    from shardsim.core.requests import EngineChoice

    engine = get_engine(name)
    return EngineChoice(name, engine.knobs(**{k: v for k, v in given.items() if v is not None}))
