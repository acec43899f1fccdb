"""Help pages people can read on an 80-column terminal: the command's text and examples first, then its options
grouped by concern (the ``rich_help_panel`` each option is given in ``cli.options``), one line per option where
the text allows."""

from __future__ import annotations

from typer.core import TyperCommand

OTHER = "Other options"


class GroupedCommand(TyperCommand):
    """A Typer command whose help lists its options under one heading per concern, in the order the concerns
    first appear in the command's signature."""

    def format_options(self, ctx, formatter) -> None:
        groups: dict[str, list[tuple[str, str]]] = {}
        for param in self.get_params(ctx):
            if param.param_type_name == "argument":
                record = (param.metavar or param.name.upper(), getattr(param, "help", "") or "")
            else:
                record = param.get_help_record(ctx)
            if record is None:
                continue
            # options without a heading (--help) join the last group
            panel = getattr(param, "rich_help_panel", None) or (list(groups)[-1] if groups else OTHER)
            groups.setdefault(panel, []).append(record)
        for panel, records in groups.items():
            with formatter.section(panel):
                formatter.write_dl(records, col_max=28, col_spacing=2)
