"""The per-rank FLOPs and bytes of ``shardsim.speed.work``, checked against torch's ``FlopCounterMode`` on real
models built on CPU (transformers' Qwen3 and Qwen3-MoE, and one TP rank of shardsim's own sharded torch model), and
against the bytes of the tensors those sharded modules hold. Torch is imported here only, never by the planner."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from shardsim.core.config import spec_from_config  # noqa: E402
from shardsim.core.layout import Layout, rank_coords, validate_layout  # noqa: E402
from shardsim.core.model import QuantConfig  # noqa: E402
from shardsim.speed.work import StepShape, experts_touched, stage_work, step_work  # noqa: E402

DENSE = dict(hidden_size=128, intermediate_size=384, num_hidden_layers=2, num_attention_heads=8,
             num_key_value_heads=4, head_dim=32, vocab_size=1000, tie_word_embeddings=False,
             max_position_embeddings=4096)
MOE = dict(hidden_size=64, intermediate_size=128, moe_intermediate_size=32, num_experts=8, num_experts_per_tok=2,
           num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, head_dim=16, vocab_size=500,
           max_position_embeddings=2048, decoder_sparse_step=1, norm_topk_prob=True, tie_word_embeddings=False)


def _hf(cls_name: str, config: dict):
    cfg_cls = getattr(transformers, cls_name.replace("ForCausalLM", "Config"))
    cfg = cfg_cls(**config)
    cfg._attn_implementation = "eager"  # QKᵀ and PV as matmuls FlopCounterMode counts (CPU sdpa is not counted)
    cfg._experts_implementation = "eager"  # experts one by one, each on its routed tokens
    model = getattr(transformers, cls_name)(cfg).eval()
    published = dict(cfg.to_dict(), architectures=[cls_name], torch_dtype="bfloat16")
    if "num_local_experts" in published:  # transformers 5 serialises num_experts under this name
        published["num_experts"] = published.pop("num_local_experts")
    spec = spec_from_config(published, name="tiny")
    return model, spec


def _stage(spec, tp: int = 1):
    layout = validate_layout(spec, Layout(tp=tp))
    return stage_work(spec, layout, "bf16", QuantConfig(), 2, 0)


def _counted(fn) -> int:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        fn()
    return counter.get_total_flops()


@pytest.mark.parametrize("cls_name, config", [("Qwen3ForCausalLM", DENSE), ("Qwen3MoeForCausalLM", MOE)])
def test_decode_step_flops_equal_flop_counter(cls_name, config):
    """B = 3 sequences after a 17-token prompt decode one token each: every query attends 18 keys."""
    model, spec = _hf(cls_name, config)
    batch, prompt = 3, 17
    ids = torch.randint(0, config["vocab_size"], (batch, prompt))
    with torch.no_grad():
        cache = model(ids, use_cache=True, logits_to_keep=1).past_key_values
    counted = _counted(lambda: model(ids[:, :1], past_key_values=cache, use_cache=True, logits_to_keep=1))
    predicted = step_work(_stage(spec), StepShape(decode=batch, decode_keys=prompt + 1)).flops
    assert predicted == counted


def test_decode_step_flops_written_out():
    """The dense model's decode step by hand: per layer q 2·3·256·128, k and v 2·3·128·128, o 2·3·128·256, gate, up
    and down 2·3·384·128; attention 4·3·8·32·18; lm_head 2·3·128·1000."""
    _, spec = _hf("Qwen3ForCausalLM", DENSE)
    layer = 2 * 3 * (256 * 128 + 2 * 128 * 128 + 128 * 256 + 3 * 384 * 128) + 4 * 3 * 8 * 32 * 18
    expected = 2 * layer + 2 * 3 * 128 * 1000
    assert expected == 3_827_712
    assert step_work(_stage(spec), StepShape(decode=3, decode_keys=18)).flops == expected


def test_prefill_flops_equal_flop_counter_and_causal_half():
    """A 17-token prompt of 3 sequences: eager attention computes the whole 17 × 17 score matrix (FlopCounterMode's
    count: 17 keys per query); under the causal mask a kernel needs 17·18/2 of them, (P + 1)/2 = 9 per query."""
    model, spec = _hf("Qwen3ForCausalLM", DENSE)
    ids = torch.randint(0, 1000, (3, 17))
    counted = _counted(lambda: model(ids, use_cache=True, logits_to_keep=1))
    stage = _stage(spec)
    rectangle = step_work(stage, StepShape(prefill=3 * 17, prefill_keys=17, prefill_done=3))
    causal = step_work(stage, StepShape(prefill=3 * 17, prefill_keys=9, prefill_done=3))
    assert rectangle.flops == counted
    assert causal.attention_flops * 17 == rectangle.attention_flops * 9


class _Reader:
    """Seeded bf16 values of any slice a rank reads (the torch backend's checkpoint reader interface)."""

    def read(self, name, slices):
        shape = tuple(s.stop - s.start for s in slices)
        return torch.randn(shape, dtype=torch.float32).mul_(0.02).to(torch.bfloat16)


@pytest.mark.parametrize("config, cls_name", [(DENSE, "Qwen3ForCausalLM"), (MOE, "Qwen3MoeForCausalLM")])
def test_tp2_rank_flops_and_weight_bytes_equal_the_sharded_module(config, cls_name):
    """Rank 0 of TP 2, built by the torch backend from the shard rules (``launch/serve/shard_model.py``), without
    its collectives: the FLOPs of a decode step of 3 sequences after 17 prompt tokens, and the bytes of every
    weight it holds but the embedding table (read by rows)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from shardsim.launch.serve.shard_model import RankModel, embed, logits, stage_forward
    from shardsim.launch.session.worker import Groups

    _, spec = _hf(cls_name, config)
    layout = validate_layout(spec, Layout(tp=2))
    rank = RankModel(spec, layout, rank_coords(0, layout))
    rank.load(_Reader())
    rank.allocate_kv(3, 64, 16, dtype=torch.bfloat16)
    ids = torch.randint(0, spec.vocab_size, (3, 17))
    with torch.no_grad():
        stage_forward(rank, [embed(rank, ids, None)], 0, Groups())

    def decode():
        h = stage_forward(rank, [embed(rank, ids[:, :1], None)], 17, Groups())
        logits(rank, h[:, -1], None)

    with sdpa_kernel(SDPBackend.MATH):  # the math backend is matmuls FlopCounterMode counts
        counted = _counted(decode)
    stage = _stage(spec, tp=2)
    work = step_work(stage, StepShape(decode=3, decode_keys=18))
    if spec.is_moe:  # every token's k experts are local (ep 1): 3·k pairs exactly, none estimated
        assert stage.local_experts == spec.num_experts
    assert work.flops == counted
    held = sum(t.numel() * t.element_size() for key, v in rank.weights.items() if not key.endswith(":experts")
               and key != "model.embed_tokens.weight" for t in (v if isinstance(v, list) else [v]))
    expert_bytes = stage.moe_layers * stage.local_experts * stage.expert_bytes
    assert stage.dense_weight_bytes + expert_bytes == held


def test_expert_coverage():
    """E_local·(1 − (1 − k/E)^T): 8 local of 128 experts, k 8: one token touches 0.5 of them on average (8·8/128),
    two 8·(1 − (15/16)²) = 0.96875, and every expert once T is large."""
    from dataclasses import replace

    _, spec = _hf("Qwen3MoeForCausalLM", MOE)
    stage = replace(_stage(spec), local_experts=8, num_experts=128, top_k=8)
    assert experts_touched(stage, 1) == pytest.approx(0.5)
    assert experts_touched(stage, 2) == pytest.approx(0.96875)
    assert experts_touched(stage, 10_000) == pytest.approx(8)
