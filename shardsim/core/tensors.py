"""The tensor inventory of a Qwen3 checkpoint and its shard rules: the single source of sharding truth.

Every weight of the checkpoint is listed with its Hugging Face name, shape and ShardRule. The planner sizes shards
from these rules and the validation workers slice real safetensors with the very same functions
(``local_slices``), so a prediction and a measurement can only disagree if the memory does.

Rules (Megatron-LM's tensor parallelism, Shoeybi et al. 2019, arXiv:1909.08053, §3; vLLM's
``vllm/model_executor/layers/linear.py`` and ``vocab_parallel_embedding.py``):

- ``column``: output dim (0) split over the TP ranks — q_proj, k_proj, v_proj, gate_proj, up_proj.
  k/v are split by whole KV heads; when tp exceeds the KV heads each rank holds one head and heads are replicated
  tp / kv_heads times (vLLM ``QKVParallelLinear``: ``num_kv_head_replicas = tp_size // total_num_kv_heads``).
- ``row``: input dim (1) split — o_proj, down_proj.
- ``vocab``: vocabulary dim (0) split — embed_tokens, lm_head.
- ``replicated``: every rank holds all of it — input/post-attention/final norms, q_norm, k_norm, MoE router.
- ``expert``: whole experts spread over the EP ranks; inside an expert, gate/up split on dim 0 and down on dim 1
  over the expert-TP ranks (vLLM ``FusedMoE``: without EP, ``tp_size`` splits each expert's intermediate dim).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterator

from shardsim.core.arch.deltanet import deltanet_tensors
from shardsim.core.arch.vision import vision_tensors
from shardsim.core.model import FULL_ATTENTION, LINEAR_ATTENTION, ModelSpec
from shardsim.core.tensor_spec import (  # noqa: F401 (re-exported: the one place callers import them from)
    COLUMN,
    EXPERT,
    REPLICATED,
    ROW,
    VOCAB,
    Part,
    TensorSpec,
    numel_of,
)
from shardsim.units import ceil_div

@dataclass(frozen=True, slots=True)
class Shard:
    """A rank's coordinates as far as weight slicing is concerned.

    ``etp`` is the expert-tensor-parallel degree (each expert's intermediate split), ``ep`` the number of
    expert groups; ``etp_rank``/``ep_rank`` this rank's place in them.
    """

    tp: int = 1
    tp_rank: int = 0
    ep: int = 1
    ep_rank: int = 0
    etp: int = 1
    etp_rank: int = 0


def split_range(n: int, parts: int, index: int) -> range:
    """The items [start, stop) of part ``index`` when ``n`` items split into ``parts`` near-equal runs.

    The first ``n % parts`` parts get one extra item (``torch.tensor_split`` semantics), so part 0 is always
    a most loaded one.
    """
    base, extra = divmod(n, parts)
    start = index * base + min(index, extra)
    return range(start, start + base + (1 if index < extra else 0))


def layer_tensors(spec: ModelSpec, layer: int, prefix: str | None = None, kind: str | None = None) -> list[TensorSpec]:
    """The weights of decoder layer ``layer``, in checkpoint order (``prefix``/``kind``: another place and kind, for
    the MTP head's layers).

    Shapes are ``[out_features, in_features]`` as nn.Linear stores them. Source of the names and shapes:
    transformers ``models/qwen3/modeling_qwen3.py`` and ``models/qwen3_moe/modeling_qwen3_moe.py``; the hybrids'
    gated attention (q_proj also yields a per-head output gate: 2 × nh × hd rows) and shared expert from
    ``qwen3_next/modeling_qwen3_next.py``@v5.25.0 ``Qwen3NextAttention`` L229-256 and ``Qwen3NextSparseMoeBlock``
    L936-956; linear-attention layers from ``core.arch.deltanet``.
    """
    h = spec.hidden_size
    p = prefix if prefix is not None else f"{spec.text_prefix}layers.{layer}."
    out = [TensorSpec(p + "input_layernorm.weight", (h,), REPLICATED, Part.LAYER, layer)]
    if (kind or spec.layer_kind(layer)) == LINEAR_ATTENTION:
        out += deltanet_tensors(spec, layer, p)
    else:
        out += _attention_tensors(spec, layer, p)
    out.append(TensorSpec(p + "post_attention_layernorm.weight", (h,), REPLICATED, Part.LAYER, layer))
    return out + _mlp_tensors(spec, layer, p)


def _attention_tensors(spec: ModelSpec, layer: int, p: str) -> list[TensorSpec]:
    h, hd = spec.hidden_size, spec.head_dim
    q_out, kv_out = spec.num_heads * hd, spec.num_kv_heads * hd
    gated_q = 2 * q_out if spec.attn_output_gate else q_out
    out = [
        TensorSpec(p + "self_attn.q_proj.weight", (gated_q, h), COLUMN, Part.LAYER, layer, 0, linear=True),
        TensorSpec(p + "self_attn.k_proj.weight", (kv_out, h), COLUMN, Part.LAYER, layer, 0, kv_heads=spec.num_kv_heads, linear=True),
        TensorSpec(p + "self_attn.v_proj.weight", (kv_out, h), COLUMN, Part.LAYER, layer, 0, kv_heads=spec.num_kv_heads, linear=True),
        TensorSpec(p + "self_attn.o_proj.weight", (h, q_out), ROW, Part.LAYER, layer, 1, linear=True),
        TensorSpec(p + "self_attn.q_norm.weight", (hd,), REPLICATED, Part.LAYER, layer),
        TensorSpec(p + "self_attn.k_norm.weight", (hd,), REPLICATED, Part.LAYER, layer),
    ]
    if spec.attention_bias:
        # Qwen3 checkpoints have no attention bias; a config that sets it gets the biases.
        out += [
            TensorSpec(p + "self_attn.q_proj.bias", (gated_q,), COLUMN, Part.LAYER, layer, 0),
            TensorSpec(p + "self_attn.k_proj.bias", (kv_out,), COLUMN, Part.LAYER, layer, 0, kv_heads=spec.num_kv_heads),
            TensorSpec(p + "self_attn.v_proj.bias", (kv_out,), COLUMN, Part.LAYER, layer, 0, kv_heads=spec.num_kv_heads),
        ]
    return out


def _mlp_tensors(spec: ModelSpec, layer: int, p: str) -> list[TensorSpec]:
    h = spec.hidden_size
    if spec.is_moe_layer(layer):
        e, mi = spec.num_experts, spec.moe_intermediate_size
        out = [
            TensorSpec(p + "mlp.gate.weight", (e, h), REPLICATED, Part.LAYER, layer),
            TensorSpec(p + "mlp.experts.{e}.gate_proj.weight", (mi, h), EXPERT, Part.LAYER, layer, 0, experts=e, linear=True),
            TensorSpec(p + "mlp.experts.{e}.up_proj.weight", (mi, h), EXPERT, Part.LAYER, layer, 0, experts=e, linear=True),
            TensorSpec(p + "mlp.experts.{e}.down_proj.weight", (h, mi), EXPERT, Part.LAYER, layer, 1, experts=e, linear=True),
        ]
        si = spec.shared_expert_intermediate_size
        if si:  # a shared expert beside the routed ones, scaled by sigmoid(shared_expert_gate(x)); TP like a dense MLP
            out += [
                TensorSpec(p + "mlp.shared_expert.gate_proj.weight", (si, h), COLUMN, Part.LAYER, layer, 0, linear=True),
                TensorSpec(p + "mlp.shared_expert.up_proj.weight", (si, h), COLUMN, Part.LAYER, layer, 0, linear=True),
                TensorSpec(p + "mlp.shared_expert.down_proj.weight", (h, si), ROW, Part.LAYER, layer, 1, linear=True),
                TensorSpec(p + "mlp.shared_expert_gate.weight", (1, h), REPLICATED, Part.LAYER, layer),
            ]
        return out
    i = spec.intermediate_size
    return [
        TensorSpec(p + "mlp.gate_proj.weight", (i, h), COLUMN, Part.LAYER, layer, 0, linear=True),
        TensorSpec(p + "mlp.up_proj.weight", (i, h), COLUMN, Part.LAYER, layer, 0, linear=True),
        TensorSpec(p + "mlp.down_proj.weight", (h, i), ROW, Part.LAYER, layer, 1, linear=True),
    ]


def mtp_tensors(spec: ModelSpec) -> list[TensorSpec]:
    """The multi-token-prediction head (``mtp.*``): fc [H, 2H], three norms [H] and full-attention decoder layers
    with the model's MLP. transformers skips them (``_keys_to_ignore_on_load_unexpected = [r"^mtp.*"]``,
    ``qwen3_next/modeling_qwen3_next.py``@v5.25.0 L1034); engines load them for MTP speculative decoding only.
    Shapes from the tensor table of Qwen/Qwen3-Next-80B-A3B-Instruct (github.com/gogongxt/python
    scripts/models@ec99626)."""
    if not spec.mtp_layers:
        return []
    h = spec.hidden_size
    out = [TensorSpec("mtp.fc.weight", (h, 2 * h), COLUMN, Part.MTP, None, 0, linear=True)]
    out += [TensorSpec(f"mtp.{n}.weight", (h,), REPLICATED, Part.MTP)
            for n in ("pre_fc_norm_embedding", "pre_fc_norm_hidden", "norm")]
    for k in range(spec.mtp_layers):
        last_layer = spec.num_layers - 1
        out += [replace(t, part=Part.MTP, layer=None)
                for t in layer_tensors(spec, last_layer, prefix=f"mtp.layers.{k}.", kind=FULL_ATTENTION)]
    return out


def embed_tensor(spec: ModelSpec) -> TensorSpec:
    return TensorSpec(f"{spec.text_prefix}embed_tokens.weight", (spec.vocab_size, spec.hidden_size), VOCAB, Part.EMBED,
                      None, 0)


def final_norm_tensor(spec: ModelSpec) -> TensorSpec:
    return TensorSpec(f"{spec.text_prefix}norm.weight", (spec.hidden_size,), REPLICATED, Part.FINAL_NORM)


def lm_head_tensor(spec: ModelSpec) -> TensorSpec:
    """lm_head; with tied embeddings it *is* embed_tokens (same storage), so it is not a checkpoint tensor: a stage
    that holds it apart from the embedding reads it from ``model.embed_tokens.weight`` (``source``)."""
    source = embed_tensor(spec).name if spec.tie_word_embeddings else None
    return TensorSpec("lm_head.weight", (spec.vocab_size, spec.hidden_size), VOCAB, Part.LM_HEAD, None, 0,
                      source=source)


def stage_edge_tensors(spec: ModelSpec, is_first: bool, is_last: bool) -> list[TensorSpec]:
    """The weights outside the decoder layers that a pipeline stage holds: the one placement rule.

    embed_tokens on the first stage; the final norm and lm_head on the last (vLLM ``Qwen3ForCausalLM.__init__``
    with ``PPMissingLayer``; Megatron-LM ``GPTModel`` pre/post-process). With tied embeddings and pp = 1 the lm_head
    *is* the embedding (one copy, not listed); with pp > 1 the last stage builds its own lm_head and loads the
    embedding into it: a second copy (``lm_head_tensor(...).source``). A vision tower sits with the embedding on the
    first stage (vLLM ``Qwen3VLForConditionalGeneration``: the encoder runs where the input embeddings are built).
    """
    out = [embed_tensor(spec)] + vision_tensors(spec) if is_first else []
    if is_last:
        out.append(final_norm_tensor(spec))
        if not spec.tie_word_embeddings or not is_first:
            out.append(lm_head_tensor(spec))
        if spec.speculative_tokens:  # the MTP head drafts from the last hidden state (vLLM: on the last PP rank)
            out += mtp_tensors(spec)
    return out


def stage_tensors(spec: ModelSpec, first: int, last: int, is_first: bool, is_last: bool) -> list[TensorSpec]:
    """Every weight a stage holding decoder layers first…last keeps, in checkpoint order."""
    edges = stage_edge_tensors(spec, is_first, is_last)
    out = [t for t in edges if t.part in (Part.EMBED, Part.VISION)]
    for layer in range(first, last + 1):
        out += layer_tensors(spec, layer)
    return out + [t for t in edges if t.part not in (Part.EMBED, Part.VISION)]


def inventory(spec: ModelSpec) -> list[TensorSpec]:
    """Every checkpoint weight (experts grouped per projection): the language model, the vision tower and the MTP
    head. Tied embeddings: lm_head is absent (counted once)."""
    out = [embed_tensor(spec)]
    for layer in range(spec.num_layers):
        out += layer_tensors(spec, layer)
    out.append(final_norm_tensor(spec))
    if not spec.tie_word_embeddings:
        out.append(lm_head_tensor(spec))
    return out + vision_tensors(spec) + mtp_tensors(spec)


def checkpoint_tensors(spec: ModelSpec) -> Iterator[tuple[str, tuple[int, ...]]]:
    """Every concrete tensor name and shape of the checkpoint, experts one by one."""
    for t in inventory(spec):
        yield from t.expand()


def parameter_count(spec: ModelSpec) -> int:
    """Parameters with tied weights counted once."""
    return sum(t.numel for t in inventory(spec))


def active_parameter_count(spec: ModelSpec) -> int:
    """Parameters one token touches: everything but the experts it is not routed to (top-k of E per MoE layer)."""
    total = 0
    for t in inventory(spec):
        if t.experts:
            total += t.numel // t.experts * spec.num_experts_per_tok
        else:
            total += t.numel
    return total


# ---------------------------------------------------------------- shard rules


def kv_heads_per_rank(num_kv_heads: int, tp: int) -> int:
    """KV heads one TP rank holds: kv/tp, or 1 (replicated tp/kv times) when tp > kv.

    Source: vLLM ``QKVParallelLinear.__init__`` (vllm/model_executor/layers/linear.py).
    """
    return num_kv_heads // tp if tp <= num_kv_heads else 1


def local_experts(num_experts: int, ep: int, ep_rank: int) -> range:
    """Experts held by EP rank ``ep_rank``: a contiguous run, first ranks take the remainder.

    Source: vLLM ``determine_expert_map`` (vllm/model_executor/layers/fused_moe/layer.py), linear placement.
    """
    return split_range(num_experts, ep, ep_rank)


def vocab_range(vocab_size: int, tp: int, tp_rank: int) -> range:
    """The vocabulary rows a TP rank holds of embed_tokens and lm_head: near-equal runs, the first ranks taking the
    remainder (vLLM ``VocabParallelEmbedding``; Qwen3's 151,936 rows split evenly for every tp that divides 64)."""
    return split_range(vocab_size, tp, tp_rank)


@dataclass(frozen=True, slots=True)
class LocalSlice:
    """What one rank holds of a tensor: the index slices of one copy, and the experts (None: not an expert tensor)."""

    slices: tuple[slice, ...]
    experts: range | None = None

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(s.stop - s.start for s in self.slices)

    @property
    def copies(self) -> int:
        return len(self.experts) if self.experts is not None else 1


def local_slices(t: TensorSpec, shard: Shard, head_dim: int) -> LocalSlice:
    """The index slices of ``t`` one rank holds, and the experts it holds.

    This is *the* shard rule: the planner takes shapes from it, the validation workers pass the same slices to
    ``safe_open(...).get_slice``.
    """
    full = tuple(slice(0, d) for d in t.shape)
    if t.rule == REPLICATED:
        return LocalSlice(full)
    if t.rule == EXPERT:
        part = split_range(t.shape[t.split_dim], shard.etp, shard.etp_rank)
        sl = list(full)
        sl[t.split_dim] = slice(part.start, part.stop)
        return LocalSlice(tuple(sl), local_experts(t.experts, shard.ep, shard.ep_rank))
    dim = t.split_dim
    if t.rule == VOCAB:
        rows = vocab_range(t.shape[dim], shard.tp, shard.tp_rank)
        start, stop = rows.start, rows.stop
    elif t.kv_heads:
        held = kv_heads_per_rank(t.kv_heads, shard.tp)
        if shard.tp <= t.kv_heads:
            first = shard.tp_rank * held
        else:  # each KV head replicated tp/kv times: ranks r*rep … r*rep+rep-1 share head r
            first = shard.tp_rank // (shard.tp // t.kv_heads)
        start, stop = first * head_dim, (first + held) * head_dim
    else:
        part = split_range(t.shape[dim], shard.tp, shard.tp_rank)
        start, stop = part.start, part.stop
    sl = list(full)
    sl[dim] = slice(start, stop)
    return LocalSlice(tuple(sl))


def zero3_partition_numel(numel: int, dp: int) -> int:
    """Elements of one parameter a ZeRO-3 rank holds: ceil(numel / dp), padding included, every rank alike.

    Source: DeepSpeed ``deepspeed/runtime/zero/partition_parameters.py`` (0.19.8): ``_partition_param`` allocates
    ``partition_size = _aligned_size(param) // world`` elements per parameter, ``_aligned_size = ds_numel +
    _padding_size`` pads the flat parameter up to a multiple of the world size (no other alignment), so each
    parameter is partitioned on its own; FSDP's FlatParameter pads the same way. Measured byte-exact with
    ``shardsim validate 0.6b --backend deepspeed --zero 3 --dp 2|3 --layers 4`` (dp 3 exercises the padding).
    """
    return ceil_div(numel, dp)
