"""The page and its building blocks: every text goes through ``esc`` (``html.escape``) unless it is markup built
here (``Raw``); no block refers to anything outside the file.

The page carries a Content-Security-Policy that forbids every fetch (``default-src 'none'``): a browser opening the
report on an air-gapped laptop does not even try the network.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Iterable, Sequence

from shardsim.render.html.style import CSS

CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"
"""The page's policy: inline styles and inline SVG only, nothing loaded, nothing sent."""


class Raw(str):
    """Markup built by this package (a badge, an SVG, a table): put into the page as it is, not escaped again."""


def esc(value) -> str:
    """The text of ``value`` with ``& < > " '`` escaped; markup built here (``Raw``) passes as it is."""
    if isinstance(value, Raw):
        return value
    return html.escape("" if value is None else str(value), quote=True)


def badge(text: str, kind: str = "info") -> Raw:
    """A rounded label: ``ok`` (green), ``warn`` (amber), ``bad`` (red) or ``info`` (blue)."""
    return Raw(f'<span class="badge {esc(kind)}">{esc(text)}</span>')


def code(text: str) -> Raw:
    """A command line to copy, wrapped (never clipped) on screen and in print."""
    return Raw(f'<pre class="cmd">{esc(text)}</pre>')


def para(text, cls: str = "") -> Raw:
    """A paragraph of text (``cls="muted"``: grey)."""
    attr = f' class="{esc(cls)}"' if cls else ""
    return Raw(f"<p{attr}>{esc(text)}</p>")


def notes(items: Iterable) -> Raw:
    """A bulleted list (empty when there is nothing to list)."""
    items = list(items)
    if not items:
        return Raw("")
    return Raw('<ul class="notes">' + "".join(f"<li>{esc(i)}</li>" for i in items) + "</ul>")


def facts(pairs: Iterable[tuple[str, object]]) -> Raw:
    """A two-column list of label → value (values None are left out)."""
    rows = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in pairs if v is not None)
    return Raw(f"<dl>{rows}</dl>")


def card(*parts) -> Raw:
    return Raw('<div class="card">' + "".join(esc(p) for p in parts) + "</div>")


@dataclass(frozen=True)
class Cell:
    """A table cell with a class (``num`` for figures, ``fit``/``nofit``/``here`` for the fit grid) and a tooltip."""

    text: object
    cls: str = ""
    title: str = ""


def table(headers: Sequence[str], rows: Iterable[Sequence], numeric: Iterable[int] = ()) -> Raw:
    """A table in a box that scrolls sideways on a narrow screen (never clipped in print); ``numeric``: the column
    indexes that hold figures (right-aligned). Cells are text, ``Raw`` markup or ``Cell``."""
    numeric = set(numeric)
    head = "".join(f'<th{" class=num" if i in numeric else ""}>{esc(h)}</th>' for i, h in enumerate(headers))
    body = []
    for row in rows:
        cells = []
        for i, value in enumerate(row):
            cell = value if isinstance(value, Cell) else Cell(value)
            cls = " ".join(c for c in (("num" if i in numeric else ""), cell.cls) if c)
            attrs = (f' class="{esc(cls)}"' if cls else "") + (f' title="{esc(cell.title)}"' if cell.title else "")
            cells.append(f"<td{attrs}>{esc(cell.text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return Raw(f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>')


@dataclass(frozen=True)
class Section:
    """One ``<section id=…>`` of the report: its id (the anchor the contents list and the tests use), heading, one
    line saying what it shows and where the figures come from, and its body."""

    id: str
    title: str
    lead: str
    body: Sequence

    def render(self) -> str:
        inner = "".join(esc(part) for part in self.body)
        return (f'<section id="{esc(self.id)}"><h2>{esc(self.title)}</h2><p class="lead">{esc(self.lead)}</p>'
                f"{inner}</section>")


def page(title: str, subtitle: Sequence[str], sections: Sequence[Section], footer: str) -> str:
    """The whole document: head with the policy and the stylesheet, the title block, a contents list of the
    sections, the sections, a footer."""
    toc = "".join(f'<a href="#{esc(s.id)}">{esc(s.title)}</a>' for s in sections)
    sub = "".join(f"<p>{esc(line)}</p>" for line in subtitle)
    return ("<!DOCTYPE html>\n"
            '<html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<meta name="referrer" content="no-referrer">'
            f"<title>{esc(title)}</title><style>{CSS}</style></head>\n"
            f'<body><header class="top"><h1>{esc(title)}</h1>{sub}</header>'
            f'<nav class="toc">{toc}</nav>\n<main>\n'
            + "\n".join(s.render() for s in sections)
            + f"\n</main><footer>{esc(footer)}</footer></body></html>\n")
