"""Training the hybrids (Qwen3-Next, Qwen3.5 / 3.6: Gated-DeltaNet and gated full-attention layers) (slow).

1. What transformers' own model keeps for backward equals ``core.train.deltanet_activations`` to the byte: small
   configs of the three architectures (sdpa and eager) at (batch, seq) = (1, 64), (2, 150), (3, 37), (1, 200) — one
   chunk, a padded third chunk, a sequence shorter than a chunk, a padded fourth — and Qwen3-Next's and
   Qwen3.5-0.8B's own widths, each layer on its own (storages attributed to the module that first saved them) and
   the whole forward (``SavedTensorBytes``, as ``validate --train`` measures it). About 15 s.
2. ``shardsim validate --train`` on a reduced Qwen3.5-35B-A3B (its config.json with 16 experts, a 16,384-token
   vocabulary, hidden size 256 and 128-column experts, 4 layers: 3 Gated-DeltaNet, 1 gated attention; the vision tower in the checkpoint, dropped by
   ``Qwen3_5MoeForCausalLM``): DeepSpeed ZeRO-2 and FSDP2 on 2 CPU ranks, weights, master weights, gradients and
   optimizer state byte-exact against the meta model's shapes, and the bytes kept for backward equal to the
   prediction. About 60 s and 30 s on a 2-core AVX2 host (2 minutes for the file).
"""

from __future__ import annotations

import collections
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.validation.test_train_backends import fsdp2_expected, zero12_expected

pytestmark = pytest.mark.slow

SHARDSIM = Path(sys.executable).parent / "shardsim"
POINTS = [(1, 64), (2, 150), (3, 37), (1, 200)]
GDN = dict(linear_num_key_heads=2, linear_num_value_heads=4, linear_key_head_dim=16, linear_value_head_dim=24,
           linear_conv_kernel_dim=4)


def next_config(**over) -> dict:
    """A small Qwen3-Next: 3 Gated-DeltaNet layers and 1 gated attention layer, 4 experts and a shared expert."""
    config = dict(model_type="qwen3_next", architectures=["Qwen3NextForCausalLM"], vocab_size=256, hidden_size=128,
                  intermediate_size=96, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2, head_dim=32,
                  num_experts=4, num_experts_per_tok=2, moe_intermediate_size=40, shared_expert_intermediate_size=56,
                  partial_rotary_factor=0.25, tie_word_embeddings=False, decoder_sparse_step=1, mlp_only_layers=[],
                  norm_topk_prob=True, rms_norm_eps=1e-6, max_position_embeddings=4096, rope_theta=1e7,
                  torch_dtype="bfloat16", **GDN)
    return {**config, **over}


def qwen35_config(moe: bool = False, **over) -> dict:
    """A small Qwen3.5 (dense, tied) or Qwen3.5 MoE (untied) with its multimodal rope and a tiny vision tower."""
    kind = "qwen3_5_moe" if moe else "qwen3_5"
    text = dict(model_type=kind + "_text", vocab_size=256, hidden_size=128, intermediate_size=96, num_hidden_layers=4,
                num_attention_heads=4, num_key_value_heads=2, head_dim=32, attn_output_gate=True, rms_norm_eps=1e-6,
                max_position_embeddings=4096, dtype="bfloat16",
                rope_parameters={"mrope_interleaved": True, "mrope_section": [1, 1, 2], "rope_type": "default",
                                 "rope_theta": 1e7, "partial_rotary_factor": 0.25}, **GDN)
    if moe:
        text.pop("intermediate_size")
        text.update(num_experts=4, num_experts_per_tok=2, moe_intermediate_size=40, shared_expert_intermediate_size=56)
    arch = "Qwen3_5MoeForConditionalGeneration" if moe else "Qwen3_5ForConditionalGeneration"
    return {"model_type": kind, "architectures": [arch], "text_config": {**text, **over}, "tie_word_embeddings": not moe,
            "vision_config": {"depth": 1, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
                              "out_hidden_size": 128}}


