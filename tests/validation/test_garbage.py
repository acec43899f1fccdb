"""Validation cannot pass on garbage: a checkpoint of another model, a truncated or missing shard, a damaged cached
checkpoint, NaN weights. A small Qwen3 config (64 wide, 2 layers) keeps the checkpoints at a few hundred KB.

The refusals happen before Ray starts (about 2 s each: one process importing torch); the two runs that go through
Ray are marked slow (about 20 s each).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import SMALL

EXE = str(Path(sys.executable).parent / "shardsim")



def small_config(folder: Path, **changes) -> Path:
    path = folder / "config.json"
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**SMALL, **changes}))
    return path


def write_small_checkpoint(folder: Path, **changes) -> Path:
    from shardsim.launch.checkpoints.files import write_checkpoint

    from shardsim.presets import load_config_file

    spec = load_config_file(small_config(folder / "src", **changes))
    return write_checkpoint(spec, folder / "ckpt", source_config={**SMALL, **changes})


def validate(tmp_path: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "SHARDSIM_CACHE": str(tmp_path / "build"), "RAY_AUTH_MODE": "disabled"}
    return subprocess.run([EXE, "validate", *args, "--context", "32", "--run-dir", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=timeout, env=env)


def refused(proc: subprocess.CompletedProcess, *words: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    for word in words:
        assert word in lines[0], lines[0]


def test_checkpoint_of_another_model_is_refused_before_ray(tmp_path):
    ckpt = write_small_checkpoint(tmp_path)
    wider = small_config(tmp_path / "wide", hidden_size=128)
    refused(validate(tmp_path, "--config", str(wider), "--checkpoint", str(ckpt)), "is not", "hidden_size")
    # Same width, other vocabulary: the shapes differ, found in the safetensors headers.
    other = small_config(tmp_path / "vocab", vocab_size=1024)
    refused(validate(tmp_path, "--config", str(other), "--checkpoint", str(ckpt)), "vocab_size")


def test_truncated_and_missing_shards_are_named_before_ray(tmp_path):
    ckpt = write_small_checkpoint(tmp_path)
    config = str(tmp_path / "src" / "config.json")
    shard = next(ckpt.glob("*.safetensors"))
    with open(shard, "r+b") as handle:
        handle.truncate(shard.stat().st_size - 100)
    refused(validate(tmp_path, "--config", config, "--checkpoint", str(ckpt)), shard.name, "truncated")
    shard.unlink()
    refused(validate(tmp_path, "--config", config, "--checkpoint", str(ckpt)), shard.name, "missing")
    (ckpt / "model.safetensors.index.json").unlink()
    refused(validate(tmp_path, "--config", config, "--checkpoint", str(ckpt)), "model.safetensors")


@pytest.mark.parametrize("where", ["a file", "nothing", "no config"])
def test_bad_checkpoint_folders_are_one_line(tmp_path, where):
    config = small_config(tmp_path / "src")
    target = tmp_path / "target"
    if where == "a file":
        target.write_text("not a folder")
    elif where == "no config":
        target.mkdir()
    refused(validate(tmp_path, "--config", str(config), "--checkpoint", str(target)))


@pytest.mark.slow
def test_nan_in_the_checkpoint_fails_the_run(tmp_path):
    """About 20 s (one run through Ray)."""
    from safetensors.torch import load_file, save_file

    ckpt = write_small_checkpoint(tmp_path)
    shard = next(ckpt.glob("*.safetensors"))
    tensors = load_file(str(shard))
    name = next(n for n in tensors if n.endswith("input_layernorm.weight"))
    tensors[name][0] = float("nan")
    save_file(tensors, str(shard), metadata={"format": "pt"})
    proc = validate(tmp_path, "--config", str(tmp_path / "src" / "config.json"), "--checkpoint", str(ckpt), "--json")
    assert proc.returncode == 1, proc.stderr[-2000:]
    record = json.loads(proc.stdout)
    assert record["passed"] is False and "not finite" in record["logits"]["error"]


@pytest.mark.slow
def test_damaged_cached_checkpoint_is_rewritten(tmp_path):
    """About 40 s (two runs through Ray)."""
    config = str(small_config(tmp_path / "src"))
    first = validate(tmp_path, "--config", config, "--json")
    assert first.returncode == 0, first.stderr[-2000:]
    cached = next((tmp_path / "build" / "checkpoints").glob("*/*.safetensors"))
    with open(cached, "r+b") as handle:  # same size, other bytes: only the checksum can tell
        handle.seek(cached.stat().st_size - 16)
        handle.write(b"\x7f" * 16)
    second = validate(tmp_path, "--config", config, "--json")
    assert second.returncode == 0, second.stderr[-2000:]
    assert "is damaged" in second.stderr and "writing it again" in second.stderr
    assert json.loads(second.stdout)["passed"] is True
