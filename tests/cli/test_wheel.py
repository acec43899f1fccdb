"""The built wheel, installed into clean virtualenvs, works outside the checkout (slow: about 60 s in all).

One wheel is built per module from a snapshot of the working tree (copied to a temp folder, so that setuptools'
``build/`` and ``*.egg-info`` never land in the checkout and stale ``build/lib`` files cannot leak into the wheel).
Then:

* ``test_wheel_contents``: the wheel holds the renamed packages and data (``shardsim.launch``,
  ``shardsim.cluster_specs``, ``shardsim.workloads``, the presets) and nothing under a generic top-level name.
* ``test_installed_cli``: a fresh venv with the wheel and its registry dependencies runs the planner commands from
  an empty folder with no PYTHONPATH or SHARDSIM_* variables.
* ``test_installed_validate``: a second fresh venv borrows the validation stack (torch, Ray, …) of the project's
  venv through a plain ``.pth`` path line, installs the wheel with ``--no-deps`` and runs a real 2-rank validation,
  whose checkpoint must lie under ``$SHARDSIM_CACHE`` and whose run record under ``shardsim-runs/`` of the working
  folder (nothing written into site-packages).

Measured on a 2-core CPU box: wheel build about 7 s, CLI venv and commands about 20 s, validation venv and run
about 33 s; about 60 s for the module.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
PIP_QUIET = ("--disable-pip-version-check", "-q")
SNAPSHOT_IGNORE = shutil.ignore_patterns(
    ".git", ".venv", "build", "dist", "*.egg-info", "__pycache__", "*.pyc", ".pytest_cache", ".hypothesis",
    ".ruff_cache", "runs",
)


def clean_env(**extra: str) -> dict[str, str]:
    """The caller's environment without PYTHONPATH, the active venv or any SHARDSIM_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV") and not k.startswith("SHARDSIM_")}
    env.update(extra)
    return env


def run(cmd: list[str], *, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300,
        check: bool = True) -> subprocess.CompletedProcess:
    """Run ``cmd``; with ``check``, fail with its full output unless it exits 0."""
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env if env is not None else clean_env(),
                          capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, describe(proc)
    return proc


def describe(proc: subprocess.CompletedProcess) -> str:
    """Command, exit code, stdout and stderr (tails), for assertion messages."""
    cmd = " ".join(str(c) for c in proc.args)
    return (f"$ {cmd}\nexit code {proc.returncode}\n--- stdout ---\n{proc.stdout[-4000:]}\n"
            f"--- stderr ---\n{proc.stderr[-4000:]}")


def make_venv(path: Path, cwd: Path) -> Path:
    """A fresh venv at ``path``; returns its python."""
    run([sys.executable, "-m", "venv", path], cwd=cwd, timeout=180)
    python = path / "bin" / "python"
    assert python.exists(), f"no python in the new venv {path}"
    return python


def purelib(python: Path, cwd: Path) -> Path:
    """The site-packages folder of ``python``."""
    out = run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], cwd=cwd, timeout=60)
    return Path(out.stdout.strip())


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel of the current working tree (built once per module; about 7 s)."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    shutil.copytree(REPO, src, ignore=SNAPSHOT_IGNORE, symlinks=True)
    out = root / "dist"
    out.mkdir()
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", *PIP_QUIET, "-w", out, src], cwd=root, timeout=600)
    wheels = sorted(out.glob("shardsim-*.whl"))
    assert len(wheels) == 1, f"expected exactly one shardsim wheel in {out}, found {[w.name for w in out.iterdir()]}"
    return wheels[0]


@pytest.fixture
def empty_cwd(tmp_path_factory) -> Path:
    """A fresh empty folder outside the checkout to run installed commands from."""
    cwd = tmp_path_factory.mktemp("cwd")
    assert not cwd.resolve().is_relative_to(REPO), cwd
    return cwd


def test_wheel_contents(wheel):
    """The wheel ships the renamed packages and their data, no generic top-level package (about 7 s, the build)."""
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
    for required in ("shardsim/launch/serve/run.py", "shardsim/cluster_specs/gpus.yaml",
                     "shardsim/workloads/example.yaml", "shardsim/presets/Qwen3-8B.json",
                     "shardsim/cli/__init__.py", "shardsim/launch/backends/__init__.py"):
        assert required in names, f"{required} missing from {wheel.name}; it holds:\n" + "\n".join(sorted(names))
    top_level = {n.split("/", 1)[0] for n in names}
    for generic in ("launch", "cluster_specs", "workloads"):
        assert generic not in top_level, f"{wheel.name} has a top-level {generic}/: {sorted(top_level)}"
    entry_points = next((n for n in names if n.endswith(".dist-info/entry_points.txt")), None)
    assert entry_points, f"no entry_points.txt in {wheel.name}"
    with zipfile.ZipFile(wheel) as zf:
        assert "shardsim = shardsim.cli:main" in zf.read(entry_points).decode()