def _model(config: dict, attention: str):
    import torch
    from transformers import CONFIG_MAPPING, AutoModelForCausalLM

    fields = {k: v for k, v in config.items() if k != "model_type"}
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(CONFIG_MAPPING[config["model_type"]](**fields), dtype=torch.bfloat16,
                                             attn_implementation=attention)
    model.train()
    return model


def saved_by_layer(model, ids) -> tuple[dict[int, int], int]:
    """Bytes of the distinct storages autograd saves, by the decoder layer that first saved each (forward pre/post
    hooks keep the module stack), and the whole forward's (``SavedTensorBytes``)."""
    import torch
    from shardsim.launch.train.states import SavedTensorBytes

    stack, first, hooks = [""], {}, []
    for name, module in model.named_modules():
        hooks.append(module.register_forward_pre_hook(lambda m, a, n=name: stack.append(n)))
        hooks.append(module.register_forward_hook(lambda m, a, o: (stack.pop(), None)[1]))
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}

    def pack(t):
        ptr = t.untyped_storage().data_ptr()
        if not isinstance(t, torch.nn.Parameter) and t.numel() and ptr not in params and ptr not in first:
            first[ptr] = (t.untyped_storage().nbytes(), stack[-1], t)
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(input_ids=ids, labels=ids.clone())
    for h in hooks:
        h.remove()
    with SavedTensorBytes(model) as probe:   # a second forward: hooks do not nest (the innermost pair alone runs)
        model(input_ids=ids, labels=ids.clone())
    per_layer: dict[int, int] = collections.Counter()
    for nbytes, module, _ in first.values():
        if module.startswith("model.layers."):
            per_layer[int(module.split(".")[2])] += nbytes
    return per_layer, probe.total


def check_layers(config: dict, attention: str, points) -> None:
    import torch
    from shardsim.core.config import spec_from_config
    from shardsim.core.train.activations import train_activations
    from shardsim.core.train.deltanet_activations import hybrid_layer_bytes
    from shardsim.core.train.setup import TrainSetup

    model = _model(config, attention)
    spec = spec_from_config(config, name="tiny-hybrid")
    first_full = spec.layer_types.index("full_attention")
    for batch, seq in points:
        ids = torch.randint(0, spec.vocab_size, (batch, seq), generator=torch.Generator().manual_seed(1))
        per_layer, total = saved_by_layer(model, ids)
        # the model's rotary cos and sin (bf16 [1 or B, S, rot] each) are first saved by the first attention layer
        per_layer[first_full] -= 2 * 2 * (batch * seq if spec.mrope_section else seq) * spec.rotary_dim
        setup = TrainSetup(micro_batch=batch, seq_len=seq, flash_attention=attention == "sdpa")
        predicted = {layer: hybrid_layer_bytes(spec, setup, layer) for layer in range(spec.num_layers)}
        assert dict(per_layer) == predicted, (attention, batch, seq)
        saved = train_activations(spec, setup, 1, 1, 1, 0, spec.num_layers, 0, True).saved
        assert total == saved, (attention, batch, seq, total, saved)


@pytest.mark.parametrize("attention", ["sdpa", "eager"])
@pytest.mark.parametrize("config", [next_config(), qwen35_config(), qwen35_config(moe=True)],
                         ids=["qwen3-next", "qwen3.5", "qwen3.5-moe"])
def test_small_hybrids_keep_what_the_formula_says(config, attention):
    check_layers(config, attention, POINTS)


def test_real_widths_keep_what_the_formula_says():
    """Qwen3-Next's widths (h 2048, 16 key / 32 value heads of 128, 16 attention heads of 256, 16 experts instead of
    512, a 1,024-token vocabulary) and Qwen3.5-0.8B's (h 1024, 16 / 16 heads of 128, I 3584): measured 206,840,988
    and 234,692,868 B, 91,614,204 and 102,267,140 B kept for backward at (1, 100) and (2, 64)."""
    check_layers(next_config(hidden_size=2048, num_attention_heads=16, head_dim=256, linear_num_key_heads=16,
                             linear_num_value_heads=32, linear_key_head_dim=128, linear_value_head_dim=128,
                             num_experts=16, num_experts_per_tok=10, moe_intermediate_size=512,
                             shared_expert_intermediate_size=512, intermediate_size=5120, vocab_size=1024),
                 "sdpa", [(1, 100), (2, 64)])
    check_layers(qwen35_config(hidden_size=1024, num_attention_heads=8, head_dim=256, linear_num_key_heads=16,
                               linear_num_value_heads=16, linear_key_head_dim=128, linear_value_head_dim=128,
                               intermediate_size=3584, vocab_size=1024), "sdpa", [(1, 100), (2, 64)])


