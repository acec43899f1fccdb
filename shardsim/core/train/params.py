"""The parameters one training rank holds, counted tensor by tensor through the shard rules (``core.tensors``):
trainable and frozen elements, the largest decoder layer (FSDP's unit), and LoRA's adapters.

LoRA (Hu et al. 2021, arXiv:2106.09685; PEFT ``LoraLayer.update_layer``): a targeted Linear W [out, in] gains
A [r, in] and B [out, r], r·(in + out) trainable elements, W frozen. transformers 5 keeps Qwen3-MoE experts as
3-D parameters (``Qwen3MoeExperts``), not Linear modules, so expert projections are never LoRA targets; the
router ``mlp.gate`` is not a target name either.
"""

from __future__ import annotations

from dataclasses import dataclass

from shardsim.core.layout import Layout, rank_coords, shard_of, stage_ranges
from shardsim.core.model import LINEAR_ATTENTION, ModelSpec
from shardsim.core.tensors import local_slices, numel_of, stage_tensors, vocab_range


@dataclass(frozen=True, slots=True)
class RankParams:
    """Elements one rank holds (after TP / EP / PP), by role."""

    linear: int           # weights of Linear modules (quantizable, LoRA targets among them)
    other: int            # embeddings, norms, router: kept in bf16 / trained in full
    largest_layer: int    # the largest decoder layer's elements on this rank (FSDP's all-gather unit)
    lora: int             # LoRA adapter elements (0 without LoRA)
    lora_targets_numel: int  # elements of the Linear weights LoRA wraps (frozen)
    tensors: tuple[int, ...]  # every local tensor's element count (ZeRO-3 partitions each on its own)
    hf_shapes: tuple[tuple[int, ...], ...]  # the trained module's parameters in registration order (tp = ep = 1)
    layers: int
    first_layer: int
    last_layer: int
    replicated_grad_extra: int = 0  # torch-native TP: the embedding gradient is whole, not the rank's vocab rows
    experts: int = 0      # routed experts' elements on this rank (their data-parallel group is the expert one)

    @property
    def total(self) -> int:
        return self.linear + self.other


def _lora_target(name: str, targets: tuple[str, ...]) -> bool:
    return any(f".{t}.weight" in name for t in targets)


def rank_params(spec: ModelSpec, layout: Layout, rank: int, lora_rank: int = 0,
                lora_targets: tuple[str, ...] = ()) -> RankParams:
    """What ``rank`` holds of ``spec`` on ``layout`` (a validated layout)."""
    coords = rank_coords(rank, layout)
    shard = shard_of(coords, layout)
    first, last = stage_ranges(layout)[coords.pp_rank]
    tensors = stage_tensors(spec, first, last, coords.pp_rank == 0, coords.pp_rank == layout.pp - 1)
    linear = other = lora = wrapped = experts = 0
    per_layer: dict[int, int] = {}
    sizes = []
    for t in tensors:
        local = local_slices(t, shard, spec.head_dim)
        n = numel_of(local.shape) * local.copies
        sizes.append(n)
        if t.linear:
            linear += n
        else:
            other += n
        if t.layer is not None:
            per_layer[t.layer] = per_layer.get(t.layer, 0) + n
        if t.experts:
            experts += n
        if lora_rank and t.linear and not t.experts and _lora_target(t.name, lora_targets):
            out_dim, in_dim = local.shape
            lora += lora_rank * (in_dim + out_dim)
            wrapped += n
    shapes = hf_parameter_shapes(spec, first, last, coords.pp_rank == 0, coords.pp_rank == layout.pp - 1) \
        if layout.tp == 1 and layout.ep == 1 else ()
    extra = 0
    if coords.pp_rank == 0 and layout.tp > 1:
        rows = vocab_range(spec.vocab_size, layout.tp, coords.tp_rank)
        extra = (spec.vocab_size - len(rows)) * spec.hidden_size
    return RankParams(linear, other, max(per_layer.values(), default=0), lora, wrapped, tuple(sizes), shapes,
                      last - first + 1, first, last, extra, experts)


def is_moe_layer(spec: ModelSpec, layer: int) -> bool:
    """Qwen3-MoE's rule (modeling_qwen3_moe.py Qwen3MoeDecoderLayer): experts unless the layer is in
    mlp_only_layers, every decoder_sparse_step-th layer."""
    return spec.is_moe and layer not in spec.mlp_only_layers and (layer + 1) % spec.decoder_sparse_step == 0


