"""ModelSpec: the architecture facts of a Qwen3, Qwen3-Next, Qwen3.5 / 3.6 or Qwen3-VL checkpoint, from a preset or any
config.json.

The hybrids (Qwen3-Next, Qwen3.5 / 3.6) interleave Gated-DeltaNet (linear attention) layers with gated full-attention
layers (``layer_types``; three linear before every full one), carry a shared expert beside the routed ones, an MTP
head, and (Qwen3.5 / 3.6, Qwen3-VL) a vision tower; their language model is nested under ``text_config``.
Sources: transformers v5.25.0 ``models/qwen3_next``, ``qwen3_5``, ``qwen3_5_moe``, ``qwen3_vl``, ``qwen3_vl_moe``
(configuration and modeling files).

Pure: builds a spec from a config *dict*; reading files is ``shardsim.presets``. ``head_dim`` is always read from the config:
Qwen3 sets it to 128 for every size, which is *not* hidden_size / num_attention_heads (e.g. 0.6B: 1024 / 16 = 64).
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import BaseModel, ConfigDict

from shardsim.errors import ShardsimError

SUPPORTED_ARCHITECTURES = (
    "Qwen3ForCausalLM", "Qwen3MoeForCausalLM", "Qwen3NextForCausalLM", "Qwen3_5ForConditionalGeneration",
    "Qwen3_5MoeForConditionalGeneration", "Qwen3VLForConditionalGeneration", "Qwen3VLMoeForConditionalGeneration",
)
MOE_ARCHITECTURES = ("Qwen3MoeForCausalLM", "Qwen3NextForCausalLM", "Qwen3_5MoeForConditionalGeneration",
                     "Qwen3VLMoeForConditionalGeneration")
FULL_ATTENTION, LINEAR_ATTENTION = "full_attention", "linear_attention"


class LinearAttention(BaseModel):
    """Gated DeltaNet (``linear_attention`` layers): key / value heads and dims and the short convolution.

    ``projection``: ``fused`` (Qwen3-Next: ``in_proj_qkvz`` and ``in_proj_ba``) or ``split`` (Qwen3.5 / 3.6:
    ``in_proj_qkv``, ``in_proj_z``, ``in_proj_b``, ``in_proj_a``). Source: transformers v5.25.0
    ``qwen3_next/modeling_qwen3_next.py`` ``Qwen3NextGatedDeltaNet`` and ``qwen3_5/modeling_qwen3_5.py``
    ``Qwen3_5GatedDeltaNet``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    num_key_heads: int
    num_value_heads: int
    key_head_dim: int
    value_head_dim: int
    conv_kernel: int
    projection: str = "fused"

    @property
    def key_dim(self) -> int:
        return self.num_key_heads * self.key_head_dim

    @property
    def value_dim(self) -> int:
        return self.num_value_heads * self.value_head_dim

    @property
    def conv_dim(self) -> int:
        """Channels of the depthwise short convolution: q, k and v concatenated (2·key_dim + value_dim)."""
        return 2 * self.key_dim + self.value_dim


class VisionSpec(BaseModel):
    """The vision tower of Qwen3-VL and Qwen3.5 / 3.6 (``vision_config``): a ViT of ``depth`` blocks, its patch merger
    and (Qwen3-VL) the deepstack mergers. Source: transformers v5.25.0 ``qwen3_vl/modeling_qwen3_vl.py``
    ``Qwen3VLVisionModel`` and ``qwen3_5/modeling_qwen3_5.py`` ``Qwen3_5VisionModel``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    depth: int
    hidden_size: int
    intermediate_size: int
    num_heads: int
    out_hidden_size: int
    in_channels: int = 3
    patch_size: int = 16
    temporal_patch_size: int = 2
    spatial_merge_size: int = 2
    num_position_embeddings: int = 2304
    deepstack_mergers: int = 0


class QuantConfig(BaseModel):
    """A checkpoint's ``quantization_config`` reduced to what sizes depend on.

    method: ``fp8`` (block-scaled e4m3, Qwen's official FP8), ``gptq`` or ``awq`` (packed int32 weights with
    group scales and zeros), or ``none``. ``skip_modules``: module names or suffixes kept in high precision
    (``modules_to_not_convert`` of the config); lm_head and embed_tokens are never quantized.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: str = "none"
    bits: int = 16
    group_size: int = 128
    block_size: tuple[int, int] = (128, 128)
    desc_act: bool = False
    skip_modules: tuple[str, ...] = ()


