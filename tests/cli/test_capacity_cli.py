"""``shardsim review``, ``sweep`` and ``report`` run as the console script: flags, JSON shape, workload-file errors,
CSV/JSON/PNG output, the family table's reference numbers, and a light start-up."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PARAMS

from shardsim.capacity.workload import load_workload
from shardsim.core.layout import Layout, validate_layout
from shardsim.errors import ShardsimError
from shardsim.presets import get_preset

ROOT = Path(__file__).resolve().parents[2]
SHARDSIM = Path(sys.executable).parent / "shardsim"
if not SHARDSIM.exists():  # pragma: no cover - a venv without the console script
    SHARDSIM = Path(shutil.which("shardsim") or SHARDSIM)

H20_4 = """name: h20-1x4
description: "4x H20 96GB"
gpu: h20
nodes: 1
gpus_per_node: 4
intra_node_link:
  kind: "NVLink 4 / NVSwitch"
  bandwidth_GBps: 450
  source: "datasheet"
"""



def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([str(SHARDSIM), *args], capture_output=True, text=True, timeout=60, cwd=cwd or ROOT)


def test_235b_h20_cli_four_gpu_cluster_file_and_max_gpus(tmp_path):
    spec = tmp_path / "h20-1x4.yaml"
    spec.write_text(H20_4)
    p = run("review", "--model", "235b", "--engine", "vllm", "--cluster", str(spec), "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["evaluated"] > 0
    assert not any(o["fits"] for o in d["options"]) and d["models"][0]["cheapest"] is None
    assert "out of memory" in d["options"][0]["reason"].lower()
    p = run("review", "--model", "235b", "--engine", "vllm", "--cluster", "h20-1x8", "--max-gpus", "4", "--json")
    assert p.returncode == 0, p.stderr
    assert not any(o["fits"] for o in json.loads(p.stdout)["options"])
    p = run("review", "--model", "235b", "--engine", "vllm", "--cluster", "h20-1x8", "--json")
    cheapest = json.loads(p.stdout)["models"][0]["cheapest"]
    assert cheapest["fits"] and 4 < cheapest["gpus"] <= 8


# ---------------------------------------------------------------- JSON and text
def test_review_json_keys_and_example_workload():
    p = run("review", "--workload", "workloads/example.yaml", "--json", "--top", "3", "--misses", "2")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["engine"] == "vllm" and d["evaluated"] == sum(m["evaluated"] for m in d["models"]) > 1000
    assert [m["model"] for m in d["models"]] == ["Qwen3-32B", "Qwen3-235B-A22B"]
    assert [(m["context"], m["concurrency"]) for m in d["models"]] == [(32768, 64), (8192, 64)]
    # per model: the top 3 ranked, then up to 2 that fit but are held back (a latency target missed, or headroom under
    # --min-headroom), then the 2 nearest misses
    assert len(d["options"]) == sum(3 + min(2, m["held_back"]) + 2 for m in d["models"])
    assert all(o["ranked"] == (o["fits"] and o["held_back"] is None) for o in d["options"])
    for o in d["options"]:
        assert {"cluster", "layout", "fits", "cost", "peak_bytes", "headroom_bytes", "reason"} <= set(o)
        assert {"tp", "pp", "dp", "ep", "world_size"} <= set(o["layout"])
        assert (o["reason"] is None) == o["fits"]
        assert o["headroom_bytes"] >= 0 or not o["fits"]
        assert o["headroom_bytes"] < 0 or o["fits"] or "refus" in o["reason"].lower() or "capability" in o["reason"]
        assert o["peak_bytes"] + o["headroom_bytes"] == o["budget_bytes"]
    for m in d["models"]:
        assert m["cheapest"]["fits"] and m["cheapest"] == next(o for o in d["options"] if o["model"] == m["model"])
        assert m["cheapest"]["max_concurrency"] >= 64
    assert d["all_models"] is None or d["all_models"]["gpus"] <= 32


def test_review_text_flags():
    p = run("review", "--model", "8b", "--context", "32768", "--concurrency", "16", "--quant", "none", "--quant",
            "fp8", "--kv-dtype", "bf16", "--kv-dtype", "fp8", "--cluster", "l40s-1x4", "--cluster", "a10-1x4",
            "--by", "hourly")
    assert p.returncode == 0, p.stderr
    assert "Qwen3-8B" in p.stdout and "cheapest:" in p.stdout and "layouts evaluated" in p.stdout
    assert "fp8" in p.stdout and p.stderr == ""


# ---------------------------------------------------------------- bad input
def test_workload_file_wrong_field_names_file_line_and_field(tmp_path):
    bad = tmp_path / "x.yaml"
    bad.write_text("engine: vllm\nmodels:\n  - model: 32b\n    contxt: 32768\n    concurrency: 64\n")
    p = run("review", "--workload", str(bad))
    assert p.returncode == 2
    assert p.stdout == ""
    line = p.stderr.strip()
    assert len(p.stderr.strip().splitlines()) == 1
    assert "x.yaml" in line and "line 4" in line and "field 'contxt'" in line and "Extra inputs are not permitted" in line
    with pytest.raises(ShardsimError, match=r"x\.yaml: line 4: field 'contxt': Extra inputs are not permitted"):
        load_workload(bad)


def test_review_flag_errors_exit_2():
    for args in (["--model", "32b", "--quant", "fp4"], ["--model", "32b", "--engine", "sglang"],
                 ["--model", "32b", "--by", "cheap"], ["--workload", "workloads/example.yaml", "--model", "8b"], []):
        p = run("review", *args)
        assert p.returncode == 2, (args, p.stderr)
        assert p.stderr.startswith("shardsim: error:") and len(p.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------- sweep
def test_sweep_csv_and_json(tmp_path):
    out = tmp_path / "grid.csv"
    p = run("sweep", "32b", "--contexts", "4096,8192,32768", "--batches", "1,8,32", "--tp", "2", "--gpu", "h100",
            "--csv", str(out), "--json")
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == len(d["points"]) == 9
    assert [(int(r["context"]), int(r["batch"])) for r in rows] == [(c, b) for c in (4096, 8192, 32768) for b in (1, 8, 32)]
    for r, pt in zip(rows, d["points"]):
        assert int(r["peak_bytes"]) == pt["peak_bytes"]
        assert int(r["weights_bytes"]) + int(r["kv_cache_bytes"]) + int(r["activations_bytes"]) + int(r["runtime_bytes"]) == pt["peak_bytes"]
        assert (r["fits"] == "true") == pt["fits"] == (pt["peak_bytes"] <= pt["capacity_bytes"])
        assert r["gpu"] == "H100-SXM-80GB" and int(r["tp"]) == 2
    # one point against the plan command itself
    plan = json.loads(run("plan", "32b", "--tp", "2", "--context", "8192", "--batch", "8", "--json").stdout)
    point = next(pt for pt in d["points"] if (pt["context"], pt["batch"]) == (8192, 8))
    assert point["peak_bytes"] == plan["peak_bytes"] and point["fits"] == plan["fits"]
    assert point["kv_cache_bytes"] == 8 * 8192 * 262_144 // 2  # 32B: 256 KiB per token, split over tp 2
    fits = {(pt["context"], pt["batch"]): pt["fits"] for pt in d["points"]}
    assert fits[(4096, 1)] and not fits[(32768, 32)]


def test_sweep_gpu_counts(tmp_path):
    out = tmp_path / "gpus.csv"
    p = run("sweep", "32b", "--gpus", "1,2,4", "--gpu", "l40s", "--csv", str(out))
    assert p.returncode == 0, p.stderr
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert {int(r["gpus"]) for r in rows} == {1, 2, 4}
    for r in rows:
        assert int(r["tp"]) * int(r["pp"]) * int(r["dp"]) == int(r["gpus"])
    single = [r for r in rows if r["gpus"] == "1"]
    assert len(single) == 1 and single[0]["fits"] == "false"  # 65.5 GB of bf16 weights on a 44.5 GiB card
    assert any(r["fits"] == "true" for r in rows if r["gpus"] == "2")


def test_sweep_charts_are_png(tmp_path):
    pytest.importorskip("matplotlib")
    p = run("sweep", "235b", "--tp", "8", "--pp", "2", "--contexts", "8k,32k", "--batches", "1,16", "--chart",
            str(tmp_path), "--json")
    assert p.returncode == 0, p.stderr
    charts = [Path(c) for c in json.loads(p.stdout)["charts"]]
    assert len(charts) == 2 and any("fitmap" in c.name for c in charts) and any("ranks" in c.name for c in charts)
    for c in charts:
        assert c.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and c.stat().st_size > 10_000


def test_sweep_chart_without_matplotlib_is_one_line_exit_2(tmp_path):
    code = ("import sys\n"
            "class Block:\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name == 'matplotlib' or name.startswith('matplotlib.'):\n"
            "            raise ImportError('blocked')\n"
            "sys.meta_path.insert(0, Block())\n"
            "from shardsim.cli import main\n"
            f"sys.exit(main(['sweep', '8b', '--chart', {str(tmp_path / 'c')!r}]))\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert p.returncode == 2
    assert "matplotlib" in p.stderr and len(p.stderr.strip().splitlines()) == 1


def test_sweep_bad_lists_exit_2():
    for args in (["--contexts", "4096,abc"], ["--batches", "0"], ["--gpus", "2", "--tp", "2"]):
        p = run("sweep", "8b", *args)
        assert p.returncode == 2 and p.stderr.startswith("shardsim: error:"), (args, p.stderr)


# ---------------------------------------------------------------- report
@pytest.fixture(scope="module")
def family():
    p = run("report", "--json")
    assert p.returncode == 0, p.stderr
    return {m["model"]: m for m in json.loads(p.stdout)["models"]}


def test_report_reference_numbers(family):
    # 8 Qwen3 sizes, Qwen3-Next, five Qwen3.5 (0.8B, 2B, 9B, 27B, 35B-A3B), two Qwen3.6, three Qwen3-VL (FP8 checkpoints are formats, not rows)
    assert len(family) == 8 + 1 + 5 + 2 + 3
    big = family["Qwen3-235B-A22B"]
    assert big["kv_bytes_per_token"] == 192_512
    assert big["kv_8k_bytes"] == 1_577_058_304  # 1.58 GB, not 25 GB
    assert big["kv_32k_bytes"] == 4 * 1_577_058_304
    assert family["Qwen3-8B"]["params"] == 8_190_735_360  # not 7.72 B
    for name, params in PARAMS.items():
        assert family[name]["params"] == params
    assert big["active_params"] == 22_190_763_520
    assert big["bf16_bytes"] == 470_187_269_120
    from shardsim.core.memory.weights import total_weight_bytes

    assert big["fp8_bytes"] == total_weight_bytes(get_preset("235b-fp8"), "bf16")  # Qwen's own FP8 checkpoint
    for m in family.values():
        assert m["int4_bytes"] < m["fp8_bytes"] < m["bf16_bytes"]


def test_report_smallest_layouts(family):
    from shardsim.core.plan import Workload, plan
    from shardsim.hardware import gpu_catalog

    h20 = family["Qwen3-235B-A22B"]["smallest_layout"]["H20-96GB"]
    assert h20["gpus"] > 4
    assert family["Qwen3-0.6B"]["smallest_layout"]["T4-16GB"] == {"gpus": 1, "tp": 1, "pp": 1, "dp": 1, "ep": 1}
    cap = gpu_catalog()["A100-40GB"].capacity_bytes
    d = family["Qwen3-32B"]["smallest_layout"]["A100-40GB"]
    lay = validate_layout(get_preset("32b"), Layout(tp=d["tp"], pp=d["pp"], dp=d["dp"], ep=d["ep"]))
    assert plan(get_preset("32b"), lay, Workload(context=8192, batch=1), cap).fits
    assert not plan(get_preset("32b"), Layout(), Workload(context=8192, batch=1), cap).fits


def test_report_text():
    p = run("report")
    assert p.returncode == 0, p.stderr
    assert "Qwen3-235B-A22B" in p.stdout and "1.58" in p.stdout and "8,190,735,360" in p.stdout


# ---------------------------------------------------------------- start-up stays light
def test_cli_import_does_not_load_review_modules():
    code = ("import sys, shardsim.cli\n"
            "heavy = [m for m in ('shardsim.capacity', 'shardsim.capacity.review', 'shardsim.render', 'matplotlib', 'yaml',"
            " 'networkx', 'shardsim.engines.vllm') if m in sys.modules]\n"
            "print(','.join(heavy))\n")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == ""
    names = subprocess.run([str(SHARDSIM), "--help"], capture_output=True, text=True, timeout=60).stdout
    assert "review" in names and "sweep" in names and "report" in names
