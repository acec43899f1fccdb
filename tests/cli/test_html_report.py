"""The HTML report (shardsim/render/html/): ``shardsim plan … --html FILE`` and ``review_html`` of a review.

Pure tests read the file: one self-contained document (no address outside it, no script, a policy that forbids
every fetch), every section, and the figures the terminal prints for the same plan (verdict, per-rank GiB, the
engine's KV tokens and command) — the fit grid against ``core.plan.plan_request`` at other contexts and batches.
The browser test opens both reports in Debian's chromium, headless: every section in the DOM, nothing on the
console, a screenshot that is not blank. It skips, saying why, where chromium is not installed (``.ci/run``
installs it).
"""

from __future__ import annotations

import dataclasses
import html
import re
import shutil
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path

import pytest

from shardsim.cli import build
from shardsim.errors import ShardsimError

SHARDSIM = Path(sys.executable).parent / "shardsim"
PLAN_ARGS = ("32b", "--engine", "vllm", "--gpu", "h100")
PLAN_SECTIONS = ("sizing", "ranks", "fit-grid", "engine", "cost", "provenance", "arithmetic")
REVIEW_SECTIONS = ("sizing", "options", "memory", "cost", "frontier", "provenance", "arithmetic")
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
URL_ATTRS = {"src", "href", "xlink:href", "action", "formaction", "poster", "srcset", "data", "background", "ping"}


class Page(HTMLParser):
    """The parts of a document the tests read: tags, every URL-like attribute, section ids, the text of each
    section, and the text of each table cell by section."""

    def __init__(self, text: str):
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.urls: list[str] = []
        self.sections: list[str] = []
        self.text: dict[str, list[str]] = {}
        self.cells: dict[str, list[str]] = {}
        self.meta: list[dict] = []
        self._cell: list[str] | None = None
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        a = dict(attrs)
        self.urls += [v for k, v in attrs if k in URL_ATTRS and v is not None]
        if tag == "section":
            self.sections.append(a.get("id", ""))
        if tag == "meta":
            self.meta.append(a)
        if tag == "td":
            self._cell = []

    def handle_endtag(self, tag):
        if tag == "td" and self._cell is not None and self.sections:
            self.cells.setdefault(self.sections[-1], []).append("".join(self._cell).strip())
            self._cell = None

    def handle_data(self, data):
        if self.sections:
            self.text.setdefault(self.sections[-1], []).append(data)
        if self._cell is not None:
            self._cell.append(data)

    def section_text(self, sid: str) -> str:
        return " ".join(" ".join(self.text.get(sid, [])).split())


def plan_request():
    """The request ``shardsim plan 32b --engine vllm --gpu h100`` builds."""
    return build.serve_request(build.ModelOptions("32b"), build.LayoutOptions(), build.WorkloadOptions(),
                               build.HardwareOptions(gpu="h100"), build.EngineOptions("vllm", build.engine_knob_options()))


@pytest.fixture(scope="module")
def plan_run(tmp_path_factory):
    """``shardsim plan 32b --engine vllm --gpu h100 --html r.html`` run in an empty folder, and the same plan
    without --html."""
    folder = tmp_path_factory.mktemp("plan-html")
    with_html = subprocess.run([str(SHARDSIM), "plan", *PLAN_ARGS, "--html", "r.html"], capture_output=True,
                               text=True, timeout=120, cwd=folder)
    without = subprocess.run([str(SHARDSIM), "plan", *PLAN_ARGS], capture_output=True, text=True, timeout=120,
                             cwd=folder)
    return folder / "r.html", with_html, without


