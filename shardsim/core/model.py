"""ModelSpec: the architecture facts of a Qwen3 checkpoint, from a preset or any config.json.

Pure: builds a spec from a config *dict*; reading files is ``shardsim.presets``. ``head_dim`` is always read from the config:
Qwen3 sets it to 128 for every size, which is *not* hidden_size / num_attention_heads (e.g. 0.6B: 1024 / 16 = 64).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from shardsim.errors import ShardsimError
from shardsim.units import canonical_dtype

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


def _require(config: dict, key: str, source: str) -> int:
    value = config.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ShardsimError(f"{source}: field '{key}' must be a positive integer, got {value!r}")
    return value


def _quant_from_config(config: dict, source: str) -> QuantConfig:
    qc = config.get("quantization_config")
    if not qc:
        return QuantConfig()
    if not isinstance(qc, dict):
        raise ShardsimError(f"{source}: field 'quantization_config' must be an object")
    method = str(qc.get("quant_method", "")).lower()
    skip = tuple(qc.get("modules_to_not_convert") or ())
    if method == "fp8":
        block = qc.get("weight_block_size") or [128, 128]
        if not (isinstance(block, list) and len(block) == 2 and all(isinstance(b, int) and b > 0 for b in block)):
            raise ShardsimError(f"{source}: 'quantization_config.weight_block_size' must be two positive integers")
        return QuantConfig(method="fp8", bits=8, block_size=(block[0], block[1]), skip_modules=skip)
    if method in ("gptq", "awq"):
        bits = qc.get("bits", qc.get("w_bit", 4))
        group = qc.get("group_size", qc.get("q_group_size", 128))
        if bits not in (4, 8) or not isinstance(group, int) or group == 0:
            raise ShardsimError(f"{source}: {method} with bits={bits!r} group_size={group!r} is not supported; accepted: bits 4 or 8, group_size > 0 or -1")
        return QuantConfig(method=method, bits=bits, group_size=group, desc_act=bool(qc.get("desc_act", False)), skip_modules=skip)
    if method in ("modelopt", "nvfp4") and "FP4" in str(qc.get("quant_algo", "NVFP4")).upper():
        return QuantConfig(method="nvfp4", bits=4, group_size=16, skip_modules=tuple(qc.get("exclude_modules") or skip))
    raise ShardsimError(f"{source}: quant_method {method!r} is not supported; accepted: fp8, gptq, awq, modelopt (NVFP4)")


def spec_from_config(config: dict, name: str, source: str = "config.json") -> ModelSpec:
    """Build a ModelSpec from a Hugging Face config dict of Qwen3ForCausalLM or Qwen3MoeForCausalLM."""
    if not isinstance(config, dict):
        raise ShardsimError(f"{source}: expected a JSON object")
    archs = config.get("architectures") or []
    arch = archs[0] if isinstance(archs, list) and archs else None
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ShardsimError(f"{source}: architecture {arch!r} is not supported; accepted: {', '.join(SUPPORTED_ARCHITECTURES)}")
    hidden = _require(config, "hidden_size", source)
    heads = _require(config, "num_attention_heads", source)
    head_dim = config.get("head_dim")
    if head_dim is None:
        # Qwen3 configs always carry head_dim; transformers falls back to hidden // heads only when it is absent.
        head_dim = hidden // heads
    fields = dict(
        name=name,
        architecture=arch,
        hidden_size=hidden,
        intermediate_size=_require(config, "intermediate_size", source),
        num_layers=_require(config, "num_hidden_layers", source),
        num_heads=heads,
        num_kv_heads=config.get("num_key_value_heads", heads),
        head_dim=head_dim,
        vocab_size=_require(config, "vocab_size", source),
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        max_position_embeddings=config.get("max_position_embeddings", 40960),
        torch_dtype=canonical_dtype(config.get("torch_dtype") or config.get("dtype") or "bfloat16"),
        attention_bias=bool(config.get("attention_bias", False)),
        quant=_quant_from_config(config, source),
    )
    for key in ("num_kv_heads", "head_dim", "max_position_embeddings"):
        value = fields[key]
        if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
            raise ShardsimError(f"{source}: field '{key}' must be a positive integer, got {value!r}")
    if heads % fields["num_kv_heads"]:
        raise ShardsimError(f"{source}: num_attention_heads {heads} is not a multiple of num_key_value_heads {fields['num_kv_heads']}")
    if arch == "Qwen3MoeForCausalLM":
        fields["num_experts"] = _require(config, "num_experts", source)
        fields["num_experts_per_tok"] = _require(config, "num_experts_per_tok", source)
        fields["moe_intermediate_size"] = _require(config, "moe_intermediate_size", source)
        fields["decoder_sparse_step"] = _require(config, "decoder_sparse_step", source) if "decoder_sparse_step" in config else 1
        mlp_only = config.get("mlp_only_layers") or []
        if not isinstance(mlp_only, list) or not all(isinstance(i, int) for i in mlp_only):
            raise ShardsimError(f"{source}: field 'mlp_only_layers' must be a list of layer indices")
        fields["mlp_only_layers"] = tuple(mlp_only)
        if fields["num_experts_per_tok"] > fields["num_experts"]:
            raise ShardsimError(f"{source}: num_experts_per_tok exceeds num_experts")
    return ModelSpec(**fields)
