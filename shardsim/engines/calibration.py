"""``shardsim calibrate FILE.jsonl``: every published measurement through shardsim, predicted vs measured.

A row (the format of ``../shared/calibration/measurements.jsonl``) names the model, dtype, engine and version, GPU,
layout and context, and the engine's logged figures as text. Each logged figure that shardsim predicts is parsed
(units as logged: SGLang "GB" and the HF table's "MB" are GiB / MiB) and compared; bounds per figure:
weights per rank 0.5 %, vLLM KV-cache tokens 3 %, SGLang #tokens 3 %, HF peak 5 %, and the start verdict.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from shardsim.constants import MAX_GPU_BYTES, MIN_GPU_BYTES
from shardsim.engines.calibration_release import row_release_of
from shardsim.errors import ShardsimError
from shardsim.files import show
from shardsim.units import GiB, MiB

BOUNDS = {"weights": 0.005, "kv_cache_tokens": 0.03, "sglang_tokens": 0.03, "hf_peak": 0.05,
          "available_kv": 0.03, "activation_peak": 0.05}
REQUIRED = ("model", "dtype", "engine", "gpu", "measured")


@dataclass
class Figure:
    name: str
    predicted: float
    measured: float
    bound: float | None
    unit: str = "GiB"

    @property
    def error(self) -> float:
        return (self.predicted - self.measured) / self.measured if self.measured else 0.0

    @property
    def ok(self) -> bool:
        return self.bound is None or abs(self.error) <= self.bound


@dataclass
class RowResult:
    line: int
    label: str
    figures: list[Figure] = field(default_factory=list)
    starts_predicted: bool | None = None
    error: str | None = None
    starts_measured: bool = True
    release: str | None = None
    rules: str | None = None
    versioned: bool = False          # scored at one known rule set (calibration_release.RowRelease.versioned)
    release_note: str | None = None  # the release used, when the row does not name one exactly
    set: str = "held_out"
    source: str = ""
    # why the row's logged figures cannot come from the configuration it states (``_contradiction``): such a row is
    # shown, not scored (not in the counts, the bands or the start verdicts)
    excluded: str | None = None
    # BORDERLINE: it starts at the estimate, but an estimated term at the edge of its band would stop it (why)
    start_risk: str | None = None

    @property
    def verdict_right(self) -> bool:
        return self.starts_predicted is not None and self.starts_predicted == self.starts_measured

    @property
    def verdict_right_or_borderline(self) -> bool:
        """Right, or said BORDERLINE (a start verdict inside its band is not a wrong one)."""
        return self.verdict_right or (self.starts_predicted is not None and self.start_risk is not None)

    @property
    def ok(self) -> bool:
        return self.error is None and all(f.ok for f in self.figures) and self.verdict_right_or_borderline


NUMBER = r"([0-9]{1,15}(?:\.[0-9]{1,12})?)"
"""A logged number: up to 15 digits, optionally a fraction (longer runs are not figures an engine logs)."""


def _num(text: str, pattern: str) -> float | None:
    """The first number ``pattern`` captures in ``text`` (thousands separators dropped); ``pattern`` captures with
    ``NUMBER``."""
    m = re.search(pattern.replace("([0-9.]+)", NUMBER).replace("([0-9]+)", NUMBER), text.replace(",", ""))
    return float(m.group(1)) if m else None


def _model_and_quant(row: dict):
    from shardsim.core.quant import quant_from_choice
    from shardsim.presets import get_preset

    name = str(row["model"]).split("/")[-1].split(" ")[0]
    dtype_text = str(row.get("dtype", "")).lower()
    base, quant = name, None
    for suffix, choice in (("-FP8", "fp8"), ("-GPTQ-Int8", "int8"), ("-GPTQ-Int4", "int4"), ("-AWQ", "awq")):
        if name.upper().endswith(suffix.upper()):
            base, quant = name[: -len(suffix)], choice
    if quant is None:
        if "fp8" in dtype_text:
            quant = "fp8"
        elif "int4" in dtype_text or "w4a16" in dtype_text:
            quant = "int4"
        elif "int8" in dtype_text:
            quant = "int8"
    spec = get_preset(str(row.get("base_preset") or base))
    overrides = row.get("config_overrides") or {}
    if overrides:
        # A same-architecture checkpoint (e.g. an -2507 release) whose config.json differs from the preset only in
        # these fields, as the row states from the model's published config.json.
        if set(overrides) - {"max_position_embeddings"} or not isinstance(overrides.get("max_position_embeddings"), int):
            raise ShardsimError("config_overrides may only set max_position_embeddings (a whole number)")
        spec = spec.model_copy(update={**overrides, "name": name})
    q = quant_from_choice(quant) if quant else None
    # What an engine holds of a tied model's FP8 export (its own bf16 lm_head or not) is the engine's rule,
    # core.quant.fp8_export_spec, applied by the engines as for any plan.
    return spec, (q if q is not None else spec.quant)


@dataclass(frozen=True, slots=True)
class RowGpu:
    """The GPU of a measurement row as the engine profiles need it."""

    capacity_bytes: int
    name: str
    compute_capability: str | None
    nvidia_smi_bytes: int | None


def _gpu(row: dict) -> RowGpu:
    """The GPU's capacity, name, compute capability and nvidia-smi total from the row's GPU text, logs or the
    catalog."""
    from shardsim.hardware import gpu_catalog

    text = str(row["gpu"])
    measured = " ".join(str(v) for v in row["measured"].values())
    logged_total = (_num(measured, r"total_gpu_memory \(([0-9.]+)\s*GiB\)")
                    or _num(f"{text} {measured}", r"Free memory on device \([0-9.]+/([0-9.]+) GiB\)"))
    in_name = _num(text, r"\(([0-9.]+)\s*GiB\)") or _num(text, r"\(([0-9.]+)\s*GiB total")
    smi = _num(measured, r"/\s*([0-9]+)\s*MiB")
    catalog = None
    words = {w.upper() for w in re.findall(r"[A-Za-z0-9]+", text)}
    # a catalog name whose size ("80GB") the text names comes first (A100-80GB before A100-40GB)
    ordered = sorted(gpu_catalog().values(), key=lambda g: not any(
        t.endswith("GB") and t in words for t in g.name.upper().split("-")))
    for gpu in ordered:
        # the model token of the catalog name (H100, L40S, 4090, H20 …) must appear as a whole word
        tokens = [t for t in gpu.name.upper().split("-") if not t.endswith("GB")]
        model_token = next((t for t in tokens if re.search(r"[0-9]", t)), None)
        # a bare number ("6000") is not enough: NVIDIA or another word of the catalog name must be there too
        if model_token and model_token in words and ("NVIDIA" in words or len(tokens) == 1
                                                     or any(t in words for t in tokens if t != model_token)):
            catalog = gpu
            break
    cc = catalog.compute_capability if catalog else ("12.0" if re.search(r"50[0-9]0", text) else "8.6")
    for size, unit in ((logged_total, GiB), (in_name, GiB), (smi, MiB)):
        if size is not None and not MIN_GPU_BYTES <= size * unit <= MAX_GPU_BYTES:
            raise ShardsimError(f"the GPU's memory {size:g} {'GiB' if unit == GiB else 'MiB'} in {text[:60]!r} is "
                                f"implausible; accepted: 1 GiB … 16 TiB")
    if logged_total:
        return RowGpu(int(logged_total * GiB), text, cc, int(smi * MiB) if smi else None)
    if in_name:
        return RowGpu(int(in_name * GiB), text, cc, int(smi * MiB) if smi else None)
    if catalog is not None:
        return RowGpu(catalog.capacity_bytes, catalog.name, cc, catalog.nvidia_smi_total_bytes)
    if smi:
        return RowGpu(int(smi * MiB), text, cc, int(smi * MiB))
    raise ShardsimError(f"cannot tell the GPU's memory from {text!r}; add '(NN.NN GiB)' to the gpu field")


def _knobs_from_notes(row: dict) -> dict:
    """vLLM knobs from the row's ``settings`` (as logged) and, for older rows, its notes."""
    notes = f"{row.get('notes') or ''} {row.get('engine_version') or ''}"
    settings = row.get("settings") if isinstance(row.get("settings"), dict) else {}
    knobs = {}
    for name, pattern in (("block_size", r"block-size[= ]([0-9]+)"), ("max_num_seqs", r"max-num-seqs[= ]([0-9]+)"),
                          ("max_num_batched_tokens", r"max-num-batched-tokens[= ]([0-9]+)")):
        value = settings.get(name)
        if isinstance(value, str):  # "8192 (the offline default)": the number as logged
            value = _num(value, r"^\s*([0-9]+)")
        if value is None:
            value = _num(notes, pattern)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            knobs[name] = int(value)
    if settings.get("enforce_eager") is True:
        knobs["enforce_eager"] = True
    kv = str(settings.get("kv_cache_dtype") or "auto").lower()
    if kv.startswith("fp8"):
        knobs["kv_cache_dtype"] = "fp8"
    if row.get("gpu_mem_util"):
        knobs["gpu_memory_utilization"] = float(row["gpu_mem_util"])
    return knobs


