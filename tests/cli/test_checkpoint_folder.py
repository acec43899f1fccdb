"""``shardsim plan FOLDER``: a real checkpoint folder written here (config.json + safetensors shards), its headers'
exact bytes against the planned weights, and every malformed folder refused in one line with exit 2.

The model is Qwen3-0.6B's published config.json with ``num_hidden_layers`` cut to 2 and ``vocab_size`` to 2,048 (so
the two shards weigh ~64 MB, not ~380 MB); the tensors carry the names and shapes ``core.tensors.checkpoint_tensors``
lists, and the expected bytes are summed here from the config's numbers, not through shardsim.
"""

from __future__ import annotations

import json
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PRESETS_DIR

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

SHARDSIM = Path(sys.executable).parent / "shardsim"
if not SHARDSIM.exists():  # pragma: no cover - a venv without the console script
    SHARDSIM = Path(shutil.which("shardsim") or SHARDSIM)


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(SHARDSIM), *args], capture_output=True, text=True, timeout=120)


def small_config() -> dict:
    config = json.loads((PRESETS_DIR / "Qwen3-0.6B.json").read_text())
    config.update(num_hidden_layers=2, max_window_layers=2, vocab_size=2048)
    return config


def expected_bf16_bytes(c: dict) -> int:
    """Every weight of the 2-layer model, bf16 (2 bytes), the tied embedding stored once."""
    h, d, inter, vocab = c["hidden_size"], c["head_dim"], c["intermediate_size"], c["vocab_size"]
    q, kv = c["num_attention_heads"] * d, c["num_key_value_heads"] * d
    attention = h * q + 2 * h * kv + q * h + 2 * d          # q, k, v, o projections; q_norm, k_norm
    mlp = 3 * h * inter                                     # gate, up, down
    norms = 2 * h                                           # input_layernorm, post_attention_layernorm
    params = vocab * h + c["num_hidden_layers"] * (attention + mlp + norms) + h  # + final norm; no lm_head (tied)
    return 2 * params


def model_tensors(config: dict) -> dict:
    from shardsim.core.config import spec_from_config
    from shardsim.core.tensors import checkpoint_tensors

    spec = spec_from_config(config, name="small")
    return {name: torch.zeros(shape, dtype=torch.bfloat16) for name, shape in checkpoint_tensors(spec)}


def write_folder(folder: Path, config: dict, tensors: dict) -> Path:
    """Two shards (the embedding and layer 0; the rest) and the index transformers writes for them."""
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    names = sorted(tensors)
    first = [n for n in names if "embed_tokens" in n or ".layers.0." in n]
    shards = {"model-00001-of-00002.safetensors": first,
              "model-00002-of-00002.safetensors": [n for n in names if n not in first]}
    for file_name, members in shards.items():
        safetensors_torch.save_file({n: tensors[n] for n in members}, str(folder / file_name), metadata={"format": "pt"})
    weight_map = {n: f for f, members in shards.items() for n in members}
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return folder


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> tuple[Path, dict]:
    config = small_config()
    tensors = model_tensors(config)
    return write_folder(tmp_path_factory.mktemp("ckpt") / "Qwen3-0.6B-2layers", config, tensors), config


