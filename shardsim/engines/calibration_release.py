"""Which release a measurement row is scored at: the release its log names, a release range the row states, or
none (then the newest rules read, said so).

A row may name a range instead of a release when the log does not print one but bounds it (``"release":
">=0.11,<0.12"``: a line layout, a flag or a date that only some releases have). The row is scored at the rules of
the range's lowest release: a range is the set of releases the evidence allows, and its lowest bound is the one
end that is itself a release the row could have run (an exclusive upper bound is not). When every release in the
range maps to one rule set that choice changes nothing and the row counts as versioned (it sets its rule set's band
and counts toward the goal); when the range spans several rule sets, the row is scored at the lowest but, like a
row that names no release, sets no band.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from shardsim.errors import ShardsimError

CLAUSE = re.compile(r"\s*(>=|<=|==|<|>)\s*v?([0-9]{1,3}(?:\.[0-9]{1,3}){0,2})\s*")


@dataclass(frozen=True, slots=True)
class RowRelease:
    """The release a row is scored at, what the row says (a release, a range or nothing) and the rule sets the
    range spans."""

    version: str | None      # X.Y.Z scored at; None: the newest rules read
    stated: str | None       # the range as written, when the row gives one
    spans: tuple[str, ...] = ()  # the rule-set labels the range covers (one: unambiguous)

    @property
    def versioned(self) -> bool:
        """Whether the row tests one known rule set (a release, or a range inside one rule set)."""
        return self.version is not None and len(self.spans) <= 1

    def note(self, rules_label: str | None) -> str | None:
        """One line for the calibrate table: the release used when the row does not name one exactly."""
        if self.stated is not None:
            many = f"; the range spans {len(self.spans)} rule sets: {', '.join(self.spans)}" if len(self.spans) > 1 else ""
            return f"release {self.stated}: scored at its lowest, {self.version} ({rules_label}){many}"
        if self.version is None:
            return f"release not logged: scored at the newest rules read ({rules_label})"
        return None


def _version(text: str) -> tuple[int, int, int]:
    parts = [int(p) for p in text.split(".")] + [0, 0]
    return parts[0], parts[1], parts[2]


def parse_range(text: str, engine: str) -> RowRelease:
    """``">=0.11,<0.12"`` (clauses >=, <, <=, == joined by commas) → the lowest release and the rule sets spanned.
    A range needs an inclusive lower bound (>= or ==)."""
    from shardsim.engines.releases import RELEASE_TABLES

    low = high = None
    high_inclusive = False
    for clause in str(text).split(","):
        m = CLAUSE.fullmatch(clause)
        if not m:
            raise ShardsimError(f"release range {text!r:.60}: clause {clause.strip()!r:.30} is not one of >=X, <X, "
                                "<=X, ==X (X = a release, e.g. 0.11 or 0.11.1)")
        op, v = m.group(1), _version(m.group(2))
        if op in (">=", "=="):
            low = v
        if op in ("<", "<=", "=="):
            high, high_inclusive = v, op != "<"
        if op == ">":
            raise ShardsimError(f"release range {text!r:.60}: give an inclusive lower bound (>=X), the lowest release "
                                "the row could have run")
    if low is None:
        raise ShardsimError(f"release range {text!r:.60} has no lower bound; accepted: >=X[,<Y]")
    if high is not None and (high < low or (high == low and not high_inclusive)):
        raise ShardsimError(f"release range {text!r:.60} is empty")
    table = RELEASE_TABLES[engine].rows
    if low < table[0].first:
        raise ShardsimError(f"release range {text!r:.60} starts before the oldest {engine} release modelled "
                            f"({table[0].first_text})")
    covering = [r for r in table if r.first <= low][-1]
    inside = [r for r in table if low < r.first and (high is None or r.first < high or (high_inclusive and r.first == high))]
    spans = tuple(dict.fromkeys(r.label for r in [covering, *inside]))
    return RowRelease(".".join(map(str, low)), str(text), spans)


def engine_table(engine_text: str) -> str | None:
    """The release table of a row's engine field (vLLM, SGLang, HF Transformers), or None."""
    text = engine_text.lower()
    if "vllm" in text:
        return "vllm"
    if "sglang" in text:
        return "sglang"
    if "hf" in text or "transformers" in text:
        return "transformers"
    return None


def row_release_of(row: dict, logged: str | None) -> RowRelease:
    """What a row is scored at: the release its log names (``logged``), else its ``release`` range, else none."""
    stated = row.get("release")
    engine = engine_table(str(row.get("engine") or ""))
    if stated and engine and not logged:
        return parse_range(str(stated), engine)
    return RowRelease(logged, None)
