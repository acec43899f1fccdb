"""Reading YAML data files safely, and reporting a bad field with its file, line and field name."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from shardsim.errors import ShardsimError


def show(path: Path) -> str:
    """The path relative to the working directory when it lies below it, as the user would type it."""
    full, cwd = path.resolve(), Path.cwd().resolve()
    return str(full.relative_to(cwd)) if full.is_relative_to(cwd) else str(path)


@dataclass(frozen=True, slots=True)
class YamlDocument:
    """A parsed YAML file: its data, and the node tree (composed lazily) that maps fields back to lines."""

    data: Any
    node: Any


def read_yaml(path: Path) -> YamlDocument:
    """A YAML file read safely: its data and the node tree that maps error locations back to line numbers."""
    import yaml
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ShardsimError(f"{show(path)}: cannot read file: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        # Fast path: libyaml's C loader when present. The node tree (for line numbers) is composed only when a
        # validation error needs it (``_LazyNode``): composing in pure Python costs ~60 ms per catalog.
        fast = getattr(yaml, "CSafeLoader", None)
        if fast is not None:
            try:
                return YamlDocument(yaml.load(text, Loader=fast), _LazyNode(text))
            except (yaml.YAMLError, RecursionError):
                pass  # let the pure-Python loader produce the error with its marks
        loader = yaml.SafeLoader(text)  # its reader already rejects unprintable characters
        node = loader.get_single_node()
        return YamlDocument(loader.construct_document(node) if node is not None else None, node)
    except (yaml.YAMLError, RecursionError) as exc:  # RecursionError: absurdly deep nesting
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f" line {mark.line + 1}:" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ShardsimError(f"{show(path)}:{where} invalid YAML: {problem}") from None


class _LazyNode:
    """A YAML text whose node tree is composed on first use."""

    def __init__(self, text: str):
        self.text = text

    def compose(self) -> Any:
        import yaml

        try:
            return yaml.SafeLoader(self.text).get_single_node()
        except (yaml.YAMLError, RecursionError):
            return None


def line_of(node: Any, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the key at ``loc`` (a pydantic error location) in a composed YAML tree."""
    if isinstance(node, _LazyNode):
        node = node.compose()
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