def row_release(row: dict) -> str | None:
    """The release a row names ("0.10.2", "v0.11.0 (V1)", "0.13.0+nv26.01" → X.Y.Z), or None when it does not."""
    m = re.match(r"\s*v?([0-9]{1,2}\.[0-9]{1,3}(?:\.[0-9]{1,3})?)", str(row.get("engine_version") or ""))
    if m:
        return m.group(1)
    assumed = row.get("assumed_release")
    return str(assumed) if assumed else None


def row_set(row: dict) -> str:
    """"fitted" (a constant was fitted to it) or "held_out"."""
    return "fitted" if row.get("set") == "fitted" else "held_out"


def _vllm_knobs(row: dict, joined: str, context: int, release: str | None) -> dict:
    knobs = {"max_model_len": context, **_knobs_from_notes(row), "engine_version": release}
    if (free := _num(joined, r"Free memory on device[^(]*\(([0-9.]+)/")) is not None:
        knobs["startup_free_bytes"] = int(free * GiB)  # other processes held the rest
    if "V0" in str(row.get("engine_version")):
        knobs["version"] = "v0"
    described = f"{row.get('settings') or ''} {row.get('notes') or ''}"
    if "vllm/vllm-openai" in described:
        knobs["install"] = "docker"  # the official image: flashinfer installed
    if re.search(r"offline LLM|LLM class|LLM\(", described):
        knobs["entrypoint"] = "llm"  # vllm.LLM: the offline defaults
    if "Directly load the compiled graph" in f"{described} {joined}":
        knobs["compile_cache"] = "warm"  # the torch.compile cache was hit: a restart (vllm_profile.compile_note)
    return knobs


