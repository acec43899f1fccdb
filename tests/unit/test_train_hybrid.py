"""Training plans of the hybrids (Qwen3-Next, Qwen3.5 / 3.6): the trained module's parameters in transformers'
registration order, what a Gated-DeltaNet and a gated attention layer keep for backward with the arithmetic
written out (measured to the byte in tests/validation/test_validate_train_hybrid.py), the stage's tail, the refusals, and
the CLI."""

from __future__ import annotations

import json

import pytest

from shardsim.core.layout import Layout, validate_layout
from shardsim.core.tensors import numel_of, parameter_count
from shardsim.core.train.deltanet_activations import (deltanet_mixer_bytes, gated_attention_bytes,
                                                      hybrid_layer_bytes, hybrid_tail_bytes)
from shardsim.core.train.params import hf_parameter_shapes, rank_params, trained_model
from shardsim.core.train.setup import TrainSetup
from shardsim.errors import ShardsimError
from shardsim.presets import get_preset, preset_config

HYBRIDS = ("next-80b-a3b", "3.5-0.8b", "3.5-27b", "3.5-35b-a3b", "3.6-35b-a3b")


@pytest.mark.parametrize("name", HYBRIDS)
def test_parameter_shapes_are_the_modules_in_registration_order(name):
    """AutoModelForCausalLM from the published config.json (4 layers: 3 Gated-DeltaNet, 1 gated attention), on the
    meta device: Qwen3_5(Moe)ForCausalLM for Qwen3.5 / 3.6 (no vision tower), no MTP head; ``parameters()`` order is
    the order DeepSpeed flattens and FSDP shards."""
    torch = pytest.importorskip("torch")
    from transformers import CONFIG_MAPPING, AutoModelForCausalLM

    config = preset_config(name)
    text = config.get("text_config", config)
    text["num_hidden_layers"] = 4
    if "layer_types" in text:
        text["layer_types"] = text["layer_types"][:4]
    fields = {k: v for k, v in config.items() if k != "model_type"}
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(CONFIG_MAPPING[config["model_type"]](**fields))
    assert not any(n.startswith(("model.visual", "mtp")) for n, _ in model.named_parameters())
    spec = get_preset(name).truncated(4)
    assert list(hf_parameter_shapes(spec, 0, 3, True, True)) == [tuple(p.shape) for p in model.parameters()]


def test_the_trained_module_is_the_language_model():
    # Qwen3.5-0.8B's language model, by hand (tied embedding once):
    #   embed 248,320 × 1,024 = 254,279,680
    #   Gated-DeltaNet: dt_bias, A_log 16 + 16, conv1d 6,144 × 4 = 24,576, norm 128, out_proj 1,024 × 2,048,
    #     in_proj_qkv 6,144 × 1,024, in_proj_z 2,048 × 1,024, in_proj_b / _a 2 × 16 × 1,024 → 10,543,264
    #   gated attention: q_proj 4,096 × 1,024 (2 × 8 heads × 256), k / v 2 × 512 × 1,024, o 1,024 × 2,048,
    #     q_norm, k_norm 2 × 256 → 7,340,544
    #   MLP 3 × 3,584 × 1,024 = 11,010,048; norms 2 × 1,024 per layer; the final norm 1,024
    #   18 linear + 6 full layers: 18 × 21,555,360 + 6 × 18,352,640 + 254,279,680 + 1,024 = 752,393,024
    spec = get_preset("3.5-0.8b")
    trained = trained_model(spec)
    assert trained.vision is None and spec.vision is not None
    p = rank_params(trained, validate_layout(trained, Layout()), 0)
    assert p.total == sum(numel_of(s) for s in p.hf_shapes) == 752_393_024
    assert parameter_count(spec) == 873_438_784   # the checkpoint: + the vision tower and the MTP head
    # Qwen3-Next: no vision tower; its MTP head (1,650,471,424 elements) is never loaded for training
    nxt = get_preset("next-80b-a3b")
    assert trained_model(nxt) is nxt
    p = rank_params(nxt, validate_layout(nxt, Layout()), 0)
    assert p.total == sum(numel_of(s) for s in p.hf_shapes) == 81_324_862_720 - 1_650_471_424


