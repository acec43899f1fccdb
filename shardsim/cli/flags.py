"""The flags each command takes, read from its Typer signature (the one definition of its options), so that a
flag of another command can be refused by name before click sees it (``cli.train_alias``)."""

from __future__ import annotations

import importlib
import typing

COMMAND_FUNCTIONS = {"plan": ("shardsim.cli.plan", "plan"), "train": ("shardsim.cli.train", "train")}


def command_flags(command: str) -> frozenset[str]:
    """Every ``--flag`` of ``command``'s options."""
    module, name = COMMAND_FUNCTIONS[command]
    func = getattr(importlib.import_module(module), name)
    flags: set[str] = set()
    for hint in typing.get_type_hints(func, include_extras=True).values():
        for meta in getattr(hint, "__metadata__", ()):
            # typer.Option("--tp", …) keeps its first name in ``default`` and any further ones in ``param_decls``
            decls = [getattr(meta, "default", None), *(getattr(meta, "param_decls", None) or ())]
            flags.update(d for d in decls if isinstance(d, str) and d.startswith("--"))
    if command == "plan":  # each engine's own knobs, read from plan's extra arguments (options.ENGINE_KNOBS)
        from shardsim.cli.options import ENGINE_KNOBS

        flags.update(d for option in ENGINE_KNOBS.values() for d in str(option.__metadata__[0].default).split("/"))
    return frozenset(flags)