def test_installed_cli(wheel, tmp_path, empty_cwd):
    """A clean venv with the wheel and its dependencies runs every planner command from an empty folder
    (about 20 s: venv, pip install from the registry cache, seven commands)."""
    python = make_venv(tmp_path / "venv", empty_cwd)
    run([python, "-m", "pip", "install", *PIP_QUIET, wheel], cwd=empty_cwd, timeout=600)
    site = purelib(python, empty_cwd)
    exe = tmp_path / "venv" / "bin" / "shardsim"
    assert exe.exists(), f"the console script {exe} was not installed"

    # The installed packages are the venv's, not the checkout's; nothing generic lands at the top level.
    probe = run([python, "-c",
                 "import importlib.util, json, shardsim, shardsim.launch, shardsim.cluster_specs, shardsim.workloads\n"
                 "print(json.dumps({'shardsim': shardsim.__file__, 'launch': shardsim.launch.__file__,\n"
                 "  'cluster_specs': shardsim.cluster_specs.__file__,\n"
                 "  'generic': {m: importlib.util.find_spec(m) is not None\n"
                 "              for m in ('launch', 'cluster_specs', 'workloads')}}))"],
                cwd=empty_cwd, timeout=60)
    where = json.loads(probe.stdout)
    for key in ("shardsim", "launch", "cluster_specs"):
        path = Path(where[key]).resolve()
        assert path.is_relative_to(site.resolve()), f"{key} imported from {path}, not from {site}\n{describe(probe)}"
        assert not path.is_relative_to(REPO), f"{key} imported from the checkout: {path}"
    assert where["generic"] == {"launch": False, "cluster_specs": False, "workloads": False}, describe(probe)

    def shardsim(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        proc = run([exe, *args], cwd=empty_cwd, timeout=timeout, check=False)
        assert proc.returncode == 0 and not proc.stderr.strip(), describe(proc)
        assert proc.stdout.strip(), f"no output\n{describe(proc)}"
        return proc

    shardsim("plan", "8b")

    proc = shardsim("plan", "235b", "--tp", "8", "--pp", "2", "--json")
    plan = json.loads(proc.stdout)
    assert plan["model"]["weight_bytes"] == 470_187_269_120, describe(proc)
    assert plan["fits"] is True, describe(proc)

    proc = shardsim("models", "--json")
    qwen8b = [m for m in json.loads(proc.stdout) if m["name"] == "Qwen3-8B"]
    assert len(qwen8b) == 1 and qwen8b[0]["params"] == 8_190_735_360, describe(proc)

    shardsim("gpus")
    shardsim("clusters")
    shardsim("report", timeout=300)

    proc = shardsim("review", "--workload", "example", timeout=300)
    assert "Qwen3-32B" in proc.stdout and "Qwen3-235B-A22B" in proc.stdout, describe(proc)

    assert not any(empty_cwd.iterdir()), f"commands wrote into the cwd: {list(empty_cwd.iterdir())}"


def test_installed_validate(wheel, tmp_path, empty_cwd):
    """The wheel, installed with --no-deps over the project venv's validation stack (borrowed by a .pth path line),
    runs a real TP2 validation of a 2-layer Qwen3-0.6B and writes only under $SHARDSIM_CACHE and ./shardsim-runs
    (about 33 s)."""
    python = make_venv(tmp_path / "venv2", empty_cwd)
    site = purelib(python, empty_cwd)
    stack = Path(sysconfig.get_paths()["purelib"])  # the project venv's site-packages (torch, Ray, DeepSpeed, …)
    assert (stack / "torch").is_dir(), f"no torch in {stack}: run this test with the project's .venv python"
    (site / "zz_validation_stack.pth").write_text(f"{stack}\n")
    run([python, "-m", "pip", "install", "--no-deps", *PIP_QUIET, wheel], cwd=empty_cwd, timeout=300)

    # The wheel wins over the editable install of the checkout: that one's finder sits behind a nested .pth file,
    # which a plain path line does not process.
    probe = run([python, "-c", "import shardsim, shardsim.launch, torch, ray\n"
                 "print(shardsim.__file__); print(shardsim.launch.__file__)"], cwd=empty_cwd, timeout=120)
    for line in probe.stdout.split():
        path = Path(line).resolve()
        assert path.is_relative_to(site.resolve()), f"imported from {path}, not from {site}\n{describe(probe)}"

    build = tmp_path / "build"
    env = clean_env(SHARDSIM_CACHE=str(build), RAY_AUTH_MODE="disabled")
    exe = tmp_path / "venv2" / "bin" / "shardsim"
    proc = run([exe, "validate", "0.6b", "--tp", "2", "--layers", "2", "--json"], cwd=empty_cwd, env=env,
               timeout=600, check=False)
    assert proc.returncode == 0, describe(proc)
    try:
        record = json.loads(proc.stdout)
    except json.JSONDecodeError as exc:
        pytest.fail(f"stdout is not one JSON record ({exc})\n{describe(proc)}")
    assert record["passed"] is True, describe(proc)
    run_dir = Path(record["run_dir"]).resolve()
    runs = (empty_cwd / "shardsim-runs").resolve()
    assert run_dir.is_relative_to(runs), f"run_dir {run_dir} is not under {runs}\n{describe(proc)}"
    assert (run_dir / "results.jsonl").is_file(), f"no results.jsonl in {run_dir}"
    assert [p.name for p in empty_cwd.iterdir()] == ["shardsim-runs"], f"validate wrote {list(empty_cwd.iterdir())}"
    assert any((build / "checkpoints").iterdir()), f"no checkpoint under the cache {build}"
    # a cache folder of a run, not one of the product's own packages (shardsim.launch.checkpoints is code)
    leaked = [p for p in (site / "shardsim").rglob("*")
              if p.name in ("runs", "checkpoints", "build", "torch_extensions", "results.jsonl")
              and not (p / "__init__.py").is_file()]
    assert not leaked, f"validate wrote into site-packages: {leaked}"
