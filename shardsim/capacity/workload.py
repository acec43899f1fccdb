"""Workloads for capacity reviews: which models are served at once, each with its context and concurrency.

Read from flags or a YAML file (``workloads/example.yaml``); a wrong field is reported with the file, the line
and the field (the node tree of the YAML gives the lines, as ``shardsim.hardware.yaml_files`` does for cluster specs).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Literal

from pydantic import (BaseModel, ConfigDict, Field, StrictFloat, StrictInt, ValidationError, field_validator,
                      model_validator)

import shardsim.workloads
from shardsim.constants import MAX_BATCH, MAX_CONTEXT_TOKENS, MAX_WORKLOAD_MODELS, MAX_YAML_BYTES
from shardsim.core.model import ModelSpec
from shardsim.errors import ShardsimError
from shardsim.files import exists, is_dir, is_file, read_yaml, show
from shardsim.hardware import ClusterSpec, list_clusters, load_cluster, resolve_gpu
from shardsim.hardware.yaml_files import line_of
from shardsim.presets import PRESET_ALIASES, get_preset, load_config_file

COST_BASES = ("purchase", "hourly")
QUANT_NAMES = ("none", "fp8", "int8", "int4")  # and any other --quant choice of shardsim.quant (QUANT_CHOICES)
KV_DTYPES = ("bf16", "fp8")
SHIPPED_WORKLOADS = Path(shardsim.workloads.__file__).resolve().parent
"""The example workloads installed with shardsim (``workloads/`` in the source tree), reachable by file stem."""
BASE_PRESETS = tuple(name for name in PRESET_ALIASES if not name.endswith("-FP8"))
"""The eight Qwen3 models (the FP8 checkpoints are the same models in another weight format: ``quant: fp8``)."""


# ---------------------------------------------------------------- workload
def _as_tuple(value: Any, accepted: tuple[str, ...], what: str) -> tuple[str, ...]:
    items = value if isinstance(value, (list, tuple)) else [value]
    out = []
    for item in items:
        text = str(item).strip().lower() if item is not None else ""
        if text not in accepted:
            raise ValueError(f"{what} {item!r} is not known; accepted: {', '.join(accepted)}")
        if text not in out:
            out.append(text)
    if not out:
        raise ValueError(f"give at least one {what}; accepted: {', '.join(accepted)}")
    return tuple(out)


class ModelLoad(BaseModel):
    """One served model: ``model`` (preset alias or a config.json path), tokens per request, simultaneous requests.
    ``quant`` / ``kv_dtype``: one value or a list of values to consider (default: the checkpoint's format, bf16 KV)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    model: str = Field(min_length=1)
    context: StrictInt = Field(default=8192, ge=1, le=MAX_CONTEXT_TOKENS)
    concurrency: StrictInt = Field(default=1, ge=1, le=MAX_BATCH)
    quant: tuple[str, ...] | None = None
    kv_dtype: tuple[str, ...] = ("bf16",)
    # speed and cost (capacity.speed_rank): tokens in and out per request (context = their sum), the load as a
    # request rate instead of concurrent users, and the latency targets (the estimates are medians)
    input_tokens: StrictInt | None = Field(default=None, ge=1, le=MAX_CONTEXT_TOKENS)
    output_tokens: StrictInt | None = Field(default=None, ge=1, le=MAX_CONTEXT_TOKENS)
    request_rate: StrictFloat | StrictInt | None = Field(default=None, gt=0, le=1_000_000)
    ttft_ms: StrictFloat | StrictInt | None = Field(default=None, gt=0, le=3_600_000)
    tpot_ms: StrictFloat | StrictInt | None = Field(default=None, gt=0, le=3_600_000)

    @model_validator(mode="before")
    @classmethod
    def _tokens(cls, data: Any) -> Any:
        """input_tokens and output_tokens come together and set the context (their sum); targets and a request
        rate need them."""
        if not isinstance(data, dict):
            return data
        from shardsim.units import parse_count

        data = {k: (parse_count(v.strip()) if isinstance(v, str) and k in ("input_tokens", "output_tokens")
                    and parse_count(v.strip()) is not None else v) for k, v in data.items()}
        given = [k for k in ("input_tokens", "output_tokens") if data.get(k) is not None]
        if len(given) == 1:
            raise ValueError("give input_tokens and output_tokens together (the context is their sum)")
        if not given:
            speed_only = [k for k in ("request_rate", "ttft_ms", "tpot_ms") if data.get(k) is not None]
            if speed_only:
                raise ValueError(f"{speed_only[0]} needs input_tokens and output_tokens (the speed of what)")
            return data
        i, o = data["input_tokens"], data["output_tokens"]
        if isinstance(i, int) and isinstance(o, int):
            context = data.get("context")
            if context is None:
                data["context"] = i + o
            elif isinstance(context, int) and context != i + o:
                raise ValueError(f"context {context:,} is not input_tokens + output_tokens = {i + o:,}; give one")
        return data

    @field_validator("context", "concurrency", mode="before")
    @classmethod
    def _count(cls, value: Any) -> Any:
        """``8k`` / ``32K`` as on the command line (``units.parse_count``); anything else to the int check."""
        from shardsim.units import parse_count

        if isinstance(value, str) and parse_count(value.strip()) is not None:
            return parse_count(value.strip())
        return value

    @field_validator("quant", mode="before")
    @classmethod
    def _quant(cls, value: Any) -> Any:
        from shardsim.core.quant import QUANT_CHOICES

        accepted = QUANT_NAMES + tuple(q for q in QUANT_CHOICES if q not in QUANT_NAMES)
        return None if value is None else _as_tuple(value, accepted, "quant")

    @field_validator("kv_dtype", mode="before")
    @classmethod
    def _kv(cls, value: Any) -> Any:
        return _as_tuple(value, KV_DTYPES, "kv_dtype")


class WorkloadSpec(BaseModel):
    """A workload file: the engine, vLLM's memory fraction, and the models to serve."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    engine: Literal["none", "vllm"] = "none"
    gpu_memory_utilization: StrictFloat = Field(default=0.9, gt=0, le=1)
    models: tuple[ModelLoad, ...]

    @field_validator("models")
    @classmethod
    def _some(cls, value: tuple[ModelLoad, ...]) -> tuple[ModelLoad, ...]:
        if not value:
            raise ValueError("give at least one model: a list of {model, context, concurrency}")
        return value


def _workload_error(path: Path, exc: ValidationError, node: Any) -> ShardsimError:
    """``file: line N: field 'name': reason`` for the first pydantic error (the model's index when nested)."""
    # A misspelt field is the likeliest mistake: report it before the "Field required" it causes.
    err = sorted(exc.errors(), key=lambda e: e["type"] != "extra_forbidden")[0]
    loc = tuple(err["loc"])
    line = line_of(node, loc) or line_of(node, loc[:2]) or line_of(node, loc[:1])
    parts = [show(path)] + [f"line {line}"] * bool(line)
    name = loc[2:] if loc[:1] == ("models",) and len(loc) > 2 else loc
    if name:
        parts.append("field " + repr(".".join(str(p) for p in name)))
    msg = str(err["msg"]).removeprefix("Value error, ")
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return ShardsimError(": ".join(parts + [msg]) + more)


def resolve_served_model(name: str, base_dir: Path | None = None) -> ModelSpec:
    """A preset alias or full name, else a config.json path (relative paths also tried next to the workload file)."""
    text = str(name).strip()
    path = Path(text).expanduser()
    if not path.is_absolute() and not exists(path) and base_dir is not None and exists(base_dir / path):
        path = base_dir / path
    if not text.endswith(".json"):
        try:
            return get_preset(text)
        except ShardsimError:
            if not exists(path):
                raise
    return load_config_file(path)


@dataclass(frozen=True, slots=True)
class LoadedWorkload:
    """A workload file and the model each of its entries names."""

    file: Any  # WorkloadSpec, or a TrainWorkload (task: train)
    specs: tuple[ModelSpec, ...]

    @property
    def loads(self) -> list[tuple[ModelSpec, ModelLoad]]:
        """(model, its load) per entry: what ``review`` takes."""
        return list(zip(self.specs, self.file.models))


def load_workload(path: str | Path) -> LoadedWorkload:
    """A workload YAML file (or the name of a shipped one), validated; every mistake reported with the file, the
    line and the field."""
    p = Path(path).expanduser()
    if not is_file(p) and is_file(SHIPPED_WORKLOADS / f"{path}.yaml"):  # a shipped workload by name
        p = SHIPPED_WORKLOADS / f"{path}.yaml"
    if not is_file(p):
        shipped = ", ".join(sorted(f.stem for f in SHIPPED_WORKLOADS.glob("*.yaml")))
        raise ShardsimError(f"workload file {str(path)!r} not found; give a YAML file, or a shipped workload: {shipped}")
    doc = read_yaml(p, "workload file", MAX_YAML_BYTES)
    data, node = doc.data, doc.node
    if not isinstance(data, dict):
        raise ShardsimError(f"{show(p)}: expected a mapping with 'models:' (a list of model, context, concurrency), "
                            f"got {type(data).__name__}")
    _check_size(p, data, node)
    if data.get("task") == "train":
        return _load_train_workload(p, data, node)
    try:
        spec = WorkloadSpec.model_validate(data)
    except ValidationError as exc:
        raise _workload_error(p, exc, node) from None
    return LoadedWorkload(spec, _resolve_models(p, spec.models, node))


def _check_size(p: Path, data: dict, node: Any) -> None:
    """Refuse, before any entry is checked, a workload of more entries than a review runs (``MAX_WORKLOAD_MODELS``:
    each entry is a review of its own)."""
    models = data.get("models")
    if isinstance(models, list) and len(models) > MAX_WORKLOAD_MODELS:
        line = line_of(node, ("models",))
        raise ShardsimError(f"{show(p)}:{f' line {line}:' if line else ''} field 'models': {len(models):,} entries; a "
                            f"workload holds at most {MAX_WORKLOAD_MODELS} (each is a review of its own); split it "
                            "into several files")


def _load_train_workload(p: Path, data: dict, node: Any) -> LoadedWorkload:
    """A ``task: train`` workload (``capacity.train_review``), validated like a serving one."""
    from shardsim.capacity.train_workload import TrainWorkload

    try:
        spec = TrainWorkload.model_validate(data)
    except ValidationError as exc:
        raise _workload_error(p, exc, node) from None
    return LoadedWorkload(spec, _resolve_models(p, spec.models, node))


def _resolve_models(p: Path, loads: tuple, node: Any) -> tuple[ModelSpec, ...]:
    """The model each entry names, a bad one reported with the file, its line and the field."""
    specs = []
    for i, load in enumerate(loads):
        try:
            specs.append(resolve_served_model(load.model, p.parent))
        except ShardsimError as exc:
            line = line_of(node, ("models", i, "model"))
            raise ShardsimError(f"{show(p)}:{f' line {line}:' if line else ''} field 'model': {exc}") from None
    return tuple(specs)


# ---------------------------------------------------------------- catalog
def load_catalog(names: Iterable[str] = (), catalog_dir: str | Path | None = None,
                 gpu: str | None = None) -> list[ClusterSpec]:
    """Clusters to review: the named ones (names or YAML paths), else every spec in ``catalog_dir`` (default:
    ``cluster_specs/``), sorted by GPUs then name; with ``gpu``, only the clusters of that GPU type."""
    names = list(names)
    if names:
        clusters = [load_cluster(n) for n in names]
    elif catalog_dir is not None:
        folder = Path(catalog_dir).expanduser()
        if not is_dir(folder):
            raise ShardsimError(f"--catalog {str(catalog_dir)!r} is not a directory of cluster YAML files")
        files = sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.name != "gpus.yaml")
        if not files:
            raise ShardsimError(f"--catalog {str(catalog_dir)!r} holds no cluster YAML files")
        clusters = [load_cluster(p) for p in files]
    else:
        clusters = list_clusters()
    if gpu is not None:
        card = resolve_gpu(gpu)
        clusters = [c for c in clusters if c.gpu.name == card.name]
        if not clusters:
            raise ShardsimError(f"--gpu {gpu}: no cluster to review has {card.name} GPUs")
    seen, out = set(), []
    for c in sorted(clusters, key=lambda c: (c.world_size, c.name)):
        if c.name not in seen:
            seen.add(c.name)
            out.append(c)
    return out


def cluster_cost(cluster: ClusterSpec, gpus: int, by: str) -> float | None:
    """Price of ``gpus`` GPUs of ``cluster``: its whole price (purchase or per hour) / its GPUs × gpus."""
    whole = cluster.purchase_price_usd if by == "purchase" else cluster.price_per_hour_usd
    return None if whole is None else whole / cluster.world_size * gpus


