"""Real training steps on 2 CPU ranks (gloo): what DeepSpeed ZeRO-1/2/3 and FSDP2 hold per rank, byte-exact (slow).

Model: Qwen3-0.6B cut to its first 2 decoder layers and its vocabulary to 16,384 (the project's seeded checkpoint,
``launch/checkpoints/files.py`` ``write_checkpoint``), micro batch 1, 64 tokens, 2 AdamW steps. Expected bytes are computed here from the parameter
shapes (a meta-device model built from the checkpoint's config) with the rules documented in
``launch/backends/train_ds.py`` and ``launch/backends/train_fsdp.py``. About 2 minutes in all on 2 cores.
"""

from __future__ import annotations

import math
import os

import pytest

pytestmark = pytest.mark.slow

WORLD = 2
STEPS, MICRO_BATCH, SEQ_LEN = 2, 1, 64
VOCAB = 16_384
PERSISTENCE_THRESHOLD = 100_000  # stage3_param_persistence_threshold default (deepspeed zero/config.py)


@pytest.fixture(scope="module")
def checkpoint() -> str:
    from shardsim.launch.checkpoints.files import write_checkpoint
    from shardsim.launch.session.prebuild import prebuild_deepspeed_op
    from shardsim.launch.session.request import cache_dir

    from shardsim.presets import get_preset

    # the vocabulary narrowed to 16,384 rows (of 151,936): on a CPU without AVX-512 torch's bf16 GEMM runs a scalar
    # kernel, and the tied lm_head's backward at full width took minutes a step (tests/validation/
    # test_validate_train.py); the states' rules under test do not depend on the width
    spec = get_preset("0.6b").truncated(2).model_copy(update={"vocab_size": VOCAB})
    path = cache_dir() / "checkpoints" / f"{spec.name.split(' ')[0]}-L{spec.num_layers}-V{VOCAB}-seed0"
    write_checkpoint(spec, path, seed=0)
    extensions = cache_dir() / "torch_extensions"
    os.environ["TORCH_EXTENSIONS_DIR"] = str(extensions)
    prebuild_deepspeed_op(extensions, timeout_s=600, quiet=True)
    return str(path)


@pytest.fixture(scope="module")
def shapes(checkpoint) -> list[tuple[int, ...]]:
    """Parameter shapes in ``model.parameters()`` order (the tied embedding once), as the frameworks see them."""
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(checkpoint, local_files_only=True)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    return [tuple(p.shape) for p in model.parameters()]


def _run(backend: str, tmp_path, **kwargs):
    from shardsim.launch.train.spawn import run_on_ranks

    kwargs.update(steps=STEPS, micro_batch=MICRO_BATCH, seq_len=SEQ_LEN)
    return run_on_ranks(backend, WORLD, str(tmp_path), **kwargs)


def zero12_expected(shapes, rank: int) -> dict:
    """ZeRO-1/2: one flat bf16 buffer of all params padded to a multiple of 2·W (nccl_start_alignment_factor × dp),
    held whole by every rank; rank r owns elements [r·S, (r+1)·S), S = F/W; fp32 master and AdamW state of S elements
    (+ a 4-byte fp32 step); the bf16 grads of every parameter overlapping [r·S, (r+1)·S) are kept whole."""
    numels = [math.prod(s) for s in shapes]
    total = sum(numels)
    flat = math.ceil(total / (2 * WORLD)) * 2 * WORLD
    part = flat // WORLD
    start, end = rank * part, (rank + 1) * part
    overlapping, offset = 0, 0
    for n in numels:
        if offset < end and offset + n > start:
            overlapping += n
        offset += n
    return {"weights": 2 * flat, "master_weights": 4 * part, "optimizer": 8 * part + 4, "grads": 2 * overlapping}


def zero3_expected(shapes) -> dict:
    """ZeRO-3: every parameter padded to a multiple of W and split: ceil(numel/W) per rank, in one bf16 flat buffer;
    persistent params (numel ≤ 1e5) also stay gathered whole (bf16); fp32 master, bf16 grad partition buffer and
    AdamW state over the same Σ ceil(numel/W) elements (+ a 4-byte step)."""
    numels = [math.prod(s) for s in shapes]
    part = sum(math.ceil(n / WORLD) for n in numels)
    persistent = sum(n for n in numels if n <= PERSISTENCE_THRESHOLD)
    return {"weights": 2 * part + 2 * persistent, "master_weights": 4 * part, "optimizer": 8 * part + 4,
            "grads": 2 * part}


def fsdp2_expected(shapes, rank: int) -> dict:
    """FSDP2: dim-0 chunks of c = ceil(d0/W) rows; every rank stores the padded chunk (c·rest fp32 elements) for the
    parameter and, in the reduce-scatter output, for its grad; AdamW exp_avg/exp_avg_sq cover only the rows the rank
    owns, rows_r = clamp(d0 − r·c, 0, c), plus a 4-byte step per parameter; no separate master copy."""
    weights = grads = optimizer = 0
    for shape in shapes:
        d0, rest = shape[0], math.prod(shape[1:])
        c = math.ceil(d0 / WORLD)
        rows = max(0, min(d0 - rank * c, c))
        weights += 4 * c * rest
        grads += 4 * c * rest
        optimizer += 8 * rows * rest + 4
    return {"weights": weights, "master_weights": 0, "optimizer": optimizer, "grads": grads}


