"""``shardsim calibrate --speed``: published serving benchmarks (``vllm bench serve``, ``sglang.bench_serving``)
through the speed model, predicted vs measured, per row, and the held-out errors per engine and GPU.

A row (``shardsim/speed/data/serving_benchmarks.jsonl``) names the engine and release, the model (Hugging Face
id), weight and KV formats, the GPU and layout, the workload (input / output tokens, concurrency or request rate)
and what the benchmark measured. Each figure is compared where the row has it: TTFT and TPOT (the median, else the
mean; the model's steady state is one figure per request) and output tokens/s (else total tokens/s, else requests/s
× output tokens). Error = (predicted − measured) / measured. Rows with ``"split": "fitted"`` fed ``speed.fitted``;
the rest are held out, and their errors are the bands ``speed`` prints (``speed.bands``).
"""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, ValidationError

from shardsim.constants import MAX_BATCH, MAX_CONTEXT_TOKENS, MAX_JSONL_BYTES, MAX_WORLD_SIZE
from shardsim.errors import ShardsimError
from shardsim.files import parse_json, read_text, show
from shardsim.speed.row_notes import lengths_vary, server_flags

DATABASE = Path(__file__).resolve().parent / "data" / "serving_benchmarks.jsonl"
"""The shipped serving benchmarks (written by research from published results; never edited here)."""

METRICS = ("ttft", "tpot", "throughput")
Number = StrictInt | StrictFloat


class ServingRow(BaseModel):
    """One published serving benchmark: strictly typed and bounded; other fields are kept as they are."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    id: str = Field(min_length=1, max_length=100)
    source: str = Field(default="", max_length=2000)
    engine: str = Field(min_length=1, max_length=100)
    release: str | None = Field(default=None, max_length=300)
    # where the source names no release but dates the run: the newest release published by then (with the reason in
    # ``release_by_date_why``); the row is modelled with that release's rules, ``release`` stays what the source says
    release_by_date: str | None = Field(default=None, max_length=40)
    model: str = Field(min_length=1, max_length=300)
    quant: str | None = Field(default=None, max_length=40)
    kv_cache_dtype: str | None = Field(default=None, max_length=40)
    gpu: str = Field(min_length=1, max_length=200)
    gpu_count: StrictInt | None = Field(default=None, ge=1, le=MAX_WORLD_SIZE)
    tp: StrictInt | None = Field(default=None, ge=1, le=MAX_WORLD_SIZE)
    pp: StrictInt | None = Field(default=None, ge=1, le=MAX_WORLD_SIZE)
    dp: StrictInt | None = Field(default=None, ge=1, le=MAX_WORLD_SIZE)
    ep: StrictInt | None = Field(default=None, ge=1, le=MAX_WORLD_SIZE)
    input_tokens: Number | None = Field(default=None, ge=1, le=MAX_CONTEXT_TOKENS)  # a mean per request
    output_tokens: Number | None = Field(default=None, ge=1, le=MAX_CONTEXT_TOKENS)
    dataset: str | None = Field(default=None, max_length=60)
    concurrency: StrictInt | None = Field(default=None, ge=1, le=MAX_BATCH)
    request_rate: Number | str | None = None
    num_prompts: StrictInt | None = Field(default=None, ge=1, le=10_000_000)
    ttft_ms_median: Number | None = Field(default=None, gt=0, le=1e9)
    ttft_ms_mean: Number | None = Field(default=None, gt=0, le=1e9)
    tpot_ms_median: Number | None = Field(default=None, gt=0, le=1e9)
    tpot_ms_mean: Number | None = Field(default=None, gt=0, le=1e9)
    itl_ms_median: Number | None = Field(default=None, gt=0, le=1e9)  # inter-token latency: the typical step
    request_throughput: Number | None = Field(default=None, gt=0, le=1e9)
    output_tokens_per_s: Number | None = Field(default=None, gt=0, le=1e12)
    total_tokens_per_s: Number | None = Field(default=None, gt=0, le=1e12)
    split: Literal["fitted", "held_out"] = "held_out"


@dataclass
class Figure:
    metric: str
    predicted: float
    measured: float
    basis: str  # which measured field

    @property
    def error(self) -> float:
        return (self.predicted - self.measured) / self.measured


@dataclass
class RowResult:
    id: str
    split: str
    engine: str
    gpu: str
    label: str
    figures: list[Figure] = field(default_factory=list)
    error: str | None = None
    publisher: str = ""

    def figure(self, metric: str) -> Figure | None:
        return next((f for f in self.figures if f.metric == metric), None)


NEW_PUBLISHER = "held_out_new_publisher"
"""The summary's group of held-out rows whose publisher has no fitted row (``publisher_of``): a leave-publisher-out
test — no value was fitted to that publisher's harness, client or setup."""


