"""The architecture as the folders state it: each package imports only what its docstring allows, the core does no
I/O, no import cycles, modules under 400 lines and functions under 80, and the README's table matches the tree."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Source folder → installed package name (pyproject.toml maps launch/ to shardsim.launch and the data folders).
FOLDERS = {ROOT / "shardsim": "shardsim", ROOT / "launch": "shardsim.launch",
           ROOT / "cluster_specs": "shardsim.cluster_specs", ROOT / "workloads": "shardsim.workloads"}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80
IO_MODULES = {"os", "pathlib", "json", "yaml", "io", "subprocess", "shutil", "socket", "torch", "safetensors", "ray",
              "deepspeed", "transformers", "networkx"}


def modules() -> dict[str, Path]:
    """Every Python module of the product, by its installed dotted name."""
    out = {}
    for folder, package in FOLDERS.items():
        for path in sorted(folder.rglob("*.py")):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([package, *parts])] = path
    return out


MODULES = modules()


def imports_of(name: str, path: Path) -> list[str]:
    """The shardsim modules (or packages) ``name`` imports anywhere in its code, resolved to dotted names."""
    out = []
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            for alias in node.names:
                full = f"{base}.{alias.name}"
                out.append(full if full in MODULES else base)
    return [m for m in out if m == "shardsim" or m.startswith("shardsim.")]


def allowed_of(package: str) -> tuple[str, ...] | None:
    """The packages a package's docstring allows (its ``May import:`` paragraph); None for 'every shardsim
    package'."""
    doc = ast.get_docstring(ast.parse(MODULES[package].read_text())) or ""
    paragraph = next((p for p in doc.split("\n\n") if p.startswith("May import:")), None)
    assert paragraph is not None, f"{package}: the package docstring has no 'May import:' paragraph"
    if paragraph.startswith("May import: every shardsim package"):
        return None
    return tuple(re.findall(r"shardsim(?:\.[a-z_]+)*", paragraph))


PACKAGES = sorted(n for n, p in MODULES.items() if p.name == "__init__.py" and n != "shardsim")


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_imports_only_what_its_docstring_allows(package):
    allowed = allowed_of(package)
    if allowed is None:
        return
    inside = [n for n in MODULES if n == package or n.startswith(package + ".")]
    for name in inside:
        for target in imports_of(name, MODULES[name]):
            ok = any(target == a or target.startswith(a + ".") for a in allowed + (package,))
            assert ok, f"{name} imports {target}; {package} may import {', '.join(allowed) or 'nothing'}"


def test_the_core_is_pure():
    for name, path in MODULES.items():
        if not name.startswith("shardsim.core"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                roots = [a.name.split(".")[0] for a in node.names] if isinstance(node, ast.Import) else \
                    [(node.module or "").split(".")[0]]
                assert not set(roots) & IO_MODULES, f"{name} imports {roots}: the core does no I/O"
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "open":
                raise AssertionError(f"{name} calls open(): the core does no I/O")


def test_no_import_cycles():
    graph = {name: set(imports_of(name, path)) & set(MODULES) for name, path in MODULES.items()}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node] - {node}):
            if state.get(nxt) == 1:
                cycle = trail[trail.index(nxt):] + [nxt] if nxt in trail else [node, nxt]
                raise AssertionError("import cycle: " + " → ".join(cycle))
            if nxt not in state:
                visit(nxt, trail + [nxt])
        state[node] = 2

    for name in graph:
        if name not in state:
            visit(name, [name])


def test_modules_and_functions_stay_small():
    for name, path in MODULES.items():
        text = path.read_text()
        assert len(text.splitlines()) <= MAX_MODULE_LINES, f"{name}: {len(text.splitlines())} lines"
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                assert length <= MAX_FUNCTION_LINES, f"{name}.{node.name}: {length} lines"


def test_readme_table_matches_the_tree():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## How it is built", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `([^`]+)`", section, flags=re.M))
    for entry in listed:
        assert (ROOT / entry).exists(), f"README lists {entry}, which does not exist"
    folders = {str(p.parent.relative_to(ROOT)) + "/" for n, p in MODULES.items() if p.name == "__init__.py" and n != "shardsim"}
    folders |= {"cluster_specs/", "benchmarks/", "tests/"}
    missing = sorted(f for f in folders if f not in listed)
    assert not missing, f"README's 'How it is built' table lacks {missing}"


