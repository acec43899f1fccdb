"""The tensor inventory: byte-exact model totals, parameter counts, tensor counts, presets and config loading."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import ACTIVE_PARAMS, BF16_PRESETS, BF16_TOTAL_BYTES, PARAMS, PRESETS_DIR, Cfg

from shardsim.core.memory.weights import total_weight_bytes
from shardsim.core.tensors import active_parameter_count, checkpoint_tensors, inventory, parameter_count
from shardsim.errors import ShardsimError
from shardsim.presets import get_preset, load_config_file


def params_from_config(c: Cfg) -> int:
    """Parameters from the config numbers alone (tied lm_head counted once)."""
    attn = c.nh * c.hd * c.h + 2 * c.kv * c.hd * c.h + c.h * c.nh * c.hd  # q, k, v, o
    norms = 2 * c.h + 2 * c.hd                                              # input/post norms, q_norm, k_norm
    dense_mlp = 3 * c.i * c.h                                               # gate, up, down
    moe_mlp = c.E * c.h + c.E * 3 * c.mi * c.h                              # router + experts
    n_moe = len(c.moe_layers)
    layers = c.L * (attn + norms) + n_moe * moe_mlp + (c.L - n_moe) * dense_mlp
    return layers + c.V * c.h + c.h + (0 if c.tied else c.V * c.h)        # embed, final norm, lm_head


@pytest.mark.parametrize("name", BF16_PRESETS)
def test_total_weight_bytes_bf16_is_byte_exact(name):
    assert total_weight_bytes(get_preset(name)) == BF16_TOTAL_BYTES[name]


@pytest.mark.parametrize("name", BF16_PRESETS)
def test_total_bytes_are_two_bytes_per_config_parameter(name):
    # bf16: 2 B per parameter, parameters counted from config.json alone.
    assert total_weight_bytes(get_preset(name)) == 2 * params_from_config(Cfg(name))


@pytest.mark.parametrize("name", BF16_PRESETS)
def test_parameter_count(name):
    spec = get_preset(name)
    assert parameter_count(spec) == PARAMS[name]
    assert parameter_count(spec) == params_from_config(Cfg(name))


@pytest.mark.parametrize("name", BF16_PRESETS)
def test_active_parameter_count(name):
    spec = get_preset(name)
    c = Cfg(name)
    if c.moe:
        assert active_parameter_count(spec) == ACTIVE_PARAMS[name]
        # active = all − the (E − k) experts a token skips in each MoE layer
        skipped = len(c.moe_layers) * (c.E - c.k) * 3 * c.mi * c.h
        assert active_parameter_count(spec) == PARAMS[name] - skipped
    else:
        assert active_parameter_count(spec) == PARAMS[name]


def test_235b_checkpoint_tensor_count():
    # 94 layers × (input_ln, q, k, v, o, q_norm, k_norm, post_ln, router = 9 + 128 experts × 3 = 384) = 94 × 393
    # = 36,942; + embed, final norm, lm_head = 36,945.
    names = [n for n, _ in checkpoint_tensors(get_preset("235b"))]
    assert len(names) == 94 * (9 + 128 * 3) + 3 == 36_945
    assert len(set(names)) == len(names)
    assert "model.layers.93.mlp.experts.127.down_proj.weight" in names
    assert "lm_head.weight" in names


def test_tied_checkpoint_has_no_lm_head():
    names = {n for n, _ in checkpoint_tensors(get_preset("0.6b"))}
    assert "lm_head.weight" not in names
    assert "model.embed_tokens.weight" in names
    # 28 layers × 11 tensors + embed + final norm
    assert len(names) == 28 * 11 + 2


def test_checkpoint_shapes_follow_config():
    c = Cfg("Qwen3-30B-A3B")
    shapes = dict(checkpoint_tensors(get_preset("30b-a3b")))
    assert shapes["model.layers.0.self_attn.q_proj.weight"] == (c.nh * c.hd, c.h) == (4096, 2048)
    assert shapes["model.layers.0.self_attn.k_proj.weight"] == (c.kv * c.hd, c.h) == (512, 2048)
    assert shapes["model.layers.0.self_attn.o_proj.weight"] == (c.h, c.nh * c.hd) == (2048, 4096)
    assert shapes["model.layers.0.mlp.gate.weight"] == (c.E, c.h) == (128, 2048)
    assert shapes["model.layers.47.mlp.experts.5.down_proj.weight"] == (c.h, c.mi) == (2048, 768)
    assert shapes["model.embed_tokens.weight"] == (c.V, c.h)


@pytest.mark.parametrize("name", BF16_PRESETS)
def test_head_dim_comes_from_config_not_division(name):
    spec = get_preset(name)
    assert spec.head_dim == 128


def test_head_dim_0_6b_is_128_not_64():
    spec = get_preset("0.6b")
    assert spec.hidden_size // spec.num_heads == 64  # 1024 / 16: what a derived head_dim would be
    assert spec.head_dim == 128
    shapes = dict(checkpoint_tensors(spec))
    assert shapes["model.layers.0.self_attn.q_proj.weight"] == (16 * 128, 1024)
    assert shapes["model.layers.0.self_attn.q_norm.weight"] == (128,)


@pytest.mark.parametrize("alias,full", [
    ("235b", "Qwen3-235B-A22B"),
    ("30b-a3b", "Qwen3-30B-A3B"),
    ("8b", "Qwen3-8B"),
    ("Qwen3-235B-A22B", "Qwen3-235B-A22B"),
    ("qwen/qwen3-8b", "Qwen3-8B"),
    ("Qwen/Qwen3-8B", "Qwen3-8B"),
    ("  8B ", "Qwen3-8B"),
])
def test_aliases_resolve(alias, full):
    assert get_preset(alias).name == full


@pytest.mark.parametrize("bad", ["7b", "qwen3-9b", "", "llama-8b"])
def test_unknown_preset_raises(bad):
    with pytest.raises(ShardsimError, match="unknown model"):
        get_preset(bad)


def test_config_file_gives_same_totals(tmp_path):
    path = tmp_path / "config.json"
    shutil.copy(PRESETS_DIR / "Qwen3-8B.json", path)
    spec = load_config_file(path)
    assert total_weight_bytes(spec) == 16_381_470_720
    assert parameter_count(spec) == 8_190_735_360
    # a directory holding config.json works too
    assert total_weight_bytes(load_config_file(tmp_path)) == 16_381_470_720


def test_config_unsupported_architecture(tmp_path):
    config = json.loads((PRESETS_DIR / "Qwen3-8B.json").read_text())
    config["architectures"] = ["LlamaForCausalLM"]
    path = tmp_path / "llama.json"
    path.write_text(json.dumps(config))
    with pytest.raises(ShardsimError) as exc:
        load_config_file(path)
    msg = str(exc.value)
    assert "LlamaForCausalLM" in msg
    assert "Qwen3ForCausalLM" in msg and "Qwen3MoeForCausalLM" in msg


def test_config_malformed_json_names_line(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{\n  "hidden_size": 4096,\n  "num_hidden_layers": ,\n}\n')
    with pytest.raises(ShardsimError, match=r"line 3"):
        load_config_file(path)


def test_config_missing_hidden_size_names_field(tmp_path):
    config = json.loads((PRESETS_DIR / "Qwen3-8B.json").read_text())
    del config["hidden_size"]
    path = tmp_path / "nohidden.json"
    path.write_text(json.dumps(config))
    with pytest.raises(ShardsimError, match="hidden_size"):
        load_config_file(path)


def test_config_missing_file(tmp_path):
    with pytest.raises(ShardsimError, match="not found"):
        load_config_file(tmp_path / "nope.json")


def test_inventory_is_in_checkpoint_order():
    inv = inventory(get_preset("8b"))
    assert inv[0].name == "model.embed_tokens.weight"
    assert inv[-2].name == "model.norm.weight"
    assert inv[-1].name == "lm_head.weight"
    assert [t.name for t in inv[1:12]] == [
        "model.layers.0." + s for s in (
            "input_layernorm.weight", "self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight",
            "self_attn.o_proj.weight", "self_attn.q_norm.weight", "self_attn.k_norm.weight",
            "post_attention_layernorm.weight", "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight")
    ]
