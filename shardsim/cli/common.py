"""What the commands share: the console, a progress bar, and turning shared options into the planner's inputs.

Each rule about an option lives here once: one value where a command takes one (``single``), the default context
(``resolve_context``), the hardware a command plans for (``hardware``), the workload (``workload``), and which engine
knobs an engine takes (``engine_knobs``).
"""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING, Any, Optional

from shardsim.errors import ShardsimError

if TYPE_CHECKING:  # the request records load the core: imported by the commands that need them
    from shardsim.core.requests import Hardware

DEFAULT_CONTEXT = 8192
VALIDATE_CONTEXT = 128


def console():
    """A rich console: the terminal's width on a terminal (tables fold their cells to fit 80 columns,
    ``render.tables.new_table``), else 160 columns so piped tables stay one line per row for scripts; NO_COLOR and
    pipes get no colour (rich's own rules)."""
    from rich.console import Console

    return Console(highlight=False, width=None if sys.stdout.isatty() else 160)


def print_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, default=str) + "\n")


class Progress:
    """A progress bar on stderr that appears only once the work has taken more than ``after`` seconds (and only on
    a terminal, so piped output and JSON stay clean)."""

    def __init__(self, label: str, after: float = 1.0):
        self.label, self.after, self.t0 = label, after, time.perf_counter()
        self.enabled = sys.stderr.isatty()
        self.bar, self.task = None, None

    def __call__(self, done: int, total: int) -> None:
        if not self.enabled:
            return
        if self.bar is None:
            if time.perf_counter() - self.t0 < self.after:
                return
            from rich.console import Console
            from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
            from rich.progress import Progress as RichProgress

            self.bar = RichProgress(TextColumn(self.label), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                                    TimeElapsedColumn(), console=Console(stderr=True), transient=True)
            self.bar.start()
            self.task = self.bar.add_task(self.label, total=total)
        self.bar.update(self.task, completed=done, total=total)

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


def single(values: Optional[list[str]], flag: str) -> Optional[str]:
    """The one value of a repeatable option in a command that takes one (None when not given)."""
    if not values:
        return None
    if len(values) > 1:
        raise ShardsimError(f"{flag} given {len(values)} times ({', '.join(values)}); this command takes one "
                            f"(review compares several)")
    return values[0]


def step_budget(max_num_batched_tokens: Optional[int], chunked_prefill_size: Optional[int]) -> Optional[int]:
    """The planner's step budget from either engine's flag (one of them at most); None: the default."""
    if max_num_batched_tokens is not None and chunked_prefill_size is not None:
        raise ShardsimError("give either --max-num-batched-tokens (vLLM) or --chunked-prefill-size (SGLang), not both")
    return max_num_batched_tokens if max_num_batched_tokens is not None else chunked_prefill_size


def resolve_context(context: Optional[int], default: int = DEFAULT_CONTEXT) -> int:
    return default if context is None else context


def parse_split(text: Optional[str]) -> Optional[tuple[int, ...]]:
    if text is None:
        return None
    try:
        return tuple(int(x) for x in text.split(","))
    except ValueError:
        raise ShardsimError(f"--pp-split {text!r} must be comma-separated whole numbers, e.g. 48,46") from None


def hardware(cluster: Optional[list[str]], gpu: Optional[str], gpu_memory: Optional[str], world_size: int,
             layout: Any = None, interconnect: Optional[str] = None) -> Hardware:
    """A named or file cluster, else ``world_size`` GPUs of a type (default H100-SXM-80GB) or of a capacity, 8 per
    node; with the warnings of ``layout``'s TP groups that cross nodes."""
    from shardsim.hardware import catalog, topology
    from shardsim.core.requests import Hardware
    from shardsim.units import parse_size

    name = single(cluster, "--cluster")
    if name and (gpu or gpu_memory):
        raise ShardsimError("give either --cluster or --gpu/--gpu-memory, not both")
    if gpu and gpu_memory:
        raise ShardsimError("give either --gpu NAME or --gpu-memory SIZE, not both")
    if name:
        spec = catalog.load_cluster(name)
        topology.check_fits_cluster(spec, world_size)
    else:
        card = topology.custom_gpu(parse_size(gpu_memory)) if gpu_memory else catalog.resolve_gpu(gpu or "h100")
        spec = topology.cluster_for_gpu(card, world_size)
    warnings = tuple(topology.tp_group_crossings(spec, layout)) if layout is not None else ()
    fabric = topology.fabric_of(spec, interconnect)  # an unknown --interconnect is refused here, before any work
    card = spec.gpu
    return Hardware(card.name, card.capacity_bytes, card.compute_capability, card.nvidia_smi_total_bytes, fabric,
                    spec, warnings)