@pytest.fixture(scope="module")
def moe35_train(tmp_path_factory) -> Path:
    """Qwen3.5-35B-A3B's config.json with 16 experts (of 256), a 16,384-token vocabulary (of 248,320), hidden size
    256 (of 2,048) and experts of 128 columns (of 512): its heads, layer pattern and chunking as published. Narrow,
    because on a CPU without AVX-512 torch's bf16 GEMM runs a scalar kernel (``test_validate_train.py``)."""
    from shardsim.presets import preset_config

    config = preset_config("3.5-35b-a3b")
    config["text_config"].update(num_experts=16, vocab_size=16_384, hidden_size=256, moe_intermediate_size=128,
                                  shared_expert_intermediate_size=128)
    path = tmp_path_factory.mktemp("moe35_train") / "config.json"
    path.write_text(json.dumps(config))
    return path


@pytest.fixture(scope="module")
def moe35_shapes(moe35_train) -> list[tuple[int, ...]]:
    """The trained module's parameter shapes, in ``parameters()`` order: what AutoModelForCausalLM builds from the
    config (Qwen3_5MoeForCausalLM, no vision tower), 4 layers, on the meta device."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(moe35_train.parent)
    config.text_config.num_hidden_layers = 4
    config.text_config.layer_types = config.text_config.layer_types[:4]
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    assert type(model).__name__ == "Qwen3_5MoeForCausalLM"
    return [tuple(p.shape) for p in model.parameters()]


def _validate(config: Path, tmp_path: Path, *args: str) -> dict:
    proc = subprocess.run([str(SHARDSIM), "validate", "--config", str(config), "--train", "--layers", "4", "--dp", "2",
                           "--seq-len", "100", *args, "--json", "--run-dir", str(tmp_path / "run")],
                          capture_output=True, text=True, timeout=900)
    assert proc.stdout, proc.stderr[-2000:]
    return json.loads(proc.stdout)


def _assert_exact(record: dict, expected_for_rank) -> None:
    assert record["passed"], record["failed"]
    for rank in record["ranks"]:
        expected = expected_for_rank(rank["rank"])
        for term, value in expected.items():
            row = rank["comparison"][term]
            assert row["measured"] == row["predicted"] == value, (rank["rank"], term, row)
        activations = rank["comparison"]["activations"]
        assert activations["measured"] == activations["predicted"] > 0, activations   # to the byte, not the band


def test_validate_train_zero2(moe35_train, moe35_shapes, tmp_path):
    """About 60 s: 2 sequences of 100 tokens (two chunks, the second padded). ZeRO-2's flat buffer in the hybrid's
    registration order decides which parameters straddle the partition boundary (rank 1 holds more gradients)."""
    record = _validate(moe35_train, tmp_path, "--backend", "deepspeed", "--zero", "2", "--micro-batch", "2")
    _assert_exact(record, lambda rank: zero12_expected(moe35_shapes, rank))
    grads = [r["comparison"]["grads"]["measured"] for r in record["ranks"]]
    assert grads[0] != grads[1]


def test_validate_train_fsdp(moe35_train, moe35_shapes, tmp_path):
    """About 30 s: dim-0 shards per parameter — conv1d [8192, 1, 4], the shared expert's gate [1, 256] (rank 1's
    chunk empty, its padded row still allocated) — one sequence of 100 tokens."""
    record = _validate(moe35_train, tmp_path, "--backend", "fsdp")
    _assert_exact(record, lambda rank: fsdp2_expected(moe35_shapes, rank))
