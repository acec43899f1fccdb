"""The ``shardsim`` command: thin Typer commands over the planner's records, one module per command group.

Options are defined once (``options``), their shared rules once (``common``). Only the module of the command being
run is imported (``shardsim plan`` starts without the review, torch or networkx). Bad input of any kind ends in
one line on stderr and exit code 2.

May import: every shardsim package (inside the commands, so start-up stays light).
"""

from __future__ import annotations

import importlib
import os
import sys

# shardsim loads no pydantic plugins; skipping their entry-point scan saves ~10 ms of every command's start-up.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")


def _no_plugin_loader() -> None:
    """With every plugin disabled, pydantic's ``plugin._loader.get_plugins`` returns nothing
    (pydantic/plugin/_loader.py@2.x); the module still imports ``importlib.metadata`` (and email, zipfile, csv) at
    its top, 15–40 ms of a cold start. Registering a module with the same answer skips that import."""
    import sys
    import types

    if os.environ.get("PYDANTIC_DISABLE_PLUGINS") == "__all__" and "pydantic.plugin._loader" not in sys.modules:
        loader = types.ModuleType("pydantic.plugin._loader")
        loader.get_plugins = lambda: ()
        sys.modules["pydantic.plugin._loader"] = loader


_no_plugin_loader()

import typer  # noqa: E402

from shardsim.errors import ShardsimError  # noqa: E402

COMMAND_MODULES = {
    "plan": "plan", "train": "train", "models": "catalog", "gpus": "catalog", "clusters": "catalog", "calibrate": "calibrate",
    "validate": "validate", "review": "capacity", "sweep": "capacity", "report": "capacity", "speed": "speed",
}
"""Command → the module under shardsim.cli that defines it."""


def build_app(command: str | None = None) -> typer.Typer:
    """The Typer app with the command group of ``command`` registered (every group for --help or an unknown
    name, so that help lists them all and typos get suggestions)."""
    app = typer.Typer(add_completion=True, no_args_is_help=True, pretty_exceptions_enable=False, rich_markup_mode=None,
                      context_settings={"help_option_names": ["-h", "--help"]},
                      help="Per-GPU memory of Qwen3 models sharded over TP × PP × DP × EP, exact where bytes are knowable. "
                           "shardsim --version; shardsim --install-completion adds tab completion to your shell.")
    app.callback()(_group)  # keeps the app a command group even when one command is registered
    wanted = [COMMAND_MODULES[command]] if command in COMMAND_MODULES else dict.fromkeys(COMMAND_MODULES.values())
    for name in wanted:
        importlib.import_module(f"shardsim.cli.{name}").register(app)
    return app


REPEATABLE = ("--quant", "--kv-dtype", "--cluster", "--model")
"""Options a review compares several values of (a command that takes one refuses a second: ``common.single``)."""


def check_args(args: list[str]) -> None:
    """Refuse what click would silently accept: an option given twice (the last would win) and an empty value
    (the default would be used)."""
    seen: set[str] = set()
    previous = ""
    for token in args:
        if token == "--":
            break
        if token.startswith("--"):
            name, eq, value = token.partition("=")
            if eq and not value.strip():
                raise ShardsimError(f"{name} has an empty value; give a value or leave the option out")
            if name in seen and name not in REPEATABLE:
                raise ShardsimError(f"{name} is given twice; give it once")
            seen.add(name)
        elif not token.strip():
            what = f"{previous} has an empty value" if previous.startswith("--") else "an empty argument"
            raise ShardsimError(f"{what}; give a value or leave it out")
        previous = token


def train_alias(args: list[str]) -> list[str]:
    """``plan … --train`` is ``train …``. A flag of the other command does nothing in this one: refused with the
    command it belongs to (``plan --context … --train``, ``plan --framework …``)."""
    if not args or args[0] != "plan":
        return args
    head = args[: args.index("--")] if "--" in args else args
    given = [t.partition("=")[0] for t in head if t.startswith("--")]
    if "--train" not in given:
        return args  # a training flag given to plan is refused where plan meets an unknown flag (cli.engine_flags)
    from shardsim.cli.flags import command_flags

    serving, training = command_flags("plan"), command_flags("train")
    for flag in given:
        if flag == "--batch":
            raise ShardsimError("--batch does nothing with --train; use --micro-batch")
        if flag in serving and flag not in training:
            raise ShardsimError(f"{flag} does nothing with --train; it is a serving option")
    rest = [t for t in args[1:] if t != "--train"]
    return ["train", *rest]


def _group() -> None:
    """Per-GPU memory of Qwen3 models sharded over TP × PP × DP × EP, exact where bytes are knowable."""


def _one_line(message: str) -> str:
    return " ".join(str(message).split())


def main(argv: list[str] | None = None) -> int:
    """Console entry point: run the app, turn every input error into one line on stderr and exit code 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args in (["--version"], ["-V"]):
        from shardsim import __version__

        sys.stdout.write(f"shardsim {__version__}\n")
        return 0
    try:
        check_args(args)
    except ShardsimError as exc:
        sys.stderr.write(f"shardsim: error: {_one_line(exc)}\n")
        return 2
    try:
        args = train_alias(args)
    except ShardsimError as exc:
        sys.stderr.write(f"shardsim: error: {_one_line(exc)}\n")
        return 2
    app = build_app(args[0] if args else None)
    from shardsim.cli import help as help_pages

    help_pages.ARGV[:] = args
    try:
        result = app(args=args, prog_name="shardsim", standalone_mode=False)
    except ShardsimError as exc:
        sys.stderr.write(f"shardsim: error: {_one_line(exc)}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("shardsim: interrupted\n")
        return 130
    except Exception as exc:  # click's usage errors (bad option, non-integer value …) carry format_message()
        if hasattr(exc, "format_message") and hasattr(exc, "exit_code"):
            sys.stderr.write(f"shardsim: error: {_one_line(exc.format_message())}\n")
            return 2
        if type(exc).__name__ == "Abort":
            return 1
        raise
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
