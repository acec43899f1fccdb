"""The README shows what the commands print: every ```text block of ``$ bin/shardsim …`` output is checked against
a fresh run (benchmarks/readme_samples.py; ``record`` rewrites them when an output changes on purpose)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
spec = importlib.util.spec_from_file_location("readme_samples", ROOT / "benchmarks" / "readme_samples.py")
samples = importlib.util.module_from_spec(spec)
spec.loader.exec_module(samples)


def test_matching_rules():
    out = ["a", "b", "", "c", "", "d", "e"]
    assert samples.matches(out, out) is None
    assert samples.matches(["a", "...", "", "d", "e"], out) is None      # '...' skips to the right empty line
    assert samples.matches(["a", "b", "X"], out) == "X"
    assert samples.matches(["a", "b"], out) is not None                  # the output goes on: not the whole
    assert samples.matches(["a", "...", "e"], out) is None


def test_every_readme_sample_matches_its_command(capsys):
    assert samples.main("check") == 0, capsys.readouterr().out
    assert len(samples.BLOCK.findall((ROOT / "README.md").read_text())) >= 5