def test_a_deltanet_layer_and_a_gated_attention_layer_at_qwen3_next_width():
    # Qwen3-Next's widths with 16 experts, one sequence of 100 tokens: T = 100, h 2,048; 16 key and 32 value heads
    # of 128 (KEY 2,048, VAL 4,096, CONV 8,192), kernel 4; chunks of 64: P = 128, N = 2; X = 4 × 1 × 32 = 128
    spec = get_preset("next-80b-a3b").model_copy(update={"num_experts": 16})
    s = TrainSetup(seq_len=100)
    conv = 2 * 100 * 8192 + 2 * 8192 * 103                   # conv input; output before the slice: 3,325,952
    gates = 2 * 100 * 32 + 8 * 100 * 32 + 8 * 32             # beta bf16, softplus in/out, exp(A_log): 32,256
    l2norm = 2 * (128 * 100 * 128 + 128 * 100)               # q, k fp32 and their rsqrt: 3,302,400
    delta = (5 * 128 * 128 * 64                               # decay, k_beta·kᵀ, q·kᵀ, UT, intra: 5,242,880
             + 6 * 128 * 128 * 128                            # k, k_beta, q, k_cumdecay, decayed k and q: 12,582,912
             + 3 * 128 * 128 * 128                            # v, new_values, v_new: 6,291,456
             + 4 * 128 * 128                                  # padded beta, three exps of the decay: 65,536
             + 128 * 2 * 128 * 128 + 128 * 2 + 64 * 64)       # 2 recurrent states, chunk decay, mask: 4,198,656
    gated_norm = 16 * 100 * 4096 + 4 * 100 * 32 + 2 * 100 * 4096   # and out_proj's input: 7,385,600
    assert deltanet_mixer_bytes(spec, s) == conv + gates + l2norm + delta + gated_norm == 42_427_648
    # 16 heads of 256 (q 4,096), 2 KV heads (kv 512): q_norm, k_norm, sdpa, the output gate
    attention = (8 * 100 * 4096 + 4 * 100 * 16 + 4 * 256) + (8 * 100 * 512 + 4 * 100 * 2 + 4 * 256) \
        + (4 * 100 * 4096 + 4 * 100 * 512 + 4 * 100 * 16) + 6 * 100 * 4096
    assert gated_attention_bytes(spec, s) == attention == 8_002_848
    norms = 2 * (8 * 100 * 2048 + 4 * 100 + 4 * 2048 + 2 * 100 * 2048)   # zero-centred, outputs saved: 4,113,184
    routed = 4 * 100 * 16 + 12 * 100 * 10 + 4 * 100 + 4 * 16 + 1000 * (4 * 2048 + 8 * 512 + 26)
    shared = 8 * 100 * 512 + 2 * 100 + 2 * 100 * 2048          # SwiGLU, sigmoid gate, the output it scales
    assert hybrid_layer_bytes(spec, s, 0) == norms + 42_427_648 + routed + shared == 59_693_096
    assert hybrid_layer_bytes(spec, s, 3) == norms + 8_002_848 + routed + shared == 25_268_296


def test_one_token_past_a_chunk_pads_a_whole_chunk():
    # 64 → 65 tokens (Qwen3-Next widths, B = 1): P 64 → 128, N 1 → 2, X = 128; per token: conv 2 × 2 × 8,192,
    # gates 10 × 32, l2norm 2 × (128 × 128 + 128), gated norm and out_proj 16 × 4,096 + 4 × 32 + 2 × 4,096;
    # per padded position 64 more: 5 × X × 64 (C) + 3 × X × 128 (dv) + 4 × X, and the k-wide terms grow from
    # 5 × X × 64 × 128 to 6 × X × 128 × 128 (the decayed q is kept from the second chunk on); a second state
    # X × 128 × 128 and chunk decay X
    spec = get_preset("next-80b-a3b")
    grow = (2 * 2 * 8192 + 10 * 32 + 2 * (128 * 128 + 128) + 16 * 4096 + 4 * 32 + 2 * 4096
            + 64 * (5 * 128 * 64 + 3 * 128 * 128 + 4 * 128)
            + 6 * 128 * 128 * 128 - 5 * 128 * 64 * 128 + 128 * 128 * 128 + 128)
    assert grow == 15_377_216
    assert deltanet_mixer_bytes(spec, TrainSetup(seq_len=65)) - deltanet_mixer_bytes(spec, TrainSetup(seq_len=64)) \
        == grow


