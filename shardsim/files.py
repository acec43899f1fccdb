"""Reading the user's input files safely: the one gate every config.json, YAML, JSONL and safetensors header
passes through.

Before parsing: regular files only (a FIFO, a directory or ``/dev/zero`` is refused, not read), and a size limit per
kind of file. JSON: nesting depth, integer length and non-finite numbers (``NaN``, ``Infinity``) bounded or refused.
YAML: the safe loader only, duplicate keys refused with their line, anchors/aliases bounded by the number of nodes
the document expands to (a billion-laughs file is refused before it is built), nesting depth bounded. Every failure
is one ``ShardsimError`` line that names the file; the limits are in ``shardsim.constants`` and name themselves.
Binary files (a safetensors shard) are read by byte range only (``read_bytes``), never whole.
"""

from __future__ import annotations

import json
import math
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shardsim.constants import MAX_INPUT_DEPTH, MAX_INT_DIGITS, MAX_YAML_NODES
from shardsim.errors import ShardsimError


def show(path: Path | str) -> str:
    """The path relative to the working directory when it lies below it, as the user would type it."""
    path = Path(path)
    try:
        full, cwd = path.resolve(), Path.cwd().resolve()
    except (OSError, RuntimeError):
        return str(path)
    return str(full.relative_to(cwd)) if full.is_relative_to(cwd) else str(path)


def is_file(path: Path | str) -> bool:
    """``Path.is_file`` that answers False for names the OS refuses (too long, NUL bytes) instead of raising."""
    try:
        return Path(path).is_file()
    except (OSError, ValueError):
        return False


def is_dir(path: Path | str) -> bool:
    try:
        return Path(path).is_dir()
    except (OSError, ValueError):
        return False


def exists(path: Path | str) -> bool:
    try:
        return Path(path).exists()
    except (OSError, ValueError):
        return False


def regular_file_size(path: Path | str, what: str) -> int:
    """The size in bytes of a regular file; not found, unreadable or not a regular file is one error line."""
    p = Path(path)
    try:
        info = os.stat(p)
    except FileNotFoundError:
        raise ShardsimError(f"{what} {str(p)!r} not found") from None
    except (OSError, ValueError) as exc:
        raise ShardsimError(f"{what} {str(p)[:200]!r}: cannot read it: {getattr(exc, 'strerror', None) or exc}") from None
    if not stat.S_ISREG(info.st_mode):
        raise ShardsimError(f"{what} {show(p)!r} is not a regular file (a directory, FIFO or device); give a file")
    return info.st_size


def read_bytes(path: Path | str, what: str, offset: int, length: int) -> bytes:
    """Exactly ``length`` bytes of a regular file from ``offset`` (the caller bounds ``length``); a file that ends
    first is refused as truncated."""
    p = Path(path)
    regular_file_size(p, what)
    try:
        with open(p, "rb") as handle:
            handle.seek(offset)
            raw = handle.read(length)
    except OSError as exc:
        raise ShardsimError(f"{what} {show(p)!r}: cannot read it: {exc.strerror or exc}") from None
    if len(raw) < length:
        raise ShardsimError(f"{what} {show(p)!r} is truncated: it ends {len(raw):,} bytes after byte {offset:,}, "
                            f"{length:,} were expected")
    return raw


def read_text(path: Path | str, what: str, max_bytes: int) -> str:
    """The text of a regular file of at most ``max_bytes``, UTF-8; ``what`` names the kind of file in errors."""
    p = Path(path)
    size = regular_file_size(p, what)
    if size > max_bytes:
        raise ShardsimError(f"{what} {show(p)!r} is {size:,} bytes; the limit for a {what} is {max_bytes:,}")
    try:
        with open(p, "rb") as handle:
            raw = handle.read(max_bytes + 1)
    except OSError as exc:
        raise ShardsimError(f"{what} {show(p)!r}: cannot read it: {exc.strerror or exc}") from None
    if len(raw) > max_bytes:  # it grew while being read
        raise ShardsimError(f"{what} {show(p)!r} is over the {max_bytes:,}-byte limit for a {what}")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ShardsimError(f"{what} {show(p)!r} is not UTF-8 text (byte {exc.start})") from None


def _bounded_int(text: str) -> int:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of {len(text)} digits (limit: {MAX_INT_DIGITS} digits)")
    return int(text)


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"the number {text[:40]} is not finite")
    return value


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number shardsim accepts (give a finite number)")