def hf_parameter_shapes(spec: ModelSpec, first: int, last: int, is_first: bool, is_last: bool) -> tuple:
    """The parameters of the transformers model a data-parallel framework trains, in registration order, the
    order DeepSpeed flattens them and FSDP shards them (``nn.Module.named_parameters``: a module's own parameters,
    then its children in the order ``__init__`` assigns them). transformers@5.24.0 modeling_qwen3.py: Qwen3Attention
    q, k, v, o, q_norm, k_norm; Qwen3MLP gate, up, down; then input_layernorm, post_attention_layernorm;
    modeling_qwen3_moe.py: Qwen3MoeExperts' fused gate_up_proj [E, 2·I, H] and down_proj [E, H, I], then the
    router [E, H]. The hybrids (transformers@v5.25.0): a linear-attention layer's ``_deltanet_shapes``; the gated
    attention's q_proj is 2 × wide (query and gate); a MoE block with a shared expert (``Qwen3NextSparseMoeBlock``,
    ``Qwen3_5MoeSparseMoeBlock``) registers the router, the experts, the shared expert (gate, up, down) and its
    gate [1, H]. A tied lm_head is the embedding itself (counted once); a vision tower and MTP head are not
    trained (``trained_model``)."""
    h, hd, v = spec.hidden_size, spec.head_dim, spec.vocab_size
    q, kv = spec.num_heads * hd, spec.num_kv_heads * hd
    out: list[tuple[int, ...]] = [(v, h)] if is_first else []
    for layer in range(first, last + 1):
        if spec.layer_kind(layer) == LINEAR_ATTENTION:
            out += _deltanet_shapes(spec)
        else:
            out += [(2 * q if spec.attn_output_gate else q, h), (kv, h), (kv, h), (h, q), (hd,), (hd,)]
        if is_moe_layer(spec, layer):
            e, ie, si = spec.num_experts, spec.moe_intermediate_size, spec.shared_expert_intermediate_size
            if si:
                out += [(e, h), (e, 2 * ie, h), (e, h, ie), (si, h), (si, h), (h, si), (1, h)]
            else:
                out += [(e, 2 * ie, h), (e, h, ie), (e, h)]
        else:
            out += [(spec.intermediate_size, h), (spec.intermediate_size, h), (h, spec.intermediate_size)]
        out += [(h,), (h,)]
    if is_last:
        out.append((h,))
        if not spec.tie_word_embeddings or not is_first:
            out.append((v, h))
    return tuple(out)


def _deltanet_shapes(spec: ModelSpec) -> list[tuple[int, ...]]:
    """A Gated-DeltaNet layer's parameters in registration order: its own ``dt_bias`` and ``A_log`` [nv], then
    ``conv1d`` [CONV, 1, K] and, fused (``Qwen3NextGatedDeltaNet.__init__``@v5.25.0), ``in_proj_qkvz``, ``in_proj_ba``,
    the gated norm [dv] and ``out_proj``; split (``Qwen3_5GatedDeltaNet.__init__``, which assigns the input
    projections last), the norm, ``out_proj``, then ``in_proj_qkv``, ``in_proj_z``, ``in_proj_b``, ``in_proj_a``."""
    la, h = spec.linear, spec.hidden_size
    key, val, nv = la.key_dim, la.value_dim, la.num_value_heads
    head = [(nv,), (nv,), (la.conv_dim, 1, la.conv_kernel)]
    tail = [(la.value_head_dim,), (h, val)]
    if la.projection == "fused":
        return head + [(2 * key + 2 * val, h), (2 * nv, h)] + tail
    return head + tail + [(2 * key + val, h), (val, h), (nv, h), (nv, h)]


TEXT_ONLY_CAUSAL_LM = {"Qwen3_5ForConditionalGeneration": "Qwen3_5ForCausalLM",
                       "Qwen3_5MoeForConditionalGeneration": "Qwen3_5MoeForCausalLM"}
"""What ``AutoModelForCausalLM`` builds for these architectures (transformers@v5.25.0 models/auto/modeling_auto.py
``MODEL_FOR_CAUSAL_LM_MAPPING_NAMES``: ``qwen3_5`` → ``Qwen3_5ForCausalLM``, ``qwen3_5_moe`` →
``Qwen3_5MoeForCausalLM``, "VLM compatibility"): the language model alone, which skips ``model.visual.*`` and
``mtp.*`` on load (``_keys_to_ignore_on_load_unexpected``)."""


def trained_model(spec: ModelSpec) -> ModelSpec:
    """The model a training run holds: the language model the frameworks train (``validate --train`` loads it with
    ``AutoModelForCausalLM``). A Qwen3.5 / 3.6 vision tower is absent (``TEXT_ONLY_CAUSAL_LM``); the MTP head is never
    loaded (transformers drops ``mtp.*``: ``_keys_to_ignore_on_load_unexpected``; ``speculative_tokens`` stays 0)."""
    if spec.architecture in TEXT_ONLY_CAUSAL_LM and spec.vision is not None:
        return spec.model_copy(update={"vision": None})
    return spec
