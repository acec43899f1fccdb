"""A downloaded checkpoint folder given as MODEL: its ``config.json``, and the exact bytes of its weights read from
the safetensors headers alone (never the tensor data), to hold against shardsim's own weight total.

A safetensors file is an 8-byte little-endian header length N, N bytes of UTF-8 JSON ``{tensor name: {"dtype",
"shape", "data_offsets": [begin, end]}, "__metadata__": {...}}``, then the data (github.com/huggingface/safetensors
README, "Format"). The shards are the files ``model.safetensors.index.json`` names in its ``weight_map``, else every
``*.safetensors`` file of the folder. A tensor's bytes are its element count × its dtype's width (as hf-mem counts
them); each is checked against its ``data_offsets`` and the file's length, so a truncated shard is refused. Every
read goes through ``shardsim.files``; every refusal is one ``ShardsimError`` line naming the file.

May import: shardsim.core, shardsim.files, shardsim.constants, shardsim.errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shardsim.constants import (
    MAX_CHECKPOINT_INDEX_BYTES,
    MAX_SAFETENSORS_HEADER_BYTES,
    MAX_SAFETENSORS_HEADER_DEPTH,
    SAFETENSORS_DTYPE_BITS,
    SAFETENSORS_LENGTH_BYTES,
)
from shardsim.errors import ShardsimError
from shardsim.files import exists, is_dir, parse_json, read_bytes, read_json, regular_file_size, show

# The index file's name: transformers' SAFE_WEIGHTS_INDEX_NAME (transformers/utils/__init__.py).
INDEX_NAME = "model.safetensors.index.json"
# The header's one key that is not a tensor (safetensors README, "Format").
METADATA_KEY = "__metadata__"
SHARD_WHAT = "safetensors file"


@dataclass(frozen=True, slots=True)
class CheckpointFacts:
    """What the safetensors headers of a checkpoint folder say: its shard files, tensors and exact weight bytes."""

    path: str
    files: int
    tensors: int
    bytes: int


@dataclass(frozen=True, slots=True)
class CheckpointCheck:
    """The headers' total held against shardsim's weight total for the whole model (``PlanReport.weight_bytes``)."""

    facts: CheckpointFacts
    planned_bytes: int

    @property
    def match(self) -> bool:
        return self.facts.bytes == self.planned_bytes

    def to_dict(self) -> dict:
        f = self.facts
        return {"path": f.path, "files": f.files, "tensors": f.tensors, "bytes": f.bytes,
                "planned_bytes": self.planned_bytes, "match": self.match}

    def warning(self) -> str | None:
        if self.match:
            return None
        return (f"the checkpoint's safetensors headers hold {self.facts.bytes:,} B of weights but shardsim plans "
                f"{self.planned_bytes:,} B ({self.planned_bytes - self.facts.bytes:+,} B)")


def checkpoint_folder(name: str | None) -> Path | None:
    """The folder a MODEL argument names, or None when it names no folder (a preset or Hugging Face id)."""
    return Path(name) if name and is_dir(name) else None


def folder_config(folder: Path) -> Path:
    """The ``config.json`` of a checkpoint folder (with its ``quantization_config``); a folder without one is
    refused."""
    if not exists(folder / "config.json"):
        raise ShardsimError(f"folder {show(folder)!r} has no config.json; a checkpoint folder holds the model's "
                            "config.json and its *.safetensors files")
    return folder / "config.json"


def shard_files(folder: Path) -> list[Path]:
    """The safetensors files of a checkpoint: those its index names, else every ``*.safetensors`` of the folder."""
    index = folder / INDEX_NAME
    if exists(index):
        return _indexed_files(folder, read_json(index, "checkpoint index", MAX_CHECKPOINT_INDEX_BYTES))
    try:
        files = sorted(p for p in folder.glob("*.safetensors"))
    except OSError as exc:
        raise ShardsimError(f"folder {show(folder)!r}: cannot list it: {exc.strerror or exc}") from None
    if not files:
        raise ShardsimError(f"folder {show(folder)!r} has no *.safetensors files; give --config "
                            f"{show(folder)} to plan from its config.json alone")
    return files


def _indexed_files(folder: Path, index: Any) -> list[Path]:
    source = show(folder / INDEX_NAME)
    weight_map = index.get("weight_map") if isinstance(index, dict) else None
    if not isinstance(weight_map, dict) or not weight_map:
        raise ShardsimError(f"{source}: expected an object with a non-empty \"weight_map\" (tensor name -> file)")
    names: list[str] = []
    for file_name in weight_map.values():
        if not isinstance(file_name, str) or Path(file_name).name != file_name or file_name in ("", ".", ".."):
            raise ShardsimError(f"{source}: weight_map names {str(file_name)[:80]!r}; give plain file names of "
                                "the same folder")
        if file_name not in names:
            names.append(file_name)
    return [folder / name for name in sorted(names)]


@dataclass(frozen=True, slots=True)
class SafetensorsHeader:
    """One shard's parsed header and the bytes of data that follow it in the file."""

    entries: dict
    data_bytes: int