def with_warnings(hw: Hardware, more: list[str]) -> Hardware:
    from dataclasses import replace

    return replace(hw, warnings=tuple(hw.warnings) + tuple(more))


def workload(context: int, batch: int, step_tokens: Optional[int], dtype: str, quant: Optional[str],
             group_size: Optional[int], kv_dtype: Optional[str], block_size: Optional[int]):
    """The planner's Workload from the shared options, checked; ``step_tokens`` None: the default step budget."""
    from shardsim.constants import KV_BLOCK_TOKENS, STEP_TOKENS
    from shardsim.core.plan import Workload
    from shardsim.core.quant import QUANT_CHOICES, quant_from_choice
    from shardsim.units import canonical_dtype

    if quant is not None and quant not in QUANT_CHOICES:
        raise ShardsimError(f"--quant {quant!r} is not known; accepted: {', '.join(QUANT_CHOICES)}")
    from shardsim.core.config import GROUP_SIZES

    if group_size is not None and quant not in ("int8", "int4", "awq"):
        raise ShardsimError("--group-size does nothing without --quant int8, int4 or awq (group-quantized formats)")
    group_size = 128 if group_size is None else group_size
    if group_size not in GROUP_SIZES:
        raise ShardsimError(f"--group-size {group_size} is not valid; accepted: {', '.join(map(str, GROUP_SIZES))}")
    return Workload(
        context=context, batch=batch, step_tokens=step_tokens if step_tokens is not None else STEP_TOKENS,
        dtype=canonical_dtype(dtype), quant=quant_from_choice(quant, group_size) if quant is not None else None,
        kv_dtype=canonical_dtype(kv_dtype or "bf16", ("bf16", "fp16", "fp32", "fp8")),
        block_size=KV_BLOCK_TOKENS if block_size is None else block_size,
    ).checked()


SHARED_WITH_PLANNER = ("block_size", "batch")
STEP_BUDGET = ("max_num_batched_tokens", "chunked_prefill_size")
"""The step-budget knobs: the planner's own without ``--engine``, else only the named engine's."""


def engine_knobs(engine: Optional[str], given: dict[str, Any]) -> dict[str, Any]:
    """The knobs for ``engine`` from the options given (None: not given). A knob given for another engine, or
    without ``--engine``, does nothing, so it is refused with the engine it belongs to. ``block_size`` and
    ``batch`` are also the planner's own options, so they are never refused."""
    from shardsim.engines.registry import engine_names

    engines = engine_names()
    for name, value in given.items():
        if value is None or name in SHARED_WITH_PLANNER or (engine is None and name in STEP_BUDGET):
            continue
        if engine is None or name not in _knob_names(engine):
            owners = [e for e in engines if name in _knob_names(e)]
            flag = {"version": "--vllm-version", "install": "--vllm-install", "entrypoint": "--vllm-entrypoint", "max_model_len_auto": "--max-model-len auto"
                    }.get(name, "--" + name.replace("_", "-"))
            now = f"with --engine {engine}" if engine else "without --engine"
            raise ShardsimError(f"{flag} does nothing {now}; it is a knob of --engine {' or '.join(owners)}")
    return {name: given[name] for name in _knob_names(engine) if name in given} if engine else {}


def _knob_names(engine: str) -> tuple[str, ...]:
    """The knobs an engine reads: the fields of its knobs model (``engines.registry``)."""
    from shardsim.engines.registry import get_engine

    return get_engine(engine).knob_names()


def check_engine(engine: Optional[str], accepted: tuple[str, ...], command: str) -> Optional[str]:
    """``--engine`` of a command: None or ``none`` mean shardsim's planner alone; other values must be engines the
    command evaluates."""
    from shardsim.engines.registry import engine_names

    engines = engine_names()
    if engine is None or engine == "none":
        return None
    if engine not in engines:
        raise ShardsimError(f"--engine {engine!r} is not known; accepted: none, {', '.join(engines)}")
    if engine not in accepted:
        raise ShardsimError(f"{command} evaluates --engine {' or '.join(('none',) + accepted)}; "
                            f"{engine} is available in 'shardsim plan'")
    return engine