def _check(states, expected_for_rank) -> None:
    assert len(states) == WORLD
    for rank, s in enumerate(states):
        expected = expected_for_rank(rank)
        measured = {k: getattr(s, k) for k in expected}
        assert measured == expected, (rank, measured, expected, s.details)
        assert s.activations_peak > 0, (rank, s.details)
        losses = s.details["losses"]
        assert len(losses) == STEPS and all(math.isfinite(x) for x in losses), losses


@pytest.mark.parametrize("stage", [1, 2])
def test_deepspeed_zero12(tmp_path, checkpoint, shapes, stage):
    """About 30 s each: ZeRO-1 and ZeRO-2 keep the same states here (bf16 grads, whole params per partition)."""
    states = _run("deepspeed", tmp_path, checkpoint_dir=checkpoint, stage=stage)
    _check(states, lambda rank: zero12_expected(shapes, rank))
    assert states[0].details["optimizer_class"] == "DeepSpeedZeroOptimizer"


def test_deepspeed_zero3(tmp_path, checkpoint, shapes):
    """About 30 s: partitions per parameter, persistent norms kept whole."""
    states = _run("deepspeed", tmp_path, checkpoint_dir=checkpoint, stage=3)
    _check(states, lambda rank: zero3_expected(shapes))
    # 2 layers × (2 RMSNorm of 1024 + q_norm, k_norm of 128) + the final norm: 9 persistent parameters
    assert states[0].details["persistent_params"] == 9


def test_fsdp2(tmp_path, checkpoint, shapes):
    """About 25 s: through accelerate's ``Accelerator.prepare`` with its defaults for bf16 (bf16 compute and bf16
    reduce-scatter): fp32 sharded parameters, the grads cast back to fp32, one unit per decoder layer."""
    states = _run("fsdp", tmp_path, checkpoint_dir=checkpoint)
    _check(states, lambda rank: fsdp2_expected(shapes, rank))
    details = states[0].details
    assert details["param_dtypes"] == ["torch.float32"]
    assert "reduce_dtype=torch.bfloat16" in details["mixed_precision_policy"], details
    # modules made FSDP: 2 decoder layers, the tail group's final norm, embed_tokens and (tied) lm_head, the root
    assert details["fsdp_units"] == 6, details


def test_arithmetic_uneven_split():
    """The rules on odd sizes (no training): padding only shows when sizes do not divide."""
    shapes = [(7, 3), (5,)]  # 26 elements
    assert zero12_expected(shapes, 0)["weights"] == 2 * 28  # padded to a multiple of 2·W = 4
    assert zero12_expected(shapes, 1)["grads"] == 2 * 26  # rank 1 owns [14, 28): both params overlap
    assert zero12_expected(shapes, 0)["grads"] == 2 * 21  # rank 0 owns [0, 14): only the first
    assert zero3_expected(shapes)["master_weights"] == 4 * (11 + 3)
    assert fsdp2_expected(shapes, 0)["optimizer"] == 8 * (4 * 3 + 3) + 8
    assert fsdp2_expected(shapes, 1)["optimizer"] == 8 * (3 * 3 + 2) + 8
    assert fsdp2_expected(shapes, 1)["weights"] == 4 * (4 * 3 + 3)


def test_live_saved_bytes_counts_micro_batches_in_flight():
    """Two forwards kept, then two backwards: the peak is both forwards' saved storages; each backward frees its
    own. y = (x·w)² saves x (for x·w's grad of w) and x·w (for the square): 2 storages of 4·n bytes per forward;
    the parameter w is left out."""
    import torch
    from shardsim.launch.train.states import LiveSavedBytes

    n = 1000
    w = torch.nn.Parameter(torch.ones(n))
    model = torch.nn.Module()
    model.w = w
    with LiveSavedBytes(model) as probe:
        xs = [torch.randn(n) for _ in range(2)]
        losses = [((x * w) ** 2).sum() for x in xs]
        assert probe.live == 2 * 2 * 4 * n
        losses[0].backward()
        assert probe.live == 2 * 4 * n
        losses[1].backward()
        third = ((torch.randn(n) * w) ** 2).sum()
    assert probe.peak == 2 * 2 * 4 * n
    assert probe.live == 2 * 4 * n   # the third forward's, still held by its graph
    del third
    assert probe.live == 0