def _vllm_row(row: dict, request, joined: str, context: int, release: str | None, result: RowResult):
    """A vLLM row: its report, and each logged figure shardsim predicts appended to ``result``."""
    from shardsim.engines.registry import choose
    from shardsim.engines.run import engine_report

    knobs = _vllm_knobs(row, joined, context, release)
    rep = engine_report(request.with_engine(choose("vllm", knobs)))
    r0 = rep.ranks[0]
    loading = _num(joined, r"Model loading took[^:]*: ([0-9.]+) GiB") or _num(joined, r"weights take ([0-9.]+)GiB")
    if loading:
        result.figures.append(Figure("weights (model loading)", r0.model_loading_bytes / GiB, loading, BOUNDS["weights"]))
    avail = _num(joined, r"Available KV cache memory[^:]*: ([0-9.]+) GiB") or _num(joined, r"KV Cache is ([0-9.]+)GiB")
    if avail:
        result.figures.append(Figure("available KV cache memory", r0.available_kv_cache_bytes / GiB, avail, BOUNDS["available_kv"]))
    act = _num(joined, r"Peak activation[^:]*: ([0-9.]+) GiB") or _num(joined, r"activation peak memory takes ([0-9.]+)GiB")
    if act:
        result.figures.append(Figure("activation peak", r0.activation_peak_bytes / GiB, act, None))
    # vLLM's "Graph capturing finished in N secs, took X GiB" (gpu_model_runner.py capture_model), or the database's
    # own summary of it ("CUDA graph capture: Ns / X GiB", row pub-a014, which quotes no log line)
    graphs = (_num(joined, r"Graph capturing finished[^G]*? took ([0-9.]+) GiB")
              or _num(joined, r"CUDA graph capture: [0-9.]+s / ([0-9.]+) GiB"))
    if graphs and r0.cuda_graph_bytes:
        result.figures.append(Figure("CUDA graph memory", r0.cuda_graph_bytes / GiB, graphs, None))
    tokens = _num(joined, r"GPU KV cache size: ([0-9]+) tokens")
    if tokens:
        result.figures.append(Figure("KV cache tokens", rep.kv_cache_tokens, tokens, BOUNDS["kv_cache_tokens"], "tokens"))
    if not rep.knobs.get("kv_cache_memory_bytes"):  # a KV size given outright is not bound by the utilization
        result.excluded = _contradiction(loading, avail, rep.knobs.get("gpu_memory_utilization"),
                                         request.hardware.capacity_bytes)
    conc = _num(joined, r"Maximum concurrency[^:]*: ([0-9.]+)x")
    if conc:
        result.figures.append(Figure("max concurrency", rep.max_concurrency, conc, BOUNDS["kv_cache_tokens"], "x"))
    return rep