def read_header(path: Path) -> SafetensorsHeader:
    """The JSON header of one safetensors file, bounded: its length word, then at most the header-size limit."""
    source = f"{show(path)} (safetensors header)"
    size = regular_file_size(path, SHARD_WHAT)
    if size < SAFETENSORS_LENGTH_BYTES:
        raise ShardsimError(f"{SHARD_WHAT} {show(path)!r} is truncated: {size} bytes, shorter than the "
                            f"{SAFETENSORS_LENGTH_BYTES}-byte header length that starts every safetensors file")
    length = int.from_bytes(read_bytes(path, SHARD_WHAT, 0, SAFETENSORS_LENGTH_BYTES), "little")
    if length > MAX_SAFETENSORS_HEADER_BYTES:
        raise ShardsimError(f"{source}: header length {length:,} bytes is over the {MAX_SAFETENSORS_HEADER_BYTES:,}"
                            "-byte limit (safetensors' own); not a safetensors file")
    if SAFETENSORS_LENGTH_BYTES + length > size:
        raise ShardsimError(f"{source}: header length {length:,} bytes runs past the end of the file "
                            f"({size:,} bytes); the file is truncated or not a safetensors file")
    raw = read_bytes(path, SHARD_WHAT, SAFETENSORS_LENGTH_BYTES, length)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ShardsimError(f"{source}: not UTF-8 text (byte {exc.start}); not a safetensors file") from None
    header = parse_json(text, source, MAX_SAFETENSORS_HEADER_DEPTH)
    if not isinstance(header, dict):
        raise ShardsimError(f"{source}: expected a JSON object of tensors; not a safetensors file")
    return SafetensorsHeader(header, size - SAFETENSORS_LENGTH_BYTES - length)


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def tensor_bytes(name: str, entry: Any, source: str) -> tuple[int, int]:
    """The exact bytes of one header entry (element count × dtype width) and where its data ends, each field
    checked; a span that disagrees with dtype × shape is refused."""
    from shardsim.core.tensors import numel_of

    what = f"{source}: tensor {name[:80]!r}"
    if not isinstance(entry, dict):
        raise ShardsimError(f"{what}: expected an object with dtype, shape and data_offsets")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in SAFETENSORS_DTYPE_BITS:
        raise ShardsimError(f"{what}: dtype {str(dtype)[:20]!r} is not a safetensors dtype; known: "
                            f"{', '.join(SAFETENSORS_DTYPE_BITS)}")
    if not isinstance(shape, list) or not all(_whole(d) for d in shape):
        raise ShardsimError(f"{what}: shape must be a list of whole numbers")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_whole(o) for o in offsets)
            and offsets[0] <= offsets[1]):
        raise ShardsimError(f"{what}: data_offsets must be [begin, end] with 0 <= begin <= end")
    bits = numel_of(tuple(shape)) * SAFETENSORS_DTYPE_BITS[dtype]
    if bits % 8:
        raise ShardsimError(f"{what}: {dtype} × shape {shape} is {bits} bits, not a whole number of bytes")
    span = offsets[1] - offsets[0]
    if span != bits // 8:
        raise ShardsimError(f"{what}: data_offsets span {span:,} bytes but {dtype} × shape {shape} needs "
                            f"{bits // 8:,}")
    return bits // 8, offsets[1]


def _shard_tally(path: Path, seen: set[str]) -> tuple[int, int]:
    """Tensors and bytes of one shard; a tensor named twice in the checkpoint is refused."""
    header = read_header(path)
    source = show(path)
    total = end = tensors = 0
    for name, entry in header.entries.items():
        if name == METADATA_KEY:
            continue
        if name in seen:
            raise ShardsimError(f"{source}: tensor {name[:80]!r} is also in another shard; a checkpoint holds "
                                "each tensor once")
        seen.add(name)
        size, stop = tensor_bytes(name, entry, source)
        total, end, tensors = total + size, max(end, stop), tensors + 1
    if end > header.data_bytes:
        raise ShardsimError(f"{SHARD_WHAT} {source!r} is truncated: its header places tensor data up to byte "
                            f"{end:,} after the header, but only {header.data_bytes:,} bytes follow it")
    return tensors, total


def read_checkpoint(folder: Path) -> CheckpointFacts:
    """The files, tensors and exact bytes of every shard of a checkpoint folder, from the headers alone."""
    files = shard_files(folder)
    seen: set[str] = set()
    tensors = total = 0
    for path in files:
        count, size = _shard_tally(path, seen)
        tensors, total = tensors + count, total + size
    return CheckpointFacts(path=show(folder), files=len(files), tensors=tensors, bytes=total)
