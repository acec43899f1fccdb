"""Naming models as users do: presets by alias, full name or Hugging Face id in any case; a published -FP8 id and
``--quant fp8`` on its base model are the same weights; an unknown id is one line, exit 2, naming what is accepted."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from shardsim.errors import ShardsimError
from shardsim.presets import PRESET_ALIASES, preset_config, resolve_model

SHARDSIM = Path(sys.executable).parent / "shardsim"
if not SHARDSIM.exists():  # pragma: no cover - a venv without the console script
    SHARDSIM = Path(shutil.which("shardsim") or SHARDSIM)


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SHARDSIM), *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", ["Qwen/Qwen3-8B", "Qwen3-8B", "qwen3-8b", "QWEN/QWEN3-8B", "qwen/qwen3-8b", "8b",
                                  " Qwen/Qwen3-8B "])
def test_spellings_of_one_model(name):
    assert resolve_model(name).name == "Qwen3-8B"


@pytest.mark.parametrize("full", list(PRESET_ALIASES))
def test_every_preset_by_its_hugging_face_id(full):
    assert resolve_model(f"Qwen/{full}").name == full
    assert resolve_model(f"qwen/{full.lower()}").name == full


@pytest.mark.parametrize("base", ["Qwen3-32B", "Qwen3-30B-A3B", "Qwen3-235B-A22B"])
def test_fp8_checkpoint_config_is_its_base_plus_quantization_config(base):
    """The shipped -FP8 config.json is the base one plus quantization_config: fp8 e4m3, 128×128 blocks, dynamic
    activations; the MoE ones also list modules_to_not_convert, which names only lm_head, the layer norms and the
    router gates, the modules ``--quant fp8`` keeps in bf16 anyway (so both describe the same checkpoint)."""
    fp8 = preset_config(f"{base}-FP8")
    quant = fp8.pop("quantization_config")
    assert fp8 == preset_config(base)
    kept = quant.pop("modules_to_not_convert", [])
    assert quant == {"activation_scheme": "dynamic", "fmt": "e4m3", "quant_method": "fp8",
                     "weight_block_size": [128, 128]}
    kinds = {re.sub(r"\.\d+\.", ".N.", module) for module in kept}
    assert kinds <= {"lm_head", "model.layers.N.input_layernorm", "model.layers.N.post_attention_layernorm",
                     "model.layers.N.mlp.gate"}


def without_name(document: dict) -> dict:
    document["model"].pop("name")
    return document


@pytest.mark.parametrize("base,layout", [("Qwen/Qwen3-32B", ["--tp", "2"]),
                                         ("Qwen/Qwen3-30B-A3B", ["--tp", "2", "--ep", "2"]),
                                         ("Qwen/Qwen3-235B-A22B", ["--tp", "8"])])
def test_quant_fp8_on_the_base_id_equals_the_fp8_id(base, layout):
    by_flag = run("plan", base, "--quant", "fp8", *layout, "--json")
    by_id = run("plan", f"{base}-FP8", *layout, "--json")
    both_ways = run("plan", f"{base}-FP8", "--quant", "fp8", *layout, "--json")
    assert by_flag.returncode == by_id.returncode == both_ways.returncode == 0, by_flag.stderr + by_id.stderr
    flag, fp8 = json.loads(by_flag.stdout), json.loads(by_id.stdout)
    assert flag["model"]["weight_bytes"] == fp8["model"]["weight_bytes"]
    assert [r["bytes"]["weights"] for r in flag["ranks"]] == [r["bytes"]["weights"] for r in fp8["ranks"]]
    assert without_name(flag) == without_name(fp8) == without_name(json.loads(both_ways.stdout))


@pytest.mark.parametrize("name", ["Qwen/Qwen9-7B", "meta-llama/Llama-3-8B", "Qwen/Qwen3-8B-Chat", "qwen3-9b"])
def test_unknown_id_is_one_line_naming_what_is_accepted(name):
    p = run("plan", name)
    assert p.returncode == 2 and p.stdout == ""
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1, p.stderr
    assert "unknown model" in lines[0] and name in lines[0]
    assert "shardsim models" in lines[0] and "--config PATH" in lines[0] and "folder" in lines[0]


def test_trailing_slash_that_is_not_a_folder():
    with pytest.raises(ShardsimError, match="no such folder"):
        resolve_model("Qwen/Qwen3-8B/")