def test_the_stage_tail_rotary_per_row_or_per_sequence():
    # cos and sin, bf16, rot = 256 × 0.25 = 64: Qwen3-Next [1, S, 64] each, Qwen3.5's multimodal rope [B, S, 64];
    # only on a stage that holds a full-attention layer (layers 0-2 are Gated-DeltaNet)
    s = TrainSetup(micro_batch=2, seq_len=100)
    nxt, q35 = get_preset("next-80b-a3b"), get_preset("3.5-35b-a3b")
    assert nxt.rotary_dim == q35.rotary_dim == 64 and q35.mrope_section == (11, 11, 10) and not nxt.mrope_section
    assert hybrid_tail_bytes(nxt, s, 0, 3, False, False) == 2 * 2 * 100 * 64 == 25_600
    assert hybrid_tail_bytes(q35, s, 0, 3, False, False) == 2 * 2 * 200 * 64 == 51_200
    assert hybrid_tail_bytes(q35, s, 0, 2, False, False) == 0
    # the first stage adds the int64 token ids; the last the final norm, lm_head's input, fp32 logits, the int64
    # targets and nll_loss's 4-byte total weight (T = 200, h 2,048, V 248,320)
    last = (8 * 200 * 2048 + 4 * 200 + 4 * 2048) + 2 * 200 * 2048 + 4 * 200 * 248_320 + 8 * 200 + 4
    assert hybrid_tail_bytes(q35, s, 4, 6, True, True) == 8 * 200 + last


@pytest.mark.parametrize("args,message", [
    (["--framework", "megatron"], "--framework megatron is not modelled for it"),
    (["--framework", "torch", "--tp", "2"], "accepted: --tp 1"),
    (["--zero", "3", "--dp", "8", "--recompute", "selective"], "use --recompute none or full"),
])
def test_refusals_are_one_line(args, message, capsys):
    from shardsim.cli import main

    assert main(["train", "next-80b-a3b", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_the_cli_plans_hybrid_training(capsys):
    from shardsim.cli import main
    from shardsim.core.train.activations import train_activations

    assert main(["train", "next-80b-a3b", "--framework", "deepspeed", "--zero", "3", "--dp", "8", "--gpu", "h100"]) == 0
    assert "DeepSpeed ZeRO-3" in capsys.readouterr().out
    assert main(["plan", "3.5-35b-a3b", "--train", "--framework", "fsdp", "--dp", "8", "--seq-len", "2048",
                 "--recompute", "full", "--json"]) == 0
    rank = json.loads(capsys.readouterr().out)["ranks"][0]
    spec = get_preset("3.5-35b-a3b")
    s = TrainSetup(framework="fsdp", seq_len=2048, recompute="full")
    act = train_activations(spec, s, 1, 1, 1, 0, spec.num_layers, spec.num_layers, True)
    # full recompute: each layer's input (T·h·2) kept, the largest layer rebuilt in backward (a Gated-DeltaNet one)
    assert act.stage_bytes == 40 * 2048 * 2048 * 2 and act.recompute_extra == hybrid_layer_bytes(spec, s, 0)
    assert rank["bytes"]["activations"] == act.peak


def test_config_rotary_fields():
    from shardsim.core.config import spec_from_config

    config = preset_config("next-80b-a3b")
    assert spec_from_config({k: v for k, v in config.items() if k != "partial_rotary_factor"}, "x").rotary_dim == 64
    assert spec_from_config({**config, "partial_rotary_factor": 0.5}, "x").rotary_dim == 128
    with pytest.raises(ShardsimError, match="partial_rotary_factor"):
        spec_from_config({**config, "partial_rotary_factor": 2}, "x")