@pytest.mark.parametrize("flash", [True, False])
def test_hf_layer_bytes_match_a_real_moe_layer(flash):
    """One Qwen3-MoE decoder layer of a small config (transformers' own model: grouped_mm experts, sdpa or eager
    attention), forward under saved_tensors_hooks: the bytes it keeps equal ``hf_layer_bytes`` (the two-layer
    model less the one-layer model, so embedding, final norm and loss cancel)."""
    import torch
    from shardsim.launch.train.states import SavedTensorBytes
    from transformers import AutoModelForCausalLM, Qwen3MoeConfig

    from shardsim.core.config import spec_from_config
    from shardsim.core.train.activations import hf_layer_bytes
    from shardsim.core.train.setup import TrainSetup

    config = dict(model_type="qwen3_moe", architectures=["Qwen3MoeForCausalLM"], hidden_size=64, intermediate_size=96,
                  moe_intermediate_size=32, num_experts=8, num_experts_per_tok=2, norm_topk_prob=True,
                  num_attention_heads=4, num_key_value_heads=2, head_dim=16, vocab_size=512, max_position_embeddings=256,
                  rms_norm_eps=1e-6, rope_theta=1e6, tie_word_embeddings=False, torch_dtype="bfloat16",
                  decoder_sparse_step=1, mlp_only_layers=[])
    t = 48
    saved = []
    for layers in (1, 2):
        torch.manual_seed(0)
        hf = Qwen3MoeConfig(**{**config, "num_hidden_layers": layers})
        model = AutoModelForCausalLM.from_config(hf, dtype=torch.bfloat16,
                                                 attn_implementation="sdpa" if flash else "eager")
        model.train()
        ids = torch.randint(0, 512, (1, t), generator=torch.Generator().manual_seed(1))
        with SavedTensorBytes(model) as probe:
            model(input_ids=ids, labels=ids.clone())
        saved.append(probe.total)
    spec = spec_from_config({**config, "num_hidden_layers": 2}, name="tiny-moe")
    assert saved[1] - saved[0] == hf_layer_bytes(spec, TrainSetup(seq_len=t, flash_attention=flash), True)


@pytest.mark.parametrize("reuse,released", [(2_000_000, 1), (500_000, 2)])
def test_zero3_released_experts_stay_alive_until_their_backward(tmp_path, reuse, released):
    """ZeRO-3 on a small Qwen3-MoE (2 layers, 8 experts, h 256, expert width 256), prefetching off: a layer's
    experts are met again 2 × (later layers) + head elements after its forward — layer 0 after
    2 × 1,772,160 + 524,544 = 4,068,864, layer 1 after 524,544 — and released when that is at least
    ``stage3_max_reuse_distance``; transformers' grouped_mm holds a view of them for backward, so they stay alive:
    2 B × 8 × 3 × 256 × 256 = 3,145,728 B a released layer, beside the activations predicted for the states above."""
    import torch
    from shardsim.launch.checkpoints.files import write_checkpoint
    from shardsim.launch.session.request import cache_dir
    from shardsim.launch.train.run import predict_train
    from transformers import AutoConfig, AutoModelForCausalLM

    from shardsim.core.config import spec_from_config
    from shardsim.core.layout import Layout
    from shardsim.core.train.activations import zero3_retained_expert_bytes
    from shardsim.core.train.setup import TrainSetup

    config = dict(model_type="qwen3_moe", architectures=["Qwen3MoeForCausalLM"], hidden_size=256,
                  intermediate_size=512, moe_intermediate_size=256, num_experts=8, num_experts_per_tok=2,
                  norm_topk_prob=True, num_attention_heads=4, num_key_value_heads=2, head_dim=64, vocab_size=2048,
                  max_position_embeddings=1024, rms_norm_eps=1e-6, rope_theta=1e6, tie_word_embeddings=False,
                  torch_dtype="bfloat16", decoder_sparse_step=1, mlp_only_layers=[], num_hidden_layers=2)
    spec = spec_from_config(config, name="tiny-moe")
    path = write_checkpoint(spec, cache_dir() / "checkpoints" / "tiny-moe-L2-seed0", seed=0, source_config=config)
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path, local_files_only=True))
    moe_shapes = [tuple(p.shape) for p in model.parameters()]
    states = _run("deepspeed", tmp_path, checkpoint_dir=str(path), stage=3,
                  zero_overrides={"stage3_max_reuse_distance": reuse, "stage3_prefetch_bucket_size": 0})
    _check(states, lambda rank: zero3_expected(moe_shapes))
    setup = TrainSetup(zero=3, seq_len=SEQ_LEN, micro_batch=MICRO_BATCH)
    retained = zero3_retained_expert_bytes(spec, setup, 2, max_reuse=reuse, prefetch=0)
    assert retained == released * 2 * 8 * 3 * 256 * 256
    assert zero3_retained_expert_bytes(spec, setup, 2) == 0     # at DeepSpeed's defaults nothing is released here
    predicted = predict_train(spec, Layout(dp=WORLD), setup)
    for rank, s in enumerate(states):
        assert abs(s.activations_saved - (predicted[rank]["activations_saved"] + retained)) <= 16, \
            (rank, s.activations_saved, predicted[rank]["activations_saved"])