def publisher_of(source: str) -> str:
    """Who published a row: the GitHub owner of ``owner/repo@commit:path`` or of a github.com address, else the web
    address's host (``www.`` dropped); lower case."""
    text = source.strip()
    github = re.match(r"(?:https?://)?(?:www\.)?github\.com/([A-Za-z0-9_.-]+)", text)
    if github:
        return github.group(1).lower()
    if re.match(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+@", text):
        return text.split("/", 1)[0].lower()
    host = re.match(r"https?://(?:www\.)?([^/]+)", text)
    return host.group(1).lower() if host else text.lower()


def read_rows(path: str | Path) -> list[ServingRow]:
    """The rows of a JSONL file, each validated; a bad line is refused with its number and field."""
    p = Path(path)
    rows = []
    for i, line in enumerate(read_text(p, "serving benchmarks", MAX_JSONL_BYTES).splitlines(), 1):
        if not line.strip():
            continue
        data = parse_json(line, f"{show(p)}: line {i}")
        if not isinstance(data, dict):
            raise ShardsimError(f"{show(p)}: line {i}: expected a JSON object per line")
        try:
            rows.append(ServingRow.model_validate(data))
        except ValidationError as exc:
            err = exc.errors()[0]
            raise ShardsimError(f"{show(p)}: line {i}: field '{'.'.join(map(str, err['loc']))}': {err['msg']}") from None
    if not rows:
        raise ShardsimError(f"{show(p)}: no rows in the file")
    return rows


def row_gpu(text: str) -> str:
    """The catalog GPU a row's GPU text names: its name or alias, else the catalog GPU whose model number
    ("H100", "4090", "L40S") is a word of the text and the most of whose other name words ("PCIe", "40GB") are."""
    from shardsim.hardware import gpu_catalog, resolve_gpu

    try:
        return resolve_gpu(text.strip()).name
    except ShardsimError:
        pass
    words = set(re.findall(r"[a-z0-9]+", text.lower()))
    best, score = None, -1
    for gpu in gpu_catalog().values():
        tokens = gpu.name.lower().split("-")
        number = next((t for t in tokens if re.search(r"[0-9]", t) and not t.endswith("gb")), None)
        if number is None or number not in words:
            continue
        hits = sum(t in words for t in tokens)
        if hits > score:
            best, score = gpu.name, hits
    if best is None:
        raise ShardsimError(f"the GPU {text[:60]!r} is not in the catalog (shardsim gpus)")
    return best


QUANTS = {"bf16": None, "fp16": None, "none": None, "auto": None, "fp8": "fp8", "w8a8-fp8": "fp8", "int4": "int4",
          "gptq-int4": "int4", "int8": "int8", "gptq-int8": "int8", "awq": "awq", "nvfp4": "nvfp4"}


def speed_request_of(row: ServingRow):
    """The ``speed.estimate.SpeedRequest`` a row describes: its model (a preset or Hugging Face id), layout, formats,
    GPUs (8 to a node, as ``shardsim plan --gpu`` builds them) and engine release."""
    from shardsim.core.layout import Layout, validate_layout
    from shardsim.core.quant import quant_from_choice
    from shardsim.core.requests import Hardware, ServeRequest
    from shardsim.core.workload import Workload
    from shardsim.engines.registry import choose
    from shardsim.hardware import resolve_gpu, topology
    from shardsim.speed.estimate import SpeedRequest, SpeedWorkload

    engine = row.engine.lower()
    if engine not in ("vllm", "sglang"):
        raise ShardsimError(f"engine {row.engine!r} is not modelled; accepted: vllm, sglang")
    quant_text = (row.quant or "none").lower()
    if quant_text not in QUANTS:
        raise ShardsimError(f"quant {row.quant!r} is not known; accepted: {', '.join(QUANTS)}")
    if row.input_tokens is None or row.output_tokens is None:
        raise ShardsimError("the source does not state the tokens per request")
    if row.tp is None:
        raise ShardsimError("the source does not state the tensor-parallel degree")
    spec, quant = _row_model(row.model, QUANTS[quant_text])
    inp, out = round(row.input_tokens), round(row.output_tokens)
    rate = _rate(row.request_rate)
    load = SpeedWorkload(inp, out, row.concurrency, rate, num_prompts=row.num_prompts, varied_lengths=lengths_vary(row))
    layout = validate_layout(spec, Layout(tp=row.tp or 1, pp=row.pp or 1, dp=row.dp or 1, ep=row.ep or 1))
    per_replica = -(-(load.concurrency or load.num_prompts or 1) // layout.dp)
    workload = Workload(context=inp + out, batch=min(per_replica, MAX_BATCH),
                        quant=quant_from_choice(quant) if quant else None).checked()
    cluster = topology.cluster_for_gpu(resolve_gpu(row_gpu(row.gpu)), layout.world_size)
    card = cluster.gpu
    hardware = Hardware(card.name, card.capacity_bytes, card.compute_capability, card.nvidia_smi_total_bytes,
                        topology.fabric_of(cluster), cluster)
    knobs = {"engine_version": _release(row.release or row.release_by_date)}
    if engine == "vllm":  # the server started, so its max_model_len fit: as the notes give it, else the row's length
        knobs["max_model_len"] = inp + out
    knobs |= server_flags(engine, str(getattr(row, "notes", "") or ""))
    if str(row.kv_cache_dtype or "").lower().startswith("fp8"):
        knobs["kv_cache_dtype"] = "fp8" if engine == "vllm" else "fp8_e4m3"
    return SpeedRequest(ServeRequest(spec, layout, workload, hardware, choose(engine, knobs)), load)


SAME_ARCHITECTURE = ("-Instruct-2507", "-Thinking-2507")
"""Checkpoint names whose config.json has the base preset's architecture (Qwen's 2507 updates differ only in
max_position_embeddings, 262,144; their model cards), read as the base preset."""
QUANT_SUFFIXES = {"-AWQ": "awq", "-GPTQ-Int4": "int4", "-GPTQ-Int8": "int8", "-FP8": "fp8"}
"""Quantized checkpoints not shipped as presets: the base preset in that format (group 128, Qwen's published
quantization_config; -FP8: Qwen's block-scaled e4m3, ``--quant fp8`` on the base preset)."""


def _row_model(model: str, quant: str | None):
    """The ModelSpec a row's Hugging Face id names, and the ``--quant`` to apply to it (None: its own format)."""
    from shardsim.presets import resolve_model

    try:
        spec = resolve_model(model)
        return spec, quant if spec.quant.method == "none" else None
    except ShardsimError:
        name = model.split("/")[-1]
    for suffix in SAME_ARCHITECTURE:
        name = name.replace(suffix, "")
    for suffix, fmt in QUANT_SUFFIXES.items():
        if name.upper().endswith(suffix.upper()):
            name, quant = name[: -len(suffix)], fmt
    spec = resolve_model(name)
    return spec, quant if spec.quant.method == "none" else None


def _rate(value) -> float | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("inf", "infinity", "")):
        return None
    try:
        rate = float(value)
    except ValueError:
        raise ShardsimError(f"request_rate {str(value)[:20]!r} is not a number or 'inf'") from None
    return rate if 0 < rate < float("inf") else None


def _release(text: str | None) -> str | None:
    m = re.match(r"\s*v?([0-9]{1,2}\.[0-9]{1,3}(?:\.[0-9]{1,3})?)", str(text or ""))
    return m.group(1) if m else None


def measured(row: ServingRow) -> dict[str, tuple[float, str]]:
    """The measured figures of a row by metric, with the field each comes from."""
    out = {}
    if ttft := row.ttft_ms_median or row.ttft_ms_mean:
        out["ttft"] = (float(ttft), "ttft_ms_median" if row.ttft_ms_median else "ttft_ms_mean")
    if tpot := row.tpot_ms_median or row.tpot_ms_mean:
        out["tpot"] = (float(tpot), "tpot_ms_median" if row.tpot_ms_median else "tpot_ms_mean")
    if row.output_tokens_per_s:
        out["throughput"] = (float(row.output_tokens_per_s), "output_tokens_per_s")
    elif row.total_tokens_per_s:
        share = (row.output_tokens or 0) / ((row.input_tokens or 0) + (row.output_tokens or 0) or 1)
        out["throughput"] = (float(row.total_tokens_per_s) * share, "total_tokens_per_s × O/(I + O)")
    elif row.request_throughput:
        out["throughput"] = (float(row.request_throughput) * (row.output_tokens or 0), "request_throughput × O")
    return out


def score(row: ServingRow, report) -> list[Figure]:
    """Predicted vs measured for every figure the row has (``report``: a ``speed.estimate.SpeedReport``)."""
    predicted = {"ttft": report.ttft_ms, "tpot": report.tpot_ms,
                 "throughput": report.output_tokens_per_s}
    return [Figure(metric, predicted[metric], value, basis) for metric, (value, basis) in measured(row).items()
            if predicted.get(metric)]


def calibrate_row(row: ServingRow) -> RowResult:
    from shardsim.speed.estimate import estimate

    label = f"{row.model.split('/')[-1]} · {row.engine} {row.release or ''} · {row.gpu} · TP{row.tp or 1}"
    result = RowResult(row.id, row.split, row.engine.lower(), row.gpu, label, publisher=publisher_of(row.source))
    try:
        result.gpu = row_gpu(row.gpu)
        result.figures = score(row, estimate(speed_request_of(row), arithmetic=False))
        if not result.figures:
            result.error = "no figure the speed model predicts"
    except ShardsimError as exc:
        result.error = str(exc)
    return result


def calibrate(path: str | Path = DATABASE) -> list[RowResult]:
    """Every row through the speed model (a row shardsim cannot model keeps its reason in ``error``)."""
    return [calibrate_row(row) for row in read_rows(path)]


def errors_summary(results: list[RowResult], metric: str) -> dict | None:
    """Median and p90 of |error| and the worst row, over the rows with ``metric``; None without any."""
    pairs = sorted(((abs(f.error), r.id) for r in results if (f := r.figure(metric))), reverse=True)
    if not pairs:
        return None
    values = sorted(v for v, _ in pairs)
    return {"rows": len(values), "median": statistics.median(values), "p90": percentile(values, 90),
            "worst": pairs[0][0], "worst_row": pairs[0][1]}


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-th percentile by linear interpolation between closest ranks (numpy's default, ``method='linear'``)."""
    pos = (len(sorted_values) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def summary(results: list[RowResult]) -> list[dict]:
    """Per split, engine and GPU (and per split and engine, GPU "*"), per metric: ``errors_summary``; then, per
    engine over all GPUs, the held-out rows of publishers with no fitted row (split ``NEW_PUBLISHER``)."""
    ok = [r for r in results if r.error is None]
    keys = sorted({(r.split, r.engine, r.gpu) for r in ok} | {(r.split, r.engine, "*") for r in ok})
    out = []
    for split, engine, gpu in keys:
        group = [r for r in ok if r.split == split and r.engine == engine and gpu in ("*", r.gpu)]
        out.append({"split": split, "engine": engine, "gpu": gpu, "rows": len(group),
                    **{m: errors_summary(group, m) for m in METRICS}})
    fitted_publishers = {r.publisher for r in results if r.split == "fitted"}
    for engine in sorted({r.engine for r in ok}):
        group = [r for r in ok if r.engine == engine and r.split == "held_out" and r.publisher not in fitted_publishers]
        if group:
            out.append({"split": NEW_PUBLISHER, "engine": engine, "gpu": "*", "rows": len(group),
                        "publishers": sorted({r.publisher for r in group}),
                        **{m: errors_summary(group, m) for m in METRICS}})
    return out


def held_out_bands(results: list[RowResult], p90_rows: int = 5) -> dict[str, dict[str, dict]]:
    """Per engine and metric, over the held-out rows: p90 of |error| with at least ``p90_rows`` rows, else the worst
    (named) — the table ``speed.bands.HELD_OUT`` is written from."""
    out: dict[str, dict[str, dict]] = {}
    for engine in sorted({r.engine for r in results}):
        group = [r for r in results if r.engine == engine and r.split == "held_out" and r.error is None]
        for metric in METRICS:
            s = errors_summary(group, metric)
            if s is None:
                continue
            p90 = s["rows"] >= p90_rows
            out.setdefault(engine, {})[metric] = {"band": round(s["p90"] if p90 else s["worst"], 3),
                                                  "rows": s["rows"], "how": "p90" if p90 else "worst",
                                                  "row": s["worst_row"]}
    return out
