"""Help pages people can read on an 80-column terminal: the command's text and examples first, then its options
grouped by concern (the ``rich_help_panel`` each option is given in ``cli.options``), one line per option where
the text allows.

Engine knobs are many and each belongs to one engine (its help starts with the engine's name): ``plan --help``
lists the knobs every engine shares and one line per engine; ``plan --engine vllm --help`` lists vLLM's knobs.
"""

from __future__ import annotations

from typer.core import TyperCommand

OTHER = "Other options"
ENGINE_PREFIXES = {"vllm": "vLLM", "sglang": "SGLang", "hf": "hf:", "accelerate": "accelerate:"}
"""The start of the help text of each engine's own knobs (``cli.options``)."""
ARGV: list[str] = []
"""The command line being run (``cli.main`` sets it): the help shows the knobs of the ``--engine`` it names."""


def _engine_asked() -> str | None:
    for i, token in enumerate(ARGV):
        if token == "--engine" and i + 1 < len(ARGV):
            return ARGV[i + 1]
        if token.startswith("--engine="):
            return token.partition("=")[2]
    return None


def _engine_of(help_text: str) -> str | None:
    return next((e for e, prefix in ENGINE_PREFIXES.items() if help_text.startswith(prefix)), None)


class GroupedCommand(TyperCommand):
    """A Typer command whose help lists its options under one heading per concern, in the order the concerns
    first appear in the command's signature."""

    def format_options(self, ctx, formatter) -> None:
        groups: dict[str, list[tuple[str, str]]] = {}
        asked = _engine_asked()
        hidden: dict[str, int] = {}
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                record = (param.metavar or param.name.upper(), getattr(param, "help", "") or "")
            else:
                record = param.get_help_record(ctx)
            if record is None:
                continue
            owner = _engine_of(record[1])
            if owner is not None and owner != asked:
                hidden[owner] = hidden.get(owner, 0) + 1
                continue
            # options without a heading (--help) join the last group
            panel = getattr(param, "rich_help_panel", None) or (list(groups)[-1] if groups else OTHER)
            groups.setdefault(panel, []).append(record)
        if self.context_settings.get("allow_extra_args"):  # each engine's own knobs (cli.engine_flags)
            from shardsim.cli.engine_flags import help_records

            for record in help_records():
                owner = _engine_of(record[1])
                if owner != asked:
                    hidden[owner] = hidden.get(owner, 0) + 1
                else:
                    groups.setdefault(f"{ENGINE_PREFIXES[owner].rstrip(':')} knobs (--engine {owner})", []).append(record)
        for panel, records in groups.items():
            with formatter.section(panel):
                formatter.write_dl(records, col_max=30, col_spacing=2)
        if hidden:
            with formatter.section("Each engine's own knobs"):
                formatter.write_dl([(f"--engine {e} --help", f"{n} knobs of {ENGINE_PREFIXES[e].rstrip(':')}")
                                    for e, n in hidden.items()], col_max=30, col_spacing=2)
