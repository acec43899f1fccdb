"""Reporting a bad field of a YAML data file with its file, line and field name (files are read by
``shardsim.files``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from shardsim.errors import ShardsimError
from shardsim.files import show


def line_of(node: Any, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the key at ``loc`` (a pydantic error location) in a composed YAML tree."""
    line = None
    for key in loc:
        kind = getattr(node, "id", None)
        if kind == "mapping":
            hit = next(((k, v) for k, v in node.value if str(k.value) == str(key)), None)
            if hit is None:
                break
            line, node = hit[0].start_mark.line + 1, hit[1]
        elif kind == "sequence" and isinstance(key, int) and key < len(node.value):
            line, node = node.value[key].start_mark.line + 1, node.value[key]
        else:
            break
    return line


def invalid(path: Path, exc: ValidationError, node: Any, base: tuple[Any, ...] = (), what: str = "") -> ShardsimError:
    """One line: file, line, field and pydantic's reason for the first error (plus a count of the rest)."""
    err = exc.errors()[0]
    loc = tuple(p for p in err["loc"] if p != "LinkSpec")
    line = line_of(node, base + loc) or line_of(node, base)
    parts = [show(path)] + [f"line {line}"] * bool(line) + [what] * bool(what)
    parts += ["field " + repr(".".join(str(p) for p in loc))] * bool(loc)
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return ShardsimError(": ".join(parts + [str(err["msg"]).removeprefix("Value error, ")]) + more)


