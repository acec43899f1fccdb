"""What every table shares: identical ranks grouped into one row, sizes in GiB (``units.gib_text``)."""

from __future__ import annotations


def group_runs(items: list, key) -> list[tuple[list, str]]:
    """Consecutive items with equal ``key(item)``, each run with its rank label (``3`` or ``0–7``); items carry
    ``.rank`` or ``["rank"]``. Every per-rank table (plan, engine, validation) groups identical ranks this way."""
    runs: list[list] = []
    keys: list = []
    for item in items:
        k = key(item)
        if runs and keys[-1] == k:
            runs[-1].append(item)
        else:
            runs.append([item])
            keys.append(k)
    rank = (lambda x: x["rank"]) if items and isinstance(items[0], dict) else (lambda x: x.rank)
    return [(run, str(rank(run[0])) if len(run) == 1 else f"{rank(run[0])}–{rank(run[-1])}") for run in runs]


def new_table(columns, left=(), title: str | None = None, no_wrap=()):
    """A table as every command prints it: no outer edge, bold headers, and cells that fold onto a second line when
    the terminal is narrow (80 columns) instead of being clipped with '…'; ``left``: the left-aligned columns (the
    rest are figures, right-aligned); ``no_wrap``: columns kept on one line (short labels)."""
    from rich.table import Table

    table = Table(show_edge=False, header_style="bold", title=title, pad_edge=False)
    for col in columns:
        table.add_column(col, justify="left" if col in left else "right", overflow="fold", no_wrap=col in no_wrap)
    return table