OUR_TOPS = ("core", "engines", "capacity", "render", "cli", "hardware", "presets", "launch", "memory")

DOTTED = re.compile(r"(?<![\w./])((?:shardsim|" + "|".join(OUR_TOPS) + r")(?:\.[A-Za-z_][A-Za-z0-9_]*)+)")
PATH = re.compile(r"(?<![\w./-])((?:shardsim|launch|tests|benchmarks|cluster_specs|" + "|".join(OUR_TOPS) +
                  r")/[\w/]+\.py)(?!@)")


def _top_level_names(path: Path) -> set[str]:
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def _resolves(dotted: str) -> bool:
    """``shardsim.core.layout``, ``core.layout.validate_layout`` or ``engines.registry.Engine.knobs``: a module,
    then (optionally) a name defined at its top level (what follows is the name's own attribute)."""
    parts = dotted.split(".")
    if parts[0] == "memory":
        parts = ["core", *parts]
    if parts[0] != "shardsim":
        parts = ["shardsim", *parts]
    for cut in range(len(parts), 1, -1):
        module = ".".join(parts[:cut])
        if module in MODULES:
            rest = parts[cut:]
            return not rest or rest[0] in _top_level_names(MODULES[module])
    return False


def _docstrings(path: Path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            doc = ast.get_docstring(node)
            if doc:
                yield getattr(node, "name", "module"), doc


def test_every_module_named_in_a_docstring_exists():
    missing = []
    for name, path in MODULES.items():
        for where, doc in _docstrings(path):
            for dotted in DOTTED.findall(doc):
                dotted = dotted.rstrip(".")
                if not _resolves(dotted):
                    missing.append(f"{name} ({where}): {dotted}")
            for file in PATH.findall(doc):
                candidates = [ROOT / file, ROOT / "shardsim" / file]
                if not any(c.exists() for c in candidates):
                    missing.append(f"{name} ({where}): {file}")

    assert not missing, "docstrings name modules that do not exist:\n" + "\n".join(missing)


def _functions():
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield name, node


def _is_command(node) -> bool:
    """A Typer command function: every parameter annotated with an option of ``cli.options`` (``…Opt``, ``…Arg``)."""
    args = [a for a in node.args.args + node.args.kwonlyargs
            if not (a.arg == "ctx" and a.annotation is not None
                    and ast.unparse(a.annotation) == "typer.Context")]  # Typer's context
    return bool(args) and all(isinstance(a.annotation, ast.Name) and a.annotation.id.endswith(("Opt", "Arg"))
                              for a in args)


MAX_PARAMETERS = 12
MAX_COMMAND_OPTIONS = 40
"""A command that needs more options is two commands (or reads a group of them from a table, as ``plan`` reads each
engine's knobs)."""


def test_no_function_takes_more_than_twelve_parameters_but_the_commands():
    wide = []
    for name, node in _functions():
        count = len([a for a in node.args.posonlyargs + node.args.args + node.args.kwonlyargs
                     if a.arg not in ("self", "cls")])
        if count > MAX_PARAMETERS and not (name.startswith("shardsim.cli.") and _is_command(node)):
            wide.append(f"{name}.{node.name}: {count} parameters")
    assert not wide, "group parameters into records:\n" + "\n".join(wide)


def test_each_planning_command_builds_one_typed_request_first():
    """A command with five options or more turns them into one request in its first statement after its imports
    (``request = …``), and nothing hands ``locals()`` on."""
    commands = [(name, node) for name, node in _functions() if name.startswith("shardsim.cli.") and _is_command(node)]
    assert {node.name for _, node in commands} >= {"plan", "train", "validate", "review", "sweep"}
    for name, node in commands:
        options = len(node.args.args + node.args.kwonlyargs)
        assert options <= MAX_COMMAND_OPTIONS, f"{name}.{node.name}: {options} options"
        if options < 5:
            continue
        body = [s for s in node.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
                and not isinstance(s, (ast.Import, ast.ImportFrom))]
        first = body[0]
        assert isinstance(first, ast.Assign) and [t.id for t in first.targets if isinstance(t, ast.Name)] == [
            "request"], f"{name}.{node.name}: the first statement is not 'request = …'"
    for name, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "locals":
                raise AssertionError(f"{name} passes locals() on: build a record instead")
