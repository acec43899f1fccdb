"""Qwen3-Next, Qwen3.5 / 3.6 and Qwen3-VL checkpoints to the byte: the inventory built from config.json alone against
the tensor tables of real downloads (presets/checkpoint_facts.json names each table), and one layer of each kind
written out by hand."""

from __future__ import annotations

import pytest

from shardsim.core.memory.weights import checkpoint_bytes
from shardsim.core.model import FULL_ATTENTION, LINEAR_ATTENTION
from shardsim.core.tensors import layer_tensors, parameter_count
from shardsim.presets import checkpoint_facts, get_preset

FACTS = checkpoint_facts()


@pytest.mark.parametrize("name", sorted(FACTS))
def test_checkpoint_bytes_match_the_downloaded_tensor_table(name):
    assert checkpoint_bytes(get_preset(name)) == FACTS[name]["total_size"]


def test_qwen3_next_layers_written_out():
    spec = get_preset("next-80b-a3b")
    kinds = [spec.layer_kind(i) for i in range(spec.num_layers)]
    # every 4th layer is full attention: 12 of 48
    assert kinds[:4] == [LINEAR_ATTENTION] * 3 + [FULL_ATTENTION] and kinds.count(FULL_ATTENTION) == 12
    h = 2048
    key, val, nv, k = 16 * 128, 32 * 128, 32, 4
    # Gated DeltaNet: in_proj_qkvz (2·2048 + 2·4096) × 2048, in_proj_ba 64 × 2048, conv 8192 × 4, dt_bias and A_log 32,
    # norm 128, out_proj 2048 × 4096, two layer norms
    gdn = (2 * key + 2 * val) * h + 2 * nv * h + (2 * key + val) * k + 2 * nv + 128 + h * val + 2 * h
    # MoE: router 512 × 2048, 512 experts × 3 × 512 × 2048, shared expert 3 × 512 × 2048 and its gate 2048
    moe = 512 * h + 512 * 3 * 512 * h + 3 * 512 * h + h
    assert sum(t.numel for t in layer_tensors(spec, 0)) == gdn + moe
    # gated attention: q_proj 2 × 16 heads × 256 (query and gate), k/v 2 heads × 256, o_proj, q/k norms 256
    attention = 2 * 16 * 256 * h + 2 * 2 * 256 * h + h * 16 * 256 + 2 * 256 + 2 * h
    assert sum(t.numel for t in layer_tensors(spec, 3)) == attention + moe
    # the published parameter total of the table (MTP head included): 81,324,862,720
    assert parameter_count(spec) == 81_324_862_720


def test_qwen35_nests_its_language_model_and_keeps_two_tensors_in_fp32():
    spec = get_preset("3.5-27b")
    names = {t.name: t for t in layer_tensors(spec, 0)}
    assert "model.language_model.layers.0.linear_attn.in_proj_qkv.weight" in names       # split projections
    assert names["model.language_model.layers.0.linear_attn.A_log"].checkpoint_dtype == "fp32"
    assert spec.vision is not None and spec.vision.depth == 27 and spec.mtp_layers == 1
    # Qwen3.6-27B has the same tensors, all bf16: 48 linear layers × (48 A_log + 128 norm) × 2 B less
    assert FACTS["Qwen3.5-27B"]["total_size"] - FACTS["Qwen3.6-27B"]["total_size"] == 48 * (48 + 128) * 2


# Tensor counts of the downloaded tables (github.com/gogongxt/python scripts/models/*.md @ec99626; research notes
# gogongxt_reports.md): Qwen3.5 / 3.6 MoE store the decoder layers' experts fused, Qwen3.5's MTP experts per expert.
STORED_TENSORS = {"next-80b-a3b": 75_944, "3.5-35b-a3b": 1_811, "3.6-35b-a3b": 1_045, "3.5-0.8b": 488, "3.5-4b": 738,
                  "3.6-27b": 1_199}


@pytest.mark.parametrize("name", sorted(STORED_TENSORS))
def test_stored_tensors_match_the_downloaded_tensor_table(name):
    from shardsim.launch.checkpoints.layout import stored_entries

    assert len(stored_entries(get_preset(name))) == STORED_TENSORS[name]


def test_qwen35_moe_experts_stored_fused():
    from shardsim.launch.checkpoints.layout import stored_entries

    shapes = {n: s for n, s, _ in stored_entries(get_preset("3.5-35b-a3b"))}
    p = "model.language_model.layers.0.mlp.experts."
    assert shapes[p + "gate_up_proj"] == (256, 2 * 512, 2048) and shapes[p + "down_proj"] == (256, 2048, 512)
    assert shapes["mtp.layers.0.mlp.experts.255.down_proj.weight"] == (2048, 512)
    fused_mtp = {n: s for n, s, _ in stored_entries(get_preset("3.6-35b-a3b"))}
    assert fused_mtp["mtp.layers.0.mlp.experts.gate_up_proj"] == (256, 1024, 2048)