def _limit_of(limit: int) -> str:
    """The reason a depth limit names: the general one of input files, or none (a format's own, e.g. 3 levels)."""
    return " (the limit for input files)" if limit == MAX_INPUT_DEPTH else ""


def check_depth(value: Any, source: str, limit: int = MAX_INPUT_DEPTH) -> None:
    """Refuse containers nested deeper than ``limit`` (checked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                raise ShardsimError(f"{source}: nested deeper than {limit} levels{_limit_of(limit)}")
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict:
    keys = [k for k, _ in pairs]
    if len(set(keys)) != len(keys):
        twice = next(k for k in keys if keys.count(k) > 1)
        raise ValueError(f"key {twice!r:.60} appears twice in one object; give each key once")
    return dict(pairs)


def parse_json(text: str, source: str, depth: int = MAX_INPUT_DEPTH) -> Any:
    """JSON with bounded integers, finite numbers only, unique keys and nesting bounded by ``depth`` (a format's
    own, e.g. a safetensors header's 3 levels); one error line naming ``source``, never a RecursionError."""
    try:
        value = json.loads(text, parse_int=_bounded_int, parse_float=_finite_float, parse_constant=_refuse_constant,
                           object_pairs_hook=_unique_keys)
    except json.JSONDecodeError as exc:
        raise ShardsimError(f"{source}: malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except RecursionError:
        raise ShardsimError(f"{source}: nested deeper than {depth} levels{_limit_of(depth)}") from None
    except ValueError as exc:
        raise ShardsimError(f"{source}: {exc}") from None
    check_depth(value, source, depth)
    return value


def read_json(path: Path | str, what: str, max_bytes: int) -> Any:
    return parse_json(read_text(path, what, max_bytes), show(path))


@dataclass(frozen=True, slots=True)
class YamlDocument:
    """A parsed YAML file: its data, and the node tree that maps fields back to lines."""

    data: Any
    node: Any


def _check_nodes(node: Any, source: str) -> None:
    """Duplicate mapping keys, the size the document expands to (aliases counted each time they are used) and the
    nesting depth, walked without recursion and without expanding anything."""
    expanded: dict[int, int] = {}
    order, stack, seen = [], [(node, 1)], set()
    while stack:
        item, depth = stack.pop()
        if depth > MAX_INPUT_DEPTH:
            raise ShardsimError(f"{source}: nested deeper than {MAX_INPUT_DEPTH} levels (the limit for input files)")
        if id(item) in seen:
            continue
        seen.add(id(item))
        order.append(item)
        if item.id == "mapping":
            keys: dict[str, int] = {}
            for key, _ in item.value:
                text = str(key.value)
                if key.id == "scalar" and text in keys:
                    raise ShardsimError(f"{source}: line {key.start_mark.line + 1}: key {text!r} appears twice "
                                        f"(first at line {keys[text]}); give each key once")
                keys[text] = key.start_mark.line + 1
            stack.extend((child, depth + 1) for pair in item.value for child in pair)
        elif item.id == "sequence":
            stack.extend((child, depth + 1) for child in item.value)
    for item in reversed(order):  # children before parents
        if item.id == "mapping":
            size = 1 + sum(expanded.get(id(k), 1) + expanded.get(id(v), 1) for k, v in item.value)
        elif item.id == "sequence":
            size = 1 + sum(expanded.get(id(c), 1) for c in item.value)
        else:
            size = 1
        expanded[id(item)] = size
        if size > MAX_YAML_NODES:
            raise ShardsimError(f"{source}: the document expands to more than {MAX_YAML_NODES:,} nodes through its "
                                "aliases (the limit for input files); write the values out")


def parse_yaml(text: str, source: str) -> YamlDocument:
    """YAML through the safe loader (libyaml's parser when present), checked by ``_check_nodes`` before it is
    built into Python objects."""
    import yaml

    loader_cls = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        loader = loader_cls(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return YamlDocument(None, None)
            _check_nodes(node, source)
            return YamlDocument(loader.construct_document(node), node)
        finally:
            getattr(loader, "dispose", lambda: None)()
    except (yaml.YAMLError, RecursionError) as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f" line {mark.line + 1}:" if mark is not None else ""
        problem = getattr(exc, "problem", None) or (str(exc).splitlines() or ["nested too deeply"])[0]
        raise ShardsimError(f"{source}:{where} invalid YAML: {problem}") from None


def read_yaml(path: Path | str, what: str, max_bytes: int) -> YamlDocument:
    return parse_yaml(read_text(path, what, max_bytes), show(path))
