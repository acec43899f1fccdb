"""The report's one stylesheet, inlined in the page: a light page for the screen and print rules for a PDF.

Screen: system fonts only (no web font is fetched), wide tables scroll inside their box. Print (``@media print``):
landscape pages (the option tables are wide), white background and black text, every colour kept for the bars and
badges (``print-color-adjust``), each section on a new page, tables at full width with cells that wrap instead of
being clipped, rows never split across pages, headings kept with what follows.
"""

from __future__ import annotations

TERM_COLORS = {
    "weights": "#4e79a7", "kv cache": "#59a14f", "state": "#b07aa1", "activations": "#f28e2b", "runtime": "#9c755f",
    "needs": "#4e79a7", "budget": "#e15759", "free": "#ffffff",
}
"""The colour of each memory term in the bars and their legends (a palette that stays apart in grey print)."""

STATUS_CLASS = {"FITS": "ok", "BORDERLINE": "warn", "DOES NOT FIT": "bad", "WILL NOT START": "bad",
                "NOT RANKED": "warn"}
"""The badge class of each verdict of ``core.verdict`` (and of a review's option that fits but is held back)."""

CSS = """
:root { --ink: #1d232b; --muted: #5b6570; --line: #d5dae0; --soft: #f4f6f8; --ok: #1d7a3a; --warn: #9a6200;
        --bad: #b3261e; --accent: #2f5d8a; }
* { box-sizing: border-box; }
html { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
body { margin: 0; color: var(--ink); background: #ffffff; font: 15px/1.45 system-ui, -apple-system, "Segoe UI",
       Roboto, "Helvetica Neue", Arial, sans-serif; }
header.top { padding: 22px 32px 14px; border-bottom: 3px solid var(--accent); }
header.top h1 { margin: 0 0 4px; font-size: 24px; }
header.top p { margin: 2px 0; color: var(--muted); }
nav.toc { padding: 8px 32px; border-bottom: 1px solid var(--line); font-size: 13px; }
nav.toc a { color: var(--accent); margin-right: 14px; text-decoration: none; }
main { padding: 0 32px 32px; max-width: 1240px; }
section { padding: 18px 0 10px; border-bottom: 1px solid var(--line); }
section h2 { font-size: 19px; margin: 0 0 6px; }
section h3 { font-size: 16px; margin: 16px 0 6px; }
p.lead { color: var(--muted); margin: 0 0 10px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 14px 18px; margin: 10px 0; background: var(--soft); }
.card .big { font-size: 26px; font-weight: 700; margin: 2px 0 6px; }
.card dl { display: grid; grid-template-columns: max-content 1fr; gap: 3px 16px; margin: 8px 0 0; }
.card dt { color: var(--muted); }
.card dd { margin: 0; }
.badge { display: inline-block; padding: 2px 9px; border-radius: 11px; font-size: 12.5px; font-weight: 700;
         border: 1px solid currentColor; white-space: nowrap; }
.badge.ok { color: var(--ok); background: #e6f4ea; }
.badge.warn { color: var(--warn); background: #fff4dc; }
.badge.bad { color: var(--bad); background: #fce8e6; }
.badge.info { color: var(--accent); background: #e8f0f8; }
.verdict { font-size: 15px; margin: 8px 0 2px; }
.verdict .badge { font-size: 15px; margin-right: 8px; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; margin: 6px 0 10px; font-size: 13px; }
th, td { border-bottom: 1px solid var(--line); padding: 4px 7px; text-align: left; vertical-align: top; }
th { vertical-align: bottom; }
th { background: var(--soft); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.num, td:nth-child(-n+3) { white-space: nowrap; }
td.fit { background: #e6f4ea; color: var(--ok); }
td.nofit { background: #fce8e6; color: var(--bad); }
td.here { outline: 2px solid var(--ink); outline-offset: -2px; font-weight: 700; }
pre.cmd { background: var(--soft); border: 1px solid var(--line); border-radius: 6px; padding: 8px 12px;
          white-space: pre-wrap; word-break: break-all; font: 13px/1.4 ui-monospace, "SFMono-Regular", Menlo,
          Consolas, monospace; margin: 4px 0 10px; }
code { font: 13px ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; }
ul.notes { margin: 4px 0 10px; padding-left: 20px; }
ul.notes li { margin: 3px 0; }
svg { display: block; max-width: 100%; height: auto; margin: 6px 0 10px; }
svg text { font-family: system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; }
.muted { color: var(--muted); }
footer { padding: 14px 32px; color: var(--muted); font-size: 12px; }
@media print {
  @page { size: landscape; margin: 12mm 10mm; }
  body { font-size: 10.5pt; background: #ffffff; color: #000000; }
  nav.toc { display: none; }
  main { max-width: none; padding: 0; }
  header.top { padding: 0 0 8px; }
  section { break-before: page; page-break-before: always; border-bottom: none; }
  section:first-of-type { break-before: auto; page-break-before: auto; }
  .scroll { overflow: visible; }
  table { width: 100%; font-size: 8.5pt; }
  th, td { padding: 2px 5px; }
  td { overflow-wrap: anywhere; }
  td:nth-child(-n+3) { white-space: normal; }
  td.num { white-space: nowrap; overflow-wrap: normal; }
  tr, .card, svg, pre.cmd { break-inside: avoid; page-break-inside: avoid; }
  h2, h3, p.lead, p.muted { break-after: avoid; page-break-after: avoid; }
  thead { display: table-header-group; }
  .card { background: #ffffff; }
  a { color: #000000; text-decoration: none; }
  footer { padding: 8px 0; }
}
"""
