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
