"""A user's ``vllm bench serve --save-result`` JSON as a serving benchmark row, scored like the published ones.

The fields read are those vLLM writes (``vllm/benchmarks/serve.py``, vllm-project/vllm@009e6d4:
``calculate_metrics`` and ``main``'s ``result_json``; the same names in vLLM's earlier benchmark_serving script):
``model_id``, ``num_prompts``, ``max_concurrency`` (null: no cap), ``request_rate`` (a number, or ``"inf"``),
``completed``, ``total_input_tokens``, ``total_output_tokens``, ``mean_ttft_ms`` / ``median_ttft_ms``,
``mean_tpot_ms`` / ``median_tpot_ms`` (TPOT = (latency − TTFT)/(output − 1) per request), ``request_throughput``,
``output_throughput``, ``total_token_throughput``. Input and output tokens per request are the totals over the
completed requests. With ``request_rate`` ``inf`` and no ``max_concurrency`` every prompt is sent at once: a closed
loop of ``num_prompts`` users. The GPU, layout, formats and release are not in the file: they come from the
command line, or from the server's start-up log (``speed.server_log``, ``with_log``), whose flags (the step budget,
the running cap, max_model_len, the memory share, CUDA graphs off) the row then carries in its notes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from shardsim.constants import MAX_JSONL_BYTES
from shardsim.errors import ShardsimError
from shardsim.files import read_json, show

REQUIRED = ("model_id", "completed", "total_input_tokens", "total_output_tokens")
FIGURES = ("median_ttft_ms", "mean_ttft_ms", "median_tpot_ms", "mean_tpot_ms", "request_throughput",
           "output_throughput", "total_token_throughput")


@dataclass(frozen=True)
class ResultSetup:
    """What the result file does not say: the GPU, layout, formats and release (None: not given)."""

    model: str | None = None
    gpu: str | None = None
    tp: int = 1
    pp: int = 1
    dp: int = 1
    ep: int = 1
    quant: str | None = None
    kv_cache_dtype: str | None = None
    engine_version: str | None = None


SETUP_FLAGS = {"model": "--model", "tp": "--tp", "pp": "--pp", "dp": "--dp", "ep": "--ep", "quant": "--quant",
               "kv_cache_dtype": "--kv-cache-dtype", "engine_version": "--engine-version"}
"""The ``ResultSetup`` fields a start-up log can give, and the flag that gives each on the command line."""


def with_log(setup: ResultSetup, given: tuple[str, ...], log) -> tuple[ResultSetup, str]:
    """``setup`` completed from a ``server_log.ServerLog``: what the command line did not give (``given``: its flags)
    comes from the log; a flag the log contradicts is refused, but for ``--model`` (the log may name a local folder).
    Returns the setup and the notes the row carries (the server's flags)."""
    from dataclasses import replace

    from_log = {"model": log.model, "tp": log.tp, "pp": log.pp, "dp": log.dp, "ep": log.ep, "quant": log.quant,
                "kv_cache_dtype": log.kv_cache_dtype, "engine_version": log.release}
    update = {}
    for name, flag in SETUP_FLAGS.items():
        logged, stated = from_log[name], getattr(setup, name)
        if logged is None:
            continue
        if flag not in given:
            update[name] = logged
        elif name != "model" and _said(name, stated) != _said(name, logged):
            raise ShardsimError(f"{flag} {stated} contradicts the server log ({name} {logged}); give one or the other")
    return replace(setup, **update), log.notes()


def _said(name: str, value) -> object:
    """What a setup value means, for comparing the command line's with the log's: an fp8 KV cache whatever its
    spelling (fp8, fp8_e4m3), a release without its "v" or trailing ".0" parts (0.11 = v0.11.0)."""
    text = str(value).strip().lower()
    if name == "kv_cache_dtype":
        return text.startswith("fp8")
    if name == "engine_version":
        parts = text.lstrip("v").split(".")
        while len(parts) > 2 and parts[-1] == "0":
            parts.pop()
        return ".".join(parts)
    return text


def looks_like_result(path: str | Path) -> bool:
    """A ``.json`` file (a vLLM result is one object; the databases are JSON lines)."""
    return str(path).lower().endswith(".json")


def _number(data: dict, key: str, where: str, whole: bool = False):
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (whole and not isinstance(value, int)):
        raise ShardsimError(f"{where}: field '{key}' must be a {'whole number' if whole else 'number'}, got "
                            f"{str(value)[:30]!r}")
    return value


def result_row(path: str | Path, setup: ResultSetup, notes: str = ""):
    """The ``speed.calibration.ServingRow`` of a vLLM result file and the command line's ``setup`` (``notes``: the
    server's flags, ``with_log``)."""
    from shardsim.speed.calibration import ServingRow

    p = Path(path)
    where = show(p)
    data = read_json(p, "vllm bench serve result", MAX_JSONL_BYTES)
    if not isinstance(data, dict):
        raise ShardsimError(f"{where}: expected one JSON object (vllm bench serve --save-result)")
    missing = [k for k in REQUIRED if k not in data]
    if missing:
        raise ShardsimError(f"{where}: not a vllm bench serve result: missing {', '.join(missing)}")
    completed = _number(data, "completed", where, whole=True)
    if not completed or completed < 1:
        raise ShardsimError(f"{where}: field 'completed' must be at least 1")
    totals = [_number(data, k, where, whole=True) for k in ("total_input_tokens", "total_output_tokens")]
    if any(t is None or t < completed for t in totals):
        raise ShardsimError(f"{where}: total input and output tokens must be at least one per completed request")
    prompts = _number(data, "num_prompts", where, whole=True)
    concurrency = _number(data, "max_concurrency", where, whole=True)
    rate = data.get("request_rate", "inf")
    if not isinstance(rate, str):
        rate = _number(data, "request_rate", where)
    if concurrency is None and str(rate).lower() == "inf":
        concurrency = prompts or completed  # every prompt at once
    figures = {k: _number(data, k, where) for k in FIGURES}
    model = setup.model or data["model_id"]
    if not isinstance(model, str) or not setup.gpu:
        raise ShardsimError("a vllm bench serve result does not name the GPU: give --gpu NAME (and the layout: --tp, "
                            "--pp, --dp, --ep)")
    fields = dict(
        id=f"result:{p.name}"[:100], source=where, engine="vllm", release=setup.engine_version, model=model,
        quant=setup.quant, kv_cache_dtype=setup.kv_cache_dtype, gpu=setup.gpu, tp=setup.tp, pp=setup.pp,
        dp=setup.dp, ep=setup.ep, input_tokens=round(totals[0] / completed), output_tokens=round(totals[1] / completed),
        concurrency=concurrency, request_rate=rate, num_prompts=prompts,
        ttft_ms_median=figures["median_ttft_ms"] or None, ttft_ms_mean=figures["mean_ttft_ms"] or None,
        tpot_ms_median=figures["median_tpot_ms"] or None, tpot_ms_mean=figures["mean_tpot_ms"] or None,
        request_throughput=figures["request_throughput"] or None,
        output_tokens_per_s=figures["output_throughput"] or None,
        total_tokens_per_s=figures["total_token_throughput"] or None, split="held_out", notes=notes,
    )
    try:
        return ServingRow(**fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        raise ShardsimError(f"{where}: field '{'.'.join(map(str, err['loc']))}': {err['msg']}") from None
