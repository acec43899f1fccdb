"""The GPU catalog and the cluster specs on disk: ``gpus.yaml`` and one YAML file per cluster.

The built-in data is the ``cluster_specs/`` folder, installed as the package ``shardsim.cluster_specs``;
``$SHARDSIM_CLUSTER_SPECS`` names another folder. Files are parsed once and cached.
"""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path

from pydantic import ValidationError

import shardsim.cluster_specs
from shardsim.constants import MAX_YAML_BYTES
from shardsim.errors import ShardsimError
from shardsim.files import is_dir, is_file, read_yaml, show
from shardsim.hardware.specs import ClusterSpec, GPUSpec
from shardsim.hardware.yaml_files import invalid, line_of

ENV_SPECS_DIR = "SHARDSIM_CLUSTER_SPECS"  # a directory of cluster YAML files to use instead of the built-in one
CATALOG_FILE = "gpus.yaml"
BUILTIN_DIR = Path(shardsim.cluster_specs.__file__).resolve().parent


def specs_dir() -> Path:
    """``$SHARDSIM_CLUSTER_SPECS`` if set, else ``<repo>/cluster_specs`` next to this package."""
    env = os.environ.get(ENV_SPECS_DIR, "").strip()
    return Path(env).expanduser() if env else BUILTIN_DIR


@functools.lru_cache(maxsize=8)
def _catalog_at(path_str: str) -> dict[str, GPUSpec]:
    path = Path(path_str)
    doc = read_yaml(path, "GPU catalog", MAX_YAML_BYTES)
    data, node = doc.data, doc.node
    if not isinstance(data, dict) or not isinstance(data.get("gpus"), list) or set(data) != {"gpus"}:
        raise ShardsimError(f"{show(path)}: expected exactly one top-level key 'gpus:' holding a list of GPUs")
    if not data["gpus"]:
        raise ShardsimError(f"{show(path)}: 'gpus:' lists no GPU; give at least one")
    catalog: dict[str, GPUSpec] = {}
    seen: dict[str, str] = {}
    for i, entry in enumerate(data["gpus"]):
        label = f"GPU {entry.get('name')!r}" if isinstance(entry, dict) and entry.get("name") else f"GPU #{i + 1}"
        try:
            gpu = GPUSpec.model_validate(entry)
        except ValidationError as exc:
            raise invalid(path, exc, node, ("gpus", i), label) from None
        for text in (gpu.name, *gpu.aliases, *gpu.device_names):
            key = _key(text)
            if not key:
                raise ShardsimError(f"{show(path)}: {label}: name or alias {text!r} has no letter or digit")
            if seen.get(key, gpu.name) != gpu.name:
                raise ShardsimError(f"{show(path)}: {label}: name or alias {text!r} already used by {seen[key]!r}")
            seen[key] = gpu.name
        catalog[gpu.name] = gpu
    return catalog


def _catalog_path() -> str:
    own = specs_dir() / CATALOG_FILE
    return str(own if is_file(own) else BUILTIN_DIR / CATALOG_FILE)


def _catalog() -> dict[str, GPUSpec]:
    """The catalog in specs_dir(), or the built-in one when that directory has none; parsed once, cached."""
    return _catalog_at(_catalog_path())


VENDOR_WORDS = frozenset({"nvidia", "tesla", "geforce", "amd", "instinct"})
"""Words a driver puts before the model ("NVIDIA", "Tesla", "GeForce", "AMD Instinct"); a name is also looked up
without them, so "NVIDIA H100" finds what "h100" finds."""


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _key(text: str) -> str:
    """A name as lookup compares it: lower case, letters and digits only ("NVIDIA A100-SXM4-80GB" and
    "nvidia a100 sxm4 80gb" are one key)."""
    return "".join(_words(text))


@functools.lru_cache(maxsize=8)
def _index_at(path_str: str) -> tuple[dict[str, GPUSpec], tuple[tuple[frozenset[str], GPUSpec], ...]]:
    """Every key of every GPU (name, aliases, device names) → the GPU; and each GPU's words, for partial names."""
    keys: dict[str, GPUSpec] = {}
    words = []
    for gpu in _catalog_at(path_str).values():
        texts = (gpu.name, *gpu.aliases, *gpu.device_names)
        keys.update((_key(t), gpu) for t in texts)
        words.append((frozenset(w for t in texts for w in _words(t)), gpu))
    return keys, tuple(words)