@pytest.fixture(scope="module")
def review_file(tmp_path_factory):
    """A review of the example workload (32B and 235B, vLLM, speed targets) on clusters of up to 8 GPUs, ranked by
    the hourly price: ``shardsim review … --html review.html``, and the same review in this process (the records
    the page's figures are held against)."""
    from shardsim.capacity.records import ReviewRequest
    from shardsim.capacity.review import review
    from shardsim.capacity.workload import load_catalog, load_workload

    loaded = load_workload("example")
    rv = review(ReviewRequest(tuple(loaded.loads), tuple(load_catalog((), None, None)), "vllm", "hourly", 0.9, 8))
    folder = tmp_path_factory.mktemp("review-html")
    p = subprocess.run([str(SHARDSIM), "review", "--workload", "example", "--by", "hourly", "--max-gpus", "8",
                        "--html", "review.html"], capture_output=True, text=True, timeout=300, cwd=folder)
    assert p.returncode == 0 and p.stdout.endswith("report: review.html\n"), p.stderr[-500:]
    return folder / "review.html", rv


def assert_air_gapped(text: str, page: Page) -> None:
    """No address outside the file in any attribute, no element that loads one, no script, no CSS import or
    url(), and a policy that forbids every fetch."""
    outside = [u for u in page.urls if not u.startswith("#")]
    assert not outside, f"addresses outside the file: {outside[:5]}"
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.I)
    assert not {"script", "link", "img", "iframe", "object", "embed", "image", "use", "audio", "video",
                "source", "base", "form"} & set(page.tags)
    assert "url(" not in text and "@import" not in text and "@font-face" not in text
    policy = [m["content"] for m in page.meta if m.get("http-equiv", "").lower() == "content-security-policy"]
    assert policy and "default-src 'none'" in policy[0]


# ---------------------------------------------------------------- the command
def test_plan_html_keeps_the_output_and_says_where(plan_run):
    path, with_html, without = plan_run
    assert with_html.returncode == without.returncode == 0, with_html.stderr
    assert with_html.stdout == without.stdout + "report: r.html\n"
    assert with_html.stderr == without.stderr
    assert path.is_file() and not list(path.parent.glob(".r.html.*")), "a temporary file was left behind"


def test_plan_html_under_json_keeps_stdout_one_object(tmp_path):
    import json

    p = subprocess.run([str(SHARDSIM), "plan", "8b", "--json", "--html", "x.html"], capture_output=True, text=True,
                       timeout=120, cwd=tmp_path)
    assert p.returncode == 0, p.stderr
    assert json.loads(p.stdout)["verdict"]["status"] == "FITS"
    assert p.stderr == "report: x.html\n" and (tmp_path / "x.html").is_file()


@pytest.mark.parametrize("where", ["missing/r.html", ".", "r.html/inside.html"])
def test_an_unwritable_report_is_one_line_and_exit_2(tmp_path, where):
    (tmp_path / "r.html").write_text("a file, not a folder")
    p = subprocess.run([str(SHARDSIM), "plan", "8b", "--html", where], capture_output=True, text=True, timeout=120,
                       cwd=tmp_path)
    assert p.returncode == 2 and p.stdout == ""
    assert p.stderr.startswith("shardsim: error: cannot write the report") and p.stderr.count("\n") == 1


def test_the_file_is_replaced_whole(tmp_path):
    from shardsim.render.html.write import write_atomic

    target = tmp_path / "r.html"
    target.write_text("old")
    write_atomic(target, "new")
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["r.html"]
    with pytest.raises(ShardsimError, match="does not exist"):
        write_atomic(tmp_path / "no" / "r.html", "x")


# ---------------------------------------------------------------- the document
def test_plan_html_is_one_air_gapped_file_with_every_section(plan_run):
    text = plan_run[0].read_text()
    page = Page(text)
    assert_air_gapped(text, page)
    assert tuple(s for s in page.sections) == PLAN_SECTIONS   # no speed points: no frontier
    assert "@media print" in text


