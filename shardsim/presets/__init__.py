"""The Qwen3 presets and config.json files: reading them from disk into ``ModelSpec``.

Presets are the official ``config.json`` files of the Qwen3 checkpoints, shipped in this package as data (copied
from the published Hugging Face repos ``Qwen/Qwen3-*``).

May import: shardsim.core, shardsim.files, shardsim.constants, shardsim.errors.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from shardsim.constants import MAX_CONFIG_BYTES
from shardsim.core.config import spec_from_config
from shardsim.core.model import ModelSpec
from shardsim.errors import ShardsimError
from shardsim.files import is_dir, read_json, show

PRESETS_DIR = Path(__file__).resolve().parent

# Preset file stem -> short aliases accepted on the command line (case-insensitive).
PRESET_ALIASES: dict[str, tuple[str, ...]] = {
    "Qwen3-0.6B": ("0.6b", "qwen3-0.6b"),
    "Qwen3-1.7B": ("1.7b", "qwen3-1.7b"),
    "Qwen3-4B": ("4b", "qwen3-4b"),
    "Qwen3-8B": ("8b", "qwen3-8b"),
    "Qwen3-14B": ("14b", "qwen3-14b"),
    "Qwen3-32B": ("32b", "qwen3-32b"),
    "Qwen3-30B-A3B": ("30b-a3b", "30b", "30ba3b", "qwen3-30b-a3b"),
    "Qwen3-235B-A22B": ("235b-a22b", "235b", "235ba22b", "qwen3-235b-a22b"),
    "Qwen3-32B-FP8": ("32b-fp8", "qwen3-32b-fp8"),
    "Qwen3-30B-A3B-FP8": ("30b-a3b-fp8", "30b-fp8", "qwen3-30b-a3b-fp8"),
    "Qwen3-235B-A22B-FP8": ("235b-a22b-fp8", "235b-fp8", "qwen3-235b-a22b-fp8"),
    # Hybrids (Gated DeltaNet + gated attention), Qwen3.5 / 3.6 with their vision tower, Qwen3-VL
    "Qwen3-Next-80B-A3B-Instruct": ("next-80b-a3b", "qwen3-next-80b-a3b", "qwen3-next-80b-a3b-instruct"),
    "Qwen3.5-0.8B-Base": ("3.5-0.8b", "qwen3.5-0.8b-base"),
    "Qwen3.5-4B": ("3.5-4b", "qwen3.5-4b"),
    "Qwen3.5-9B": ("3.5-9b", "qwen3.5-9b"),
    "Qwen3.5-27B": ("3.5-27b", "qwen3.5-27b"),
    "Qwen3.5-35B-A3B": ("3.5-35b-a3b", "qwen3.5-35b-a3b"),
    "Qwen3.6-27B": ("3.6-27b", "qwen3.6-27b"),
    "Qwen3.6-35B-A3B": ("3.6-35b-a3b", "qwen3.6-35b-a3b"),
    "Qwen3-VL-8B-Instruct": ("vl-8b", "qwen3-vl-8b", "qwen3-vl-8b-instruct"),
    "Qwen3-VL-30B-A3B-Instruct": ("vl-30b-a3b", "qwen3-vl-30b-a3b", "qwen3-vl-30b-a3b-instruct"),
    "Qwen3-VL-235B-A22B-Instruct": ("vl-235b-a22b", "qwen3-vl-235b-a22b", "qwen3-vl-235b-a22b-instruct"),
}
CHECKPOINT_FACTS = "checkpoint_facts.json"
"""Per preset, what its config.json does not say: the tensors the checkpoint stores in fp32, and the checkpoint's
total bytes, each with the tensor table they were read from."""



def config_path(path: str | Path) -> Path:
    """The config.json a ``--config`` value names: the file itself, or ``config.json`` inside a directory."""
    text = str(path)
    p = Path(path)
    if is_dir(p):
        return p / "config.json"
    if text.endswith(("/", "\\")):
        raise ShardsimError(f"config path {text[:200]!r} ends with a slash but is not a folder")
    return p


def read_config(path: str | Path) -> dict:
    """The JSON object of a config.json (or of the one in a checkpoint directory), read offline and bounded
    (``shardsim.files``)."""
    p = config_path(path)
    config = read_json(p, "config file", MAX_CONFIG_BYTES)
    if not isinstance(config, dict):
        raise ShardsimError(f"{show(p)}: expected a JSON object (a Hugging Face config.json)")
    return config


def load_config_file(path: str | Path) -> ModelSpec:
    """A ModelSpec from a config.json (or a checkpoint directory holding one), read offline."""
    p = config_path(path)
    name = p.parent.name if p.name == "config.json" and p.parent.name else p.stem
    return spec_from_config(read_config(p), name=name or "custom", source=str(p))


def preset_config(name: str) -> dict:
    """The official config.json of a preset, by alias or full name."""
    return json.loads((PRESETS_DIR / f"{_preset_file(name)}.json").read_text())


@lru_cache(maxsize=None)
def _alias_table() -> dict[str, str]:
    table: dict[str, str] = {}
    for full, aliases in PRESET_ALIASES.items():
        table[full.lower()] = full
        table[("qwen/" + full).lower()] = full
        for alias in aliases:
            table[alias] = full
    return table


@lru_cache(maxsize=None)
def get_preset(name: str) -> ModelSpec:
    """A preset by alias (``235b``, ``8b``, ``30b-a3b``) or full name (``Qwen3-235B-A22B``), case-insensitive."""
    full = _preset_file(name)
    spec = spec_from_config(preset_config(full), name=full, source=f"preset {full}")
    facts = checkpoint_facts().get(full, {})
    update = {"fp32_tensors": tuple(facts.get("fp32_tensors") or ()),
              "mtp_experts_fused": bool(facts.get("mtp_experts_fused", False))}
    return spec.model_copy(update=update) if any(update.values()) else spec


@lru_cache(maxsize=None)
def checkpoint_facts() -> dict:
    """``checkpoint_facts.json``: per preset, fp32 tensors, total bytes and their source."""
    return json.loads((PRESETS_DIR / CHECKPOINT_FACTS).read_text())


def _preset_file(name: str) -> str:
    full = _alias_table().get(str(name).strip().lower())
    if full is None:
        raise ShardsimError(f"unknown model {str(name)[:80]!r}: not a shipped preset, its Hugging Face id or a "
                            "folder; accepted: a preset or alias (listed by: shardsim models), its Hugging Face id "
                            "(Qwen/Qwen3-8B, any case), --config PATH to a config.json, or the folder "
                            "of a downloaded checkpoint (config.json and *.safetensors)")
    return full


def resolve_model(name: str | None, config: str | None = None) -> ModelSpec:
    """The model of a command: ``--config PATH``, or MODEL: a checkpoint folder when one of that name exists, else
    a preset by alias, full name or Hugging Face id (``Qwen/Qwen3-8B``), case-insensitive."""
    if config and name:
        raise ShardsimError(f"give a model name ({name!r:.40}) or --config PATH, not both")
    if config:
        return load_config_file(config)
    if not name:
        raise ShardsimError("no model given; name a preset (e.g. 235b, 8b) or pass --config PATH")
    from shardsim.presets.checkpoints import checkpoint_folder, folder_config

    folder = checkpoint_folder(name)
    if folder is not None:
        return load_config_file(folder_config(folder))
    if str(name).endswith(("/", "\\")):
        raise ShardsimError(f"model {str(name)[:200]!r}: no such folder (the name ends with a slash); a checkpoint "
                            "folder holds config.json and *.safetensors")
    return get_preset(name)