def _contradiction(loading_gib: float | None, available_gib: float | None, utilization: float | None,
                   total_bytes: int) -> str | None:
    """Why a vLLM log contradicts its stated budget, or None. vLLM sizes the KV cache as the requested memory
    (total × gpu_memory_utilization) less the weights, the profile's torch peak increase and the non-torch increase
    (v1/worker/gpu_worker.py@v0.9.1 … @v0.33.0 determine_available_memory; @v0.8.5 the absolute peak, weights
    included): the peak and the increase of one process cannot be negative, so available KV + weights ≤ total ×
    utilization. A log above that had memory freed by another process during the profile (or a budget other than
    the one stated): what no plan of one process can reproduce."""
    if loading_gib is None or available_gib is None or not utilization:
        return None
    budget = total_bytes * utilization / GiB
    if loading_gib + available_gib <= budget:
        return None
    return (f"weights {loading_gib:g} + available KV {available_gib:g} GiB exceed the stated budget {utilization:g} × "
            f"{total_bytes / GiB:.2f} = {budget:.2f} GiB: memory was freed by another process during the profile")


def calibrate_row(row: dict, line: int) -> RowResult:
    from shardsim.core.layout import Layout, validate_layout
    from shardsim.core.workload import Workload
    from shardsim.engines.registry import choose
    from shardsim.engines.run import engine_report
    from shardsim.core.requests import Hardware, ServeRequest

    label = f"{row.get('model')} · {row.get('engine')} · {row.get('gpu')} · TP{row.get('tp') or 1}"
    result = RowResult(line=line, label=label, set=row_set(row), source=str(row.get("source") or ""))
    try:
        if missing := [k for k in REQUIRED if k not in row]:
            raise ShardsimError(f"missing field(s) {', '.join(missing)}")
        spec, quant = _model_and_quant(row)
        layout = validate_layout(spec, Layout(tp=int(row.get("tp") or 1), pp=int(row.get("pp") or 1),
                                              ep=int(row.get("ep") or 1)))
        gpu = _gpu(row)
        request = ServeRequest(spec, layout, Workload(quant=quant), Hardware(gpu.name, gpu.capacity_bytes,
                               gpu.compute_capability, gpu.nvidia_smi_bytes))
        engine = str(row["engine"]).lower()
        meas = {k: str(v) for k, v in row["measured"].items()}
        joined = " ".join(f"{k}: {v}" for k, v in meas.items())
        context = int(row.get("context") or spec.max_position_embeddings)
        scored = row_release_of(row, row_release(row))
        release = result.release = scored.version
        result.versioned = scored.versioned
        if "vllm" in engine:
            rep = _vllm_row(row, request, joined, context, release, result)
        elif "sglang" in engine:
            sg = {"context_length": context, "engine_version": release}
            if row.get("gpu_mem_util"):
                sg["mem_fraction_static"] = float(row["gpu_mem_util"])
            settings = row.get("settings") if isinstance(row.get("settings"), dict) else {}
            for name in ("max_total_tokens", "chunked_prefill_size"):
                if isinstance(settings.get(name), int) and not isinstance(settings.get(name), bool):
                    sg[name] = settings[name]
            if str(settings.get("kv_cache_dtype") or "").lower().startswith("fp8"):
                sg["kv_cache_dtype"] = "fp8_e4m3"
            rep = engine_report(request.with_engine(choose("sglang", sg)))
            usage = _num(joined, r"mem usage=([0-9.]+) GB")
            if usage:
                result.figures.append(Figure("weight mem usage", rep.ranks[0].model_loading_bytes / GiB, usage, BOUNDS["weights"] * 10))
            tokens = _num(joined, r"#tokens: ([0-9]+)") or _num(joined, r"max_total_num_tokens[=:] ?([0-9]+)")
            if tokens:
                result.figures.append(Figure("KV pool #tokens", rep.kv_cache_tokens, tokens, BOUNDS["sglang_tokens"], "tokens"))
        elif "hf" in engine or "transformers" in engine:
            prompt = _num(joined, r"input_length: ([0-9]+)") or 1
            generated = _num(joined, r"generated_tokens: ([0-9]+)") or 2048
            batch = _num(joined, r"batch_size: ([0-9]+)") or 1
            rep = engine_report(request.with_engine(choose("hf", {"prompt_tokens": int(prompt),
                                                                  "generate_tokens": int(generated), "batch": int(batch)})))
            peak = _num(joined, r"max_memory_allocated[^:]*: ([0-9.]+) MB")
            if peak:
                result.figures.append(Figure("peak allocated", rep.peak_allocated_bytes / MiB, peak, BOUNDS["hf_peak"], "MiB"))
        else:
            raise ShardsimError(f"engine {row['engine']!r} is not known; accepted: vLLM, SGLang, HF Transformers")
        result.starts_predicted = rep.starts
        result.start_risk = rep.start_risk
        result.starts_measured = str(row.get("outcome") or "started") == "started"
        result.rules = (rep.rules or {}).get("label", rep.version)
        result.release_note = scored.note(result.rules)
        if not result.figures and row.get("outcome") in (None, "started"):
            result.error = "no logged figure shardsim predicts was found in 'measured'"
        _check_plausible(result.figures, gpu.capacity_bytes * layout.world_size)
    except ShardsimError as exc:
        result.error = str(exc)
    return result


