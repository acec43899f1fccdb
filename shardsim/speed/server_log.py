"""What a ``vllm serve`` start-up log says about the server a ``vllm bench serve`` result ran against.

Two kinds of line are read (the first of each; a log holds one server's start):

- the engine's configuration, ``Initializing a V1 LLM engine (v0.11.0) with config: model='Qwen/Qwen3-8B', …,
  max_seq_len=40960, …, tensor_parallel_size=1, pipeline_parallel_size=1, data_parallel_size=1, …,
  quantization=None, enforce_eager=False, kv_cache_dtype=auto, …`` (``vllm/v1/engine/core.py`` printing
  ``VllmConfig``'s string form; ``V0`` engines and the earlier ``Initializing an LLM engine (v0.6.3)`` print the
  same fields, without ``data_parallel_size`` before V1): the release, the model, the layout, the weight and KV
  formats, max_model_len and CUDA graphs off;
- the server's ``non-default args: {…}`` (``vllm/entrypoints/utils.py`` ``log_non_default_args``, from 0.10): the
  flags given, a Python dict literal, for what the configuration line does not print — ``enable_expert_parallel``
  (the experts then spread over TP × DP ranks: vLLM ``FusedMoEParallelConfig.make``), ``max_num_seqs``,
  ``max_num_batched_tokens`` and ``gpu_memory_utilization``;
- and, where no flag set it, the scheduler's ``Chunked prefill is enabled with max_num_batched_tokens=N.``
  (``vllm/config/scheduler.py``), the step budget in effect.

The GPU is not in the log (vLLM does not print the device's name): it comes from ``--gpu``. A figure the command
line gives as well must agree with the log's.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

from shardsim.constants import MAX_JSONL_BYTES
from shardsim.errors import ShardsimError
from shardsim.files import read_text, show

ENGINE_LINE = re.compile(r"Initializing an? (?:V[01] )?LLM engine \(v([0-9][0-9A-Za-z.+_-]{0,40})\) with config: "
                         r"([^\n]{0,20000})")
NON_DEFAULT_LINE = re.compile(r"non-default args: (\{[^\n]{0,20000}\})")
CHUNKED_LINE = re.compile(r"Chunked prefill is enabled with max_num_batched_tokens=([0-9]{1,9})")
CONFIG_FIELDS = {
    # (the configuration line's field, how its value reads)
    "model": r"model='([^']{1,300})'",
    "max_model_len": r"\bmax_seq_len=([0-9]{1,9})\b",
    "tp": r"\btensor_parallel_size=([0-9]{1,5})\b",
    "pp": r"\bpipeline_parallel_size=([0-9]{1,5})\b",
    "dp": r"\bdata_parallel_size=([0-9]{1,5})\b",
    "quantization": r"\bquantization=([A-Za-z0-9_-]{1,40})",
    "enforce_eager": r"\benforce_eager=(True|False)\b",
    "kv_cache_dtype": r"\bkv_cache_dtype=([A-Za-z0-9_]{1,20})",
}
QUANT_OF_METHOD = {"fp8": "fp8", "awq": "awq", "awq_marlin": "awq"}
"""vLLM's ``quantization`` (the method it loads the checkpoint with) as ``--quant``; GPTQ's bits and
compressed-tensors' scheme are not in the line: the model's name or ``--quant`` says them."""
FLAG_KNOBS = {"max_num_seqs": int, "max_num_batched_tokens": int, "gpu_memory_utilization": float}
"""The ``non-default args`` keys that become server flags of the row (``row_notes.VLLM_SERVER_FLAGS``)."""


@dataclass(frozen=True)
class ServerLog:
    """The server a log describes (None: the log does not say)."""

    release: str | None = None
    model: str | None = None
    tp: int | None = None
    pp: int | None = None
    dp: int | None = None
    expert_parallel: bool = False
    quant: str | None = None
    kv_cache_dtype: str | None = None
    flags: dict = field(default_factory=dict)  # knob -> value, as ``row_notes.server_flags`` reads them

    @property
    def ep(self) -> int | None:
        """The expert-parallel degree: TP × DP with --enable-expert-parallel, else 1 (None: no layout in the log)."""
        if self.tp is None:
            return None
        return self.tp * (self.dp or 1) if self.expert_parallel else 1

    def notes(self) -> str:
        """The server flags as a row's notes quote them (``row_notes.VLLM_SERVER_FLAGS`` reads them back)."""
        words = []
        for knob, value in sorted(self.flags.items()):
            if knob == "enforce_eager":
                words.append("--enforce-eager" if value else "")
            else:
                words.append(f"--{knob.replace('_', '-')} {value}")
        return ("vllm serve (from its start-up log): " + " ".join(w for w in words if w)).strip()


def _literal(text: str, where: str) -> dict:
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        raise ShardsimError(f"{where}: its 'non-default args' line is not a Python dict literal") from None
    if not isinstance(value, dict):
        raise ShardsimError(f"{where}: its 'non-default args' line is not a dict")
    return value


def _whole(value, key: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 10**9:
        raise ShardsimError(f"{where}: '{key}' in its non-default args must be a positive whole number, got "
                            f"{str(value)[:30]!r}")
    return value


def read_server_log(path: str | Path) -> ServerLog:
    """The ``ServerLog`` of a vLLM start-up log (module docstring); refused when it holds no engine line."""
    where = show(Path(path))
    text = read_text(path, "server log", MAX_JSONL_BYTES)
    engine = ENGINE_LINE.search(text)
    if engine is None:
        raise ShardsimError(f"{where}: not a vLLM start-up log (no 'Initializing a V1 LLM engine (vX.Y.Z) with "
                            "config: …' line)")
    release, config = engine.group(1), engine.group(2)
    found = {name: m.group(1) for name, pattern in CONFIG_FIELDS.items() if (m := re.search(pattern, config))}
    given = _literal(m.group(1), where) if (m := NON_DEFAULT_LINE.search(text)) else {}
    flags: dict = {}
    for key, kind in FLAG_KNOBS.items():
        if key in given:
            value = given[key]
            if kind is int:
                flags[key] = _whole(value, key, where)
            elif isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < value <= 1:
                flags[key] = float(value)
            else:
                raise ShardsimError(f"{where}: 'gpu_memory_utilization' must be in (0, 1], got {str(value)[:30]!r}")
    if "max_num_batched_tokens" not in flags and (m := CHUNKED_LINE.search(text)):
        flags["max_num_batched_tokens"] = int(m.group(1))
    if "max_model_len" in found:
        flags["max_model_len"] = int(found["max_model_len"])
    if found.get("enforce_eager") == "True":
        flags["enforce_eager"] = True
    degrees = {name: int(found[name]) for name in ("tp", "pp", "dp") if name in found}
    for name, value in degrees.items():
        if value < 1:
            field_name = {"tp": "tensor", "pp": "pipeline", "dp": "data"}[name] + "_parallel_size"
            raise ShardsimError(f"{where}: its {field_name} is {value}; a degree is at least 1")
    method = (found.get("quantization") or "None").lower()
    kv = (found.get("kv_cache_dtype") or "auto").lower()
    return ServerLog(
        release=release, model=found.get("model"),
        tp=degrees.get("tp"), pp=degrees.get("pp"), dp=degrees.get("dp"),
        expert_parallel=given.get("enable_expert_parallel") is True, quant=QUANT_OF_METHOD.get(method),
        kv_cache_dtype=kv if kv.startswith("fp8") else None, flags=flags,
    )
