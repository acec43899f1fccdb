"""ModelSpec: the architecture facts of a Qwen3 checkpoint, from a preset or any config.json.

Pure: builds a spec from a config *dict*; reading files is ``shardsim.presets``. ``head_dim`` is always read from the config:
Qwen3 sets it to 128 for every size, which is *not* hidden_size / num_attention_heads (e.g. 0.6B: 1024 / 16 = 64).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from shardsim.errors import ShardsimError

SUPPORTED_ARCHITECTURES = ("Qwen3ForCausalLM", "Qwen3MoeForCausalLM")


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

    @property
    def is_moe(self) -> bool:
        return self.architecture == "Qwen3MoeForCausalLM" and self.num_experts > 0

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
        return self.model_copy(update={"num_layers": num_layers, "name": f"{self.name} (first {num_layers} layers)"})