def test_plan_html_shows_the_terminals_figures(plan_run):
    """The verdict, the per-rank row and the engine's row as the terminal prints them, the fix and the command."""
    path, with_html, without = plan_run
    page = Page(path.read_text())
    out = without.stdout
    status, reason = re.search(r"\n(WILL NOT START|DOES NOT FIT|BORDERLINE|FITS) · (.+)", out).groups()
    sizing = page.section_text("sizing")
    assert status in sizing and " ".join(reason.split()) in sizing
    fix = re.search(r"\nfix: (.+)", out).group(1)
    assert fix in page.section_text("sizing") and fix in page.section_text("engine")
    # the plan's one row: 0 · stage 0 │ 0:0 │ 0–63 │ 61.02 │ 2.00 │ 1.41 │ 0.64 │ 65.07 │ 14.11
    row = next(line for line in out.splitlines() if line.startswith("0 · stage 0"))
    cells = [c.strip() for c in row.split("│")]
    assert cells == page.cells["ranks"][: len(cells)]
    engine_row = next(line for line in out.splitlines() if line.startswith("0     │"))
    assert [c.strip() for c in engine_row.split("│")] == page.cells["engine"][:7]
    tokens = re.search(r"GPU KV cache size: ([\d,]+) tokens", out).group(1)
    assert f"{tokens} tokens" in page.section_text("engine")
    assert "vllm serve Qwen/Qwen3-32B --tensor-parallel-size 1" in page.section_text("engine")
    assert "shardsim plan 32b --engine vllm --gpu h100 --html r.html" in page.section_text("arithmetic")
    provenance = page.section_text("provenance")
    assert provenance.count("exact") >= 2 and "estimate ±25 %" in provenance and "estimate ±50 %" in provenance
    from shardsim.engines.bands import band_details

    kv_band = band_details("vllm", "vLLM 0.29–0.33 rules")["kv_cache_tokens"]   # the nearest rule set's held-out band
    assert f"estimate ±{100 * kv_band.band:g} %" in provenance and kv_band.rules in provenance
    assert "$3.00" in page.section_text("cost") and "$2,190" in page.section_text("cost")   # 1 H100 × 730 h


def test_the_fit_grid_is_the_planners():
    """Each cell is the planner's own figure: the request's point and others, by plan_request at that workload."""
    from shardsim.core.plan import plan_request as plan
    from shardsim.render.html.grid import fit_grid
    from shardsim.units import gib_text

    request = plan_request()
    grid = fit_grid(request)
    assert grid.contexts == (4096, 8192, 16384, 32768, 40960) and grid.batches == (1, 2, 4, 8, 16, 32, 64, 128, 256)
    for context, batch in ((8192, 1), (32768, 4), (40960, 256), (4096, 16)):
        wl = request.workload.model_copy(update={"context": context, "batch": batch})
        report = plan(dataclasses.replace(request, workload=wl))
        point = grid.point(context, batch)
        assert (point.peak_bytes, point.fits) == (report.peak.bytes.total, report.fits), (context, batch)
        assert gib_text(point.headroom_bytes) == gib_text(report.headroom_bytes)


def test_speed_points_make_the_frontier_and_the_cost_per_token():
    from shardsim.render.html.plan import build_plan_page, plan_html
    from shardsim.speed.estimate import SpeedRequest, SpeedWorkload, estimate

    request = build.serve_request(build.ModelOptions("8b"), build.LayoutOptions(), build.WorkloadOptions(1280, 1),
                                  build.HardwareOptions(gpu="h100"), build.EngineOptions("vllm", build.engine_knob_options()))
    speeds = [estimate(SpeedRequest(request, SpeedWorkload(1024, 256, users))) for users in (1, 16, 64)]
    page = Page(plan_html(build_plan_page(request, "shardsim speed …", speeds[-1], speeds)))
    assert page.sections == ["sizing", "ranks", "fit-grid", "engine", "cost", "frontier", "provenance", "arithmetic"]
    assert f"${speeds[-1].usd_per_mtok:,.3f}" in page.section_text("cost")
    assert page.tags.count("circle") == 3