def _check_plausible(figures: list[Figure], memory_bytes: int) -> None:
    """A logged memory figure below 1 MiB or larger than all the GPUs' memory, or a token count beyond any cache, is
    a misread log, not a measurement: refused."""
    for f in figures:
        scale = {"GiB": GiB, "MiB": MiB}.get(f.unit)
        if scale is not None and not MiB <= f.measured * scale <= memory_bytes:
            raise ShardsimError(f"'{f.name}' of {f.measured:g} {f.unit} is implausible on GPUs of "
                                f"{memory_bytes / GiB:,.2f} GiB in all")
        if f.unit == "tokens" and not 0 < f.measured <= 1e10:
            raise ShardsimError(f"'{f.name}' of {f.measured:g} tokens is implausible")


def calibrate(path: str | Path) -> list[RowResult]:
    """Every row through shardsim. A row marked ``"evaluate": false`` (with its ``skip_reason``: a GPU that is not
    CUDA, a model that is not a Qwen3 preset) is left out; any other row shardsim cannot read (unknown model or
    engine, no figure it predicts, an implausible GPU) refuses the file with the row's line."""
    results = []
    for line, row in read_rows(path):
        if row.get("evaluate") is False:
            continue
        r = calibrate_row(row, line)
        if r.error:
            raise ShardsimError(f"{show(Path(path))}: line {r.line}: {r.error}")
        results.append(r)
    return results



from shardsim.engines.calibration_report import held_out_bands, summary  # noqa: E402  (re-exported)
from shardsim.engines.calibration_rows import MeasurementRow, read_rows  # noqa: E402  (re-exported)

__all__ = ["MeasurementRow", "calibrate", "held_out_bands", "read_rows", "summary"]