def gpu_catalog() -> dict[str, GPUSpec]:
    """Every catalog GPU keyed by canonical name."""
    return dict(_catalog())


def resolve_gpu(name: str | GPUSpec) -> GPUSpec:
    """A catalog GPU by name, alias or the name the driver reports (nvidia-smi, torch.cuda.get_device_name,
    rocm-smi: ``device_names``), ignoring case, spaces, hyphens and underscores; then the same without a vendor word
    ("NVIDIA", "Tesla", "AMD Instinct" …); then the one GPU whose names hold every word of ``name`` (one word with a
    digit at least: "L4 24GB"). A name that fits several GPUs is refused, naming them. A GPUSpec is returned as is."""
    if isinstance(name, GPUSpec):
        return name
    path = _catalog_path()
    keys, words_of = _index_at(path)
    text = str(name).strip()
    words = _words(text)
    bare = [w for w in words if w not in VENDOR_WORDS]
    for key in ("".join(words), "".join(bare)):
        if key in keys:
            return keys[key]
    if any(re.search(r"[0-9]", w) for w in bare):
        fits = list(dict.fromkeys(gpu.name for names, gpu in words_of if set(bare) <= names))
        if len(fits) == 1:
            return _catalog_at(path)[fits[0]]
        if fits:
            raise ShardsimError(f"GPU {text!r} is ambiguous: it fits {', '.join(fits[:-1])} and {fits[-1]}; "
                                f"give one of these names")
    known = ", ".join(g.aliases[0] if g.aliases else g.name for g in _catalog_at(path).values())
    raise ShardsimError(f"unknown GPU {text!r}; known: {known} (or a full name such as H100-SXM-80GB, or the name "
                        f"nvidia-smi prints, such as 'NVIDIA H100 80GB HBM3')")


def _cluster_files() -> list[Path]:
    folder = specs_dir()
    if not is_dir(folder):
        raise ShardsimError(f"cluster specs directory {str(folder)!r} does not exist; set {ENV_SPECS_DIR} to one")
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.name != CATALOG_FILE)


def _load_cluster_file(path: Path) -> ClusterSpec:
    doc = read_yaml(path, "cluster spec", MAX_YAML_BYTES)
    data, node = doc.data, doc.node
    if not isinstance(data, dict):
        raise ShardsimError(f"{show(path)}: expected a mapping of cluster fields, got {type(data).__name__}")
    if isinstance(data.get("gpu"), str):  # a catalog name or alias
        try:
            data = {**data, "gpu": resolve_gpu(data["gpu"])}
        except ShardsimError as exc:
            line = line_of(node, ("gpu",))
            raise ShardsimError(f"{show(path)}: " + (f"line {line}: " if line else "") + f"field 'gpu': {exc}") from None
    try:
        return ClusterSpec.model_validate(data)
    except ValidationError as exc:
        raise invalid(path, exc, node) from None


def _declared_name(path: Path) -> str | None:
    """The lower-cased ``name:`` a cluster file declares; None when it does not parse."""
    try:
        data = read_yaml(path, "cluster spec", MAX_YAML_BYTES).data
    except ShardsimError:
        return None
    return str(data.get("name", "")).strip().lower() if isinstance(data, dict) else None


def load_cluster(name_or_path: str | os.PathLike[str]) -> ClusterSpec:
    """A cluster from a YAML path, or by file stem / ``name`` among the files in specs_dir()."""
    text = str(name_or_path).strip()
    path = Path(text).expanduser()
    looks_like_path = path.suffix in (".yaml", ".yml") or "/" in text or os.sep in text
    if looks_like_path and is_file(path):
        return _load_cluster_file(path)
    files = _cluster_files()
    known = ", ".join(p.stem for p in files)
    if looks_like_path and ("/" in text or os.sep in text):
        raise ShardsimError(f"cluster file {text!r} not found; give a YAML path or a cluster name: {known}")
    key = (path.stem if looks_like_path else text).lower()  # a bare 'x.yaml' is also looked up in specs_dir()
    match = next((p for p in files if p.stem.lower() == key), None) or next(
        (p for p in files if key and _declared_name(p) == key), None)
    if match is None:
        raise ShardsimError(f"unknown cluster {text!r}; known: {known} (or a path to a YAML file)")
    return _load_cluster_file(match)


def list_clusters() -> list[ClusterSpec]:
    """Every cluster file in specs_dir() (not the GPU catalog), sorted by name."""
    return sorted((_load_cluster_file(p) for p in _cluster_files()), key=lambda c: c.name)