def test_a_validation_record_marks_the_measured_terms():
    """A ``shardsim validate --json`` record (launch/serve/run.py ranks, launch/serve/predict.py compare): weights
    equal on every rank, activations 3 % over on one of two and outside the bound there."""
    from shardsim.render.html.plan import build_plan_page, plan_html

    def rank(r: int, act_pct: float, ok: bool) -> dict:
        return {"rank": r, "comparison": {
            "weights": {"predicted": 10, "measured": 10, "diff": 0, "diff_pct": 0.0, "ok": True},
            "kv_cache": {"predicted": 4, "measured": None, "diff": None, "diff_pct": None, "ok": False},
            "activations": {"predicted": 100, "measured": 103, "diff": 3, "diff_pct": act_pct, "ok": ok}}}

    record = {"model": "Qwen3-32B", "backend": "torch", "device": "cpu", "ranks": [rank(0, 1.0, True),
                                                                                  rank(1, 3.0, False)]}
    page = Page(plan_html(build_plan_page(plan_request(), validation=record)))
    rows = {c.split(":")[1].strip(): c for c in page.text["provenance"] if c.startswith("planner:")}
    provenance = page.section_text("provenance")
    assert "measured by validate, within 0.00 %" in provenance and "validate: mismatch up to 3.00 %" in provenance
    assert provenance.count("measured by validate") == 1   # KV was not measured: no badge
    assert set(rows) >= {"weights", "kv cache", "activations", "runtime"}


def test_text_is_escaped():
    from shardsim.render.html.plan import build_plan_page, plan_html

    text = plan_html(build_plan_page(plan_request(), "shardsim plan '<script>alert(1)</script>' & more"))
    assert "<script" not in text and html.escape("'<script>alert(1)</script>' & more") in text


def test_review_html_shows_the_ranked_options(review_file):
    path, rv = review_file
    text = path.read_text()
    page = Page(text)
    assert_air_gapped(text, page)
    assert page.sections == list(REVIEW_SECTIONS)
    for m in rv.models:
        top = m.fitting[0]
        assert f"${top.speed.usd_per_mtok:,.3f}" in page.section_text("sizing")
        assert f"{top.cluster.name}" in page.section_text("options")
    # one bar per ranked option shown (10 per model at most), in the memory section's SVG
    assert text.count("<title>needs:") == sum(min(10, len(m.fitting)) for m in rv.models)


# ---------------------------------------------------------------- the browser
def chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                           "--disable-component-update", "--disable-sync", "--no-first-run",
                           f"--user-data-dir={profile}", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs Debian's: apt-get install "
                                             "chromium)")
@pytest.mark.parametrize("which", ["plan", "review"])
def test_the_reports_open_in_chromium(which, plan_run, review_file, tmp_path):
    from PIL import Image

    path, sections = (plan_run[0], PLAN_SECTIONS) if which == "plan" else (review_file[0], REVIEW_SECTIONS)
    url = path.resolve().as_uri()
    t0 = time.perf_counter()
    dom = chromium(["--enable-logging=stderr", "--v=0", "--dump-dom", url], tmp_path / "p1")
    assert dom.returncode == 0, dom.stderr[-2000:]
    for sid in sections:
        assert f'<section id="{sid}">' in dom.stdout, sid
    console = [line for line in dom.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, "the page wrote to the console:\n" + "\n".join(console)
    png = tmp_path / "shot.png"
    shot = chromium([f"--screenshot={png}", "--window-size=1280,2000", url], tmp_path / "p2")
    assert shot.returncode == 0 and png.is_file(), shot.stderr[-2000:]
    image = Image.open(png).convert("RGB")
    assert image.size == (1280, 2000) and png.stat().st_size > 20_000
    colours = image.getcolors(maxcolors=1 << 20)
    assert colours is not None and len(colours) > 100, "the screenshot is blank"
    assert time.perf_counter() - t0 < 60