class ModelSpec(BaseModel):
    """Architecture of one Qwen3 dense or MoE checkpoint; frozen, validated once."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    architecture: str
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int
    vocab_size: int
    tie_word_embeddings: bool
    max_position_embeddings: int
    torch_dtype: str = "bf16"
    num_experts: int = 0
    num_experts_per_tok: int = 0
    moe_intermediate_size: int = 0
    decoder_sparse_step: int = 1
    mlp_only_layers: tuple[int, ...] = ()
    attention_bias: bool = False
    quant: QuantConfig = QuantConfig()
    # Hybrids, Qwen3.5 / 3.6 and Qwen3-VL (defaults: plain Qwen3)
    layer_types: tuple[str, ...] = ()  # per decoder layer; empty: every layer full attention
    attn_output_gate: bool = False  # gated attention: q_proj also yields a per-head output gate (2 × rows)
    linear: LinearAttention | None = None
    shared_expert_intermediate_size: int = 0
    mtp_layers: int = 0
    vision: VisionSpec | None = None
    state_dtype: str | None = None  # the recurrent state's dtype the config asks for (``mamba_ssm_dtype``)
    text_prefix: str = "model."  # where the language model's tensors live in the checkpoint
    fp32_tensors: tuple[str, ...] = ()  # name suffixes the checkpoint stores in fp32 (read from its tensor table)
    mtp_experts_fused: bool = False  # the checkpoint stores the MTP head's experts fused (read from its tensor table)
    speculative_tokens: int = 0  # served with MTP speculative decoding: draft tokens per step (0: MTP not loaded)
    partial_rotary_factor: float = 1.0  # the share of head_dim rotary embeddings turn (hybrids: 0.25)
    mrope_section: tuple[int, ...] = ()  # multimodal rope (Qwen3.5 / 3.6): position ids per sequence

    def served(self, speculative_tokens: int = 0, language_model_only: bool = False) -> "ModelSpec":
        """The model as an engine serves it: with its MTP head for ``speculative_tokens`` draft tokens (vLLM
        ``--speculative-config '{"method": "mtp", "num_speculative_tokens": N}'``), without its vision tower when
        text only (vLLM ``--language-model-only``; ``--limit-mm-per-prompt`` of 0 for every modality)."""
        if speculative_tokens and not self.mtp_layers:
            raise ShardsimError(f"{self.name} has no MTP head; speculative decoding with MTP needs one (Qwen3-Next, "
                                "Qwen3.5 / 3.6)")
        if language_model_only and self.vision is None:
            raise ShardsimError(f"{self.name} has no vision tower; --language-model-only changes nothing")
        update = {"speculative_tokens": speculative_tokens} | ({"vision": None} if language_model_only else {})
        return self.model_copy(update=update) if speculative_tokens or language_model_only else self

    @property
    def rotary_dim(self) -> int:
        """Dims of a head the rotary embedding turns: ``int(head_dim × partial_rotary_factor)`` (transformers v5.25.0
        ``Qwen3NextRotaryEmbedding.compute_default_rope_parameters``)."""
        return int(self.head_dim * self.partial_rotary_factor)

    @property
    def is_moe(self) -> bool:
        return self.architecture in MOE_ARCHITECTURES and self.num_experts > 0

    def layer_kind(self, layer: int) -> str:
        """``full_attention`` or ``linear_attention`` (Gated DeltaNet)."""
        return self.layer_types[layer] if self.layer_types else FULL_ATTENTION

    @property
    def attention_layers(self) -> int:
        """Decoder layers that hold a KV cache."""
        return _full_attention_layers(self.layer_types, self.num_layers)

    @property
    def is_hybrid(self) -> bool:
        return self.linear is not None and self.attention_layers < self.num_layers

    def is_moe_layer(self, layer: int) -> bool:
        """Qwen3-MoE: a layer is sparse unless listed in mlp_only_layers or off the sparse step.

        Source: transformers/models/qwen3_moe/modeling_qwen3_moe.py, Qwen3MoeDecoderLayer.__init__.
        """
        return (
            self.is_moe
            and layer not in self.mlp_only_layers
            and (layer + 1) % self.decoder_sparse_step == 0
        )

    def truncated(self, num_layers: int) -> "ModelSpec":
        """The same width with only the first ``num_layers`` decoder layers (validation's ``--layers K``)."""
        if not 1 <= num_layers <= self.num_layers:
            raise ShardsimError(f"--layers {num_layers} is out of range; accepted: 1 … {self.num_layers}")
        if num_layers == self.num_layers:
            return self
        return self.model_copy(update={"num_layers": num_layers, "name": f"{self.name} (first {num_layers} layers)",
                                       "layer_types": self.layer_types[:num_layers]})


@lru_cache(maxsize=256)
def _full_attention_layers(layer_types: tuple[str, ...], num_layers: int) -> int:
    """Layers of ``num_layers`` that are full attention (every one where ``layer_types`` is empty); memoised, since
    engine predictions ask per rank."""
    if not layer_types:
        return num_layers
    return sum(1 for kind in layer_types[:num_layers] if kind == FULL_ATTENTION)