def test_headers_total_equals_independent_sum_and_plan(checkpoint):
    folder, config = checkpoint
    p = run("plan", str(folder), "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    ck = out["checkpoint"]
    assert ck["bytes"] == expected_bf16_bytes(config) == 67_120_128
    assert ck["planned_bytes"] == ck["bytes"] == out["model"]["weight_bytes"]
    assert ck["match"] is True
    assert ck["files"] == 2
    assert ck["tensors"] == 1 + 2 * 11 + 1  # embed, 11 tensors per layer, final norm
    assert ck["path"].endswith("Qwen3-0.6B-2layers")
    assert not any("safetensors headers" in w for w in out["warnings"])


def test_text_has_one_checkpoint_line_after_the_header(checkpoint):
    folder, _ = checkpoint
    p = run("plan", str(folder))
    assert p.returncode == 0, p.stderr
    lines = p.stdout.splitlines()
    assert lines[1].startswith("checkpoint ") and "2 safetensors files · 24 tensors · 67,120,128 B" in lines[1]
    assert "equals the planned weights" in lines[1]
    assert "warning" not in p.stdout


def test_preset_plan_has_no_checkpoint(checkpoint):
    p = run("plan", "0.6b", "--json")
    assert "checkpoint" not in json.loads(p.stdout)
    folder, _ = checkpoint
    p = run("plan", "--config", str(folder), "--json")  # --config reads config.json alone
    assert p.returncode == 0, p.stderr
    assert "checkpoint" not in json.loads(p.stdout)


def test_missing_tensor_gives_match_false_and_a_warning(tmp_path):
    config = small_config()
    tensors = model_tensors(config)
    dropped = tensors.pop("model.layers.1.mlp.down_proj.weight")
    folder = tmp_path / "missing"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    safetensors_torch.save_file(tensors, str(folder / "model.safetensors"))
    missing = 2 * dropped.numel()
    p = run("plan", str(folder), "--json")
    assert p.returncode == 0, p.stderr
    ck = json.loads(p.stdout)["checkpoint"]
    assert (ck["match"], ck["files"], ck["tensors"]) == (False, 1, 23)
    assert ck["planned_bytes"] - ck["bytes"] == missing == 2 * 3072 * 1024
    text = run("plan", str(folder)).stdout
    warning = [line for line in text.splitlines() if line.startswith("warning:") and "headers" in line]
    assert len(warning) == 1 and f"{ck['bytes']:,} B" in warning[0] and f"{ck['planned_bytes']:,} B" in warning[0]


# ---------------------------------------------------------------- hostile folders: one line, exit 2


def raw_shard(header: bytes, data: bytes = b"", length: int | None = None) -> bytes:
    """A safetensors file by hand: the little-endian u64 header length, the header, the data."""
    return struct.pack("<Q", len(header) if length is None else length) + header + data


def hostile_folder(tmp_path: Path, shard: bytes | None, config: bool = True) -> Path:
    folder = tmp_path / "hostile"
    folder.mkdir()
    if config:
        (folder / "config.json").write_text(json.dumps(small_config()))
    if shard is not None:
        (folder / "model.safetensors").write_bytes(shard)
    return folder


def truncated_shard() -> bytes:
    import io

    buffer = io.BytesIO(safetensors_torch.save({"w": torch.zeros(64, dtype=torch.bfloat16)}))
    return buffer.getvalue()[:-10]


HOSTILE = {
    "no config.json": (lambda: raw_shard(b"{}"), False, "has no config.json"),
    "no safetensors": (lambda: None, True, "has no *.safetensors files"),
    "truncated data": (truncated_shard, True, "is truncated"),
    "shorter than the length word": (lambda: b"\x01\x02", True, "is truncated"),
    "header length beyond the file": (lambda: raw_shard(b"{}", length=4096), True, "runs past the end"),
    "header over 100 MB": (lambda: raw_shard(b"{}", length=200_000_000), True, "over the 100,000,000-byte limit"),
    "header not JSON": (lambda: raw_shard(b"hello"), True, "malformed JSON"),
    "header not UTF-8": (lambda: raw_shard(b"\xff\xfe"), True, "not UTF-8"),
    "header a list": (lambda: raw_shard(b"[]"), True, "expected a JSON object"),
    "nested too deep": (lambda: raw_shard(b"[" * 100_000 + b"]" * 100_000), True, "nested deeper"),
    "nested past a header's 3 levels": (lambda: raw_shard(b'{"a": {"b": {"c": {"d": 1}}}}'), True, "nested deeper"),
    "unknown dtype": (lambda: raw_shard(b'{"w": {"dtype": "Q7", "shape": [1], "data_offsets": [0, 1]}}', b"\0"),
                      True, "not a safetensors dtype"),
    "offsets disagree with shape": (lambda: raw_shard(b'{"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}',
                                                      b"\0" * 4), True, "needs 8"),
    "negative dim": (lambda: raw_shard(b'{"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}', b"\0" * 4),
                     True, "whole numbers"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_folder_is_one_line_exit_2(tmp_path, case):
    make, with_config, message = HOSTILE[case]
    folder = hostile_folder(tmp_path, make(), with_config)
    p = run("plan", str(folder))
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert message in p.stderr, p.stderr
    assert len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert "Traceback" not in p.stderr and p.stdout == ""


def test_index_naming_a_file_outside_the_folder_is_refused(tmp_path):
    folder = hostile_folder(tmp_path, raw_shard(b"{}"))
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"w": "../model.safetensors"}}))
    p = run("plan", str(folder))
    assert p.returncode == 2 and "plain file names" in p.stderr and len(p.stderr.strip().splitlines()) == 1
