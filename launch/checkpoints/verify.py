"""A checkpoint checked before any worker starts: the right model, every tensor present with its shape, no shard
truncated, and (for the checkpoints shardsim writes) a stored checksum.

safetensors layout (huggingface/safetensors, docs "Format"): an 8-byte little-endian header length N, N bytes of
JSON header ``{name: {"dtype", "shape", "data_offsets": [begin, end]}, "__metadata__": {...}}``, then the data; a
whole file is exactly 8 + N + the largest ``end`` bytes. The index ``model.safetensors.index.json`` maps each tensor
to its shard (``weight_map``). Everything here reads headers only (a few MB even for Qwen3-235B-A22B), so a check
costs milliseconds; the checksum covers the headers and the first and last MiB of each shard's data.
"""

from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass
from pathlib import Path

from shardsim.constants import MAX_CONFIG_BYTES, MAX_SAFETENSORS_HEADER_DEPTH
from shardsim.core.config import spec_from_config
from shardsim.core.model import ModelSpec
from shardsim.errors import ShardsimError
from shardsim.files import parse_json, read_json, show
from shardsim.launch.checkpoints.layout import stored_entries

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
MAX_HEADER_BYTES = 256 * 1024**2
SAMPLE_BYTES = 1024**2
SAFETENSORS_DTYPES = {"BF16": "bf16", "F16": "fp16", "F32": "fp32", "F8_E4M3": "fp8"}
COMPARED = ("architecture", "hidden_size", "intermediate_size", "num_heads", "num_kv_heads", "head_dim", "vocab_size",
            "tie_word_embeddings", "num_experts", "num_experts_per_tok", "moe_intermediate_size")


@dataclass(frozen=True, slots=True)
class TensorEntry:
    file: str
    dtype: str
    shape: tuple[int, ...]


def _header(path: Path) -> dict:
    """The JSON header of one safetensors file, checked against the file's size."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            raw = handle.read(8)
            if len(raw) < 8:
                raise ShardsimError(f"checkpoint shard {show(path)} is truncated ({size} bytes, no header)")
            (length,) = struct.unpack("<Q", raw)
            if not 2 <= length <= min(MAX_HEADER_BYTES, size - 8):
                raise ShardsimError(f"checkpoint shard {show(path)} is truncated or not safetensors "
                                    f"(header of {length:,} bytes in a file of {size:,})")
            raw = handle.read(length)
    except OSError as exc:
        raise ShardsimError(f"checkpoint shard {show(path)}: cannot read it: {exc.strerror or exc}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ShardsimError(f"checkpoint shard {show(path)}: its header is not JSON (not a safetensors file)") from None
    # bounded as the format allows (a deeply nested header would otherwise end in a RecursionError)
    header = parse_json(text, f"checkpoint shard {show(path)} (safetensors header)", MAX_SAFETENSORS_HEADER_DEPTH)
    if not isinstance(header, dict):
        raise ShardsimError(f"checkpoint shard {show(path)}: its header is not a JSON object")
    ends = [v["data_offsets"][1] for k, v in header.items() if k != "__metadata__" and isinstance(v, dict)
            and isinstance(v.get("data_offsets"), list) and len(v["data_offsets"]) == 2]
    expected = 8 + length + max(ends, default=0)
    if size != expected:
        raise ShardsimError(f"checkpoint shard {show(path)} is {size:,} bytes but its header describes {expected:,}: "
                            "truncated or damaged; write it again (or delete it so shardsim rewrites it)")
    return header


def _shards(directory: Path) -> list[str]:
    """The shard files the checkpoint consists of, from its index (or the single-file checkpoint)."""
    index = directory / INDEX
    if index.is_file():
        doc = read_json(index, "checkpoint index", MAX_CONFIG_BYTES * 16)
        weight_map = doc.get("weight_map") if isinstance(doc, dict) else None
        if not isinstance(weight_map, dict) or not weight_map:
            raise ShardsimError(f"{show(index)}: no 'weight_map' of tensor names to shard files")
        files = sorted(set(map(str, weight_map.values())))
        for name in files:
            if "/" in name or name.startswith("."):
                raise ShardsimError(f"{show(index)}: shard name {name!r:.60} is not a file in the checkpoint folder")
        return files
    if (directory / SINGLE).is_file():
        return [SINGLE]
    raise ShardsimError(f"checkpoint {show(directory)} has neither {INDEX} nor {SINGLE}")


def inventory(directory: Path) -> dict[str, TensorEntry]:
    """Every tensor of a checkpoint folder with its shard, dtype and shape, every shard's size checked."""
    out: dict[str, TensorEntry] = {}
    for name in _shards(directory):
        path = directory / name
        if not path.is_file():
            raise ShardsimError(f"checkpoint shard {show(path)} is missing (named in {INDEX})")
        for tensor, meta in _header(path).items():
            if tensor != "__metadata__" and isinstance(meta, dict):
                out[tensor] = TensorEntry(name, str(meta.get("dtype")), tuple(meta.get("shape") or ()))
    return out


def check_checkpoint(spec: ModelSpec, directory: Path | str) -> None:
    """Refuse, with one line naming what differs, a checkpoint that is not ``spec`` (its config and every tensor
    the planner sizes: present, its shape, bf16 or the fp32 the published checkpoint keeps), or whose shards are missing or truncated."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ShardsimError(f"--checkpoint {str(directory)!r} is not a folder; give a Hugging Face checkpoint folder")
    config = read_json(directory / "config.json", "checkpoint config", MAX_CONFIG_BYTES)
    theirs = spec_from_config(config, name=directory.name, source=show(directory / "config.json"))
    for field in COMPARED:
        if getattr(theirs, field) != getattr(spec, field):
            raise ShardsimError(f"checkpoint {show(directory)} is not {spec.name}: its {field} is "
                                f"{getattr(theirs, field)!r}, the model's {getattr(spec, field)!r}")
    if theirs.num_layers < spec.num_layers:
        raise ShardsimError(f"checkpoint {show(directory)} has {theirs.num_layers} layers; {spec.name} needs {spec.num_layers}")
    held = inventory(directory)
    # the MTP head's experts: per expert (Qwen3.5-35B-A3B) or fused (Qwen3.6-35B-A3B); transformers skips mtp.*
    fused_mtp = any(n.startswith("mtp.") and n.endswith("experts.gate_up_proj") for n in held)
    stored = stored_entries(spec, fused_mtp=fused_mtp)
    for name, shape, dtype in stored:
        entry = held.get(name)
        if entry is None:
            raise ShardsimError(f"checkpoint {show(directory)} lacks tensor {name} (not {spec.name}, or incomplete)")
        if entry.shape != tuple(shape):
            raise ShardsimError(f"checkpoint {show(directory)}: {name} is {list(entry.shape)}, {spec.name} has "
                                f"{list(shape)}: not this model")
        if SAFETENSORS_DTYPES.get(entry.dtype) != dtype:  # bf16, or fp32 where the published checkpoint has it
            raise ShardsimError(f"checkpoint {show(directory)}: {name} is {entry.dtype}; validation runs {dtype}")


def checksum(directory: Path) -> str:
    """SHA-256 over every shard's header and the first and last MiB of its data (the index order)."""
    digest = hashlib.sha256()
    for name in _shards(directory):
        path = directory / name
        with open(path, "rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            digest.update(handle.read(length))
            digest.update(handle.read(SAMPLE_BYTES))
            size = path.stat().st_size
            handle.seek(max(8 + length, size - SAMPLE_BYTES))
            digest.update(handle.read(SAMPLE_BYTES))
    return digest.hexdigest()
