"""Byte sizes and dtype widths: the only place sizes are spelled and parsed.

A size stays a whole number of bytes (int) everywhere in shardsim until it is printed.
"""

from __future__ import annotations

import re

from shardsim.errors import ShardsimError

KiB = 1024
MiB = 1024**2
GiB = 1024**3
TiB = 1024**4
KB = 1000
MB = 1000**2
GB = 1000**3
TB = 1000**4

# Bytes per element of each storage dtype shardsim knows.
DTYPE_BYTES: dict[str, int] = {
    "fp32": 4,
    "bf16": 2,
    "fp16": 2,
    "fp8": 1,
    "int32": 4,
    "int8": 1,
}

# Accepted spellings -> canonical dtype name.
DTYPE_ALIASES: dict[str, str] = {
    "float32": "fp32", "fp32": "fp32", "f32": "fp32",
    "bfloat16": "bf16", "bf16": "bf16",
    "float16": "fp16", "fp16": "fp16", "half": "fp16", "f16": "fp16",
    "fp8": "fp8", "fp8_e4m3": "fp8", "float8_e4m3fn": "fp8", "e4m3": "fp8", "fp8_e5m2": "fp8",
}

_SIZE_UNITS = {
    "": 1, "b": 1,
    "kib": KiB, "mib": MiB, "gib": GiB, "tib": TiB,
    "kb": KB, "mb": MB, "gb": GB, "tb": TB,
    "k": KiB, "m": MiB, "g": GiB, "t": TiB,
}
_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*$")


COUNT_SUFFIXES = {"": 1, "k": 1024, "K": 1024, "Ki": 1024, "m": 1024 ** 2, "M": 1024 ** 2, "Mi": 1024 ** 2}
"""Token counts as people write them: 8k = 8K = 8Ki = 8,192 (the convention of context lengths: Qwen3's "32K"
context is 32,768 tokens, config.json max_position_embeddings), 1M = 1,048,576."""
_COUNT_RE = re.compile(r"-?(0|[1-9][0-9]{0,17})(k|K|Ki|m|M|Mi)?")


def parse_count(text: str | int) -> int | None:
    """A whole number, optionally with a k/K/Ki or m/M/Mi suffix (``COUNT_SUFFIXES``); None when it is not one (no
    '1_000', '+8', ' 8', '08' or '1.5k')."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    m = _COUNT_RE.fullmatch(str(text))
    if not m:
        return None
    return int(str(text)[: m.end(1)]) * COUNT_SUFFIXES[m.group(2) or ""]


def canonical_dtype(name: str, accepted: tuple[str, ...] = ("bf16", "fp16", "fp32")) -> str:
    """Map a dtype spelling (``bfloat16``, ``bf16`` ...) to its canonical name, or refuse it."""
    canon = DTYPE_ALIASES.get(str(name).strip().lower())
    if canon is None or canon not in accepted:
        raise ShardsimError(f"unknown dtype {name!r}; accepted: {', '.join(accepted)}")
    return canon


def parse_size(text: str) -> int:
    """Parse ``80GiB``, ``46068MiB``, ``95.01GiB``, ``80GB`` into bytes. A unit is required: a bare ``80`` would
    otherwise be read as 80 bytes.

    Binary units (KiB, MiB, GiB, TiB) are powers of 1024, decimal ones (KB, MB, GB, TB) powers of 1000;
    the bare letters K/M/G/T are read as binary, as nvidia-smi and the CUDA runtime report them.
    """
    match = _SIZE_RE.match(str(text)[:64])
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _SIZE_UNITS or unit in ("", "b"):
        raise ShardsimError(f"cannot read size {text!r}; write a number with a unit, e.g. 80GiB, 46068MiB, 95.01GiB, 80GB")
    number = float(match.group(1))
    if not number < 1e18:
        raise ShardsimError(f"size {text!r:.40} is out of range")
    value = round(number * _SIZE_UNITS[unit])
    if value <= 0:
        raise ShardsimError(f"size {text!r} must be positive")
    return value


def gib_text(n_bytes: int | None) -> str:
    """GiB with two decimals and thousands separators, as every table shows sizes (``–`` for no value)."""
    return "–" if n_bytes is None else f"{n_bytes / GiB:,.2f}"


def format_bytes(n_bytes: int, unit: str = "GiB", digits: int = 2) -> str:
    """Format bytes for people: ``format_bytes(1_192_099_840) == '1.11 GiB'``."""
    scale = {"B": 1, "KiB": KiB, "MiB": MiB, "GiB": GiB, "TiB": TiB, "GB": GB, "MB": MB}[unit]
    if unit == "B":
        return f"{n_bytes:,} B"
    return f"{n_bytes / scale:,.{digits}f} {unit}"


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)


def round_up(a: int, multiple: int) -> int:
    return ceil_div(a, multiple) * multiple
