"""Each engine's own knobs on ``plan``'s command line, read from the extra arguments by the table
``options.ENGINE_KNOBS`` (the option, its help and its type defined once there), so that ``plan`` declares only what
every plan takes and an engine's knobs come with the engine (``plan --engine NAME --help`` lists them).

Values are checked as click checks a declared option (whole numbers through ``options.whole_number``, floats,
one value per flag, ``--flag/--no-flag`` pairs), and every refusal is one line.
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable, Optional

from shardsim.errors import ShardsimError


@dataclass(frozen=True)
class KnobFlag:
    field: str
    kind: type  # int, float, str or bool
    parser: Optional[Callable[[str], Any]]
    bool_value: bool = True  # for a flag: the value it sets
    metavar: str = ""
    help: str = ""


@lru_cache(maxsize=1)
def flag_table() -> dict[str, KnobFlag]:
    """Every engine knob's flag (both spellings of a ``--x/--no-x`` pair) → how to read it."""
    from shardsim.cli.options import ENGINE_KNOBS

    table: dict[str, KnobFlag] = {}
    for field, option in ENGINE_KNOBS.items():
        base = typing.get_args(option)[0]
        kinds = [k for k in typing.get_args(base) if k is not type(None)] or [base]
        meta = option.__metadata__[0]
        decls = str(meta.default).split("/")
        for i, decl in enumerate(decls):
            table[decl] = KnobFlag(field, kinds[0], getattr(meta, "parser", None), bool_value=i == 0,
                                   metavar=meta.metavar or "", help=meta.help or "")
    return table


def help_records() -> list[tuple[str, str]]:
    """(flags, help) of every engine knob, as a help page lists them."""
    from shardsim.cli.options import ENGINE_KNOBS

    out = []
    for option in ENGINE_KNOBS.values():
        meta = option.__metadata__[0]
        out.append((f"{meta.default} {meta.metavar or ''}".strip(), meta.help or ""))
    return out


def parse_engine_flags(args: list[str]) -> dict[str, Any]:
    """The engine knobs among ``args`` by field name; anything else is refused in one line."""
    table, out, i = flag_table(), {}, 0
    while i < len(args):
        token = args[i]
        if not token.startswith("--"):
            raise ShardsimError(f"Got unexpected extra argument ({token})")
        name, eq, value = token.partition("=")
        flag = table.get(name)
        if flag is None:
            from shardsim.cli.flags import command_flags

            if name in command_flags("train"):
                raise ShardsimError(f"{name} does nothing without --train; it is a training option")
            raise ShardsimError(f"No such option: {name}")
        if flag.kind is bool:
            if eq:
                raise ShardsimError(f"Option '{name}' does not take a value.")
            out[flag.field] = flag.bool_value
        else:
            if not eq:
                i += 1
                if i >= len(args):
                    raise ShardsimError(f"Option '{name}' requires an argument.")
                value = args[i]
            out[flag.field] = _value(name, value, flag)
        i += 1
    return out


def _value(name: str, text: str, flag: KnobFlag) -> Any:
    try:
        if flag.parser is not None:
            return flag.parser(text)
        return flag.kind(text)
    except Exception as exc:  # ValueError of int()/float(), or click's BadParameter of options.whole_number
        if not isinstance(exc, (ValueError, TypeError)) and not hasattr(exc, "format_message"):
            raise
        reason = getattr(exc, "message", None) or f"{text[:40]!r} is not a valid {flag.kind.__name__}."
        raise ShardsimError(f"Invalid value for '{name}': {reason}") from None
