"""A ModelSpec from a Hugging Face config dict of Qwen3ForCausalLM or Qwen3MoeForCausalLM: strictly typed, bounded.

Types are checked as JSON gives them: an integer field takes an integer (not a bool, not a string), a flag takes
``true``/``false`` (not ``"false"``, which Python would read as true). Sizes are bounded by the limits in
``shardsim.constants`` (each error names its limit), so no config can make a command's work unbounded.
"""

from __future__ import annotations

from shardsim.constants import (
    MAX_CONTEXT_TOKENS,
    MAX_EXPERTS,
    MAX_HEAD_DIM,
    MAX_HEADS,
    MAX_HIDDEN,
    MAX_INTERMEDIATE,
    MAX_LAYERS,
    MAX_VOCAB,
)
from shardsim.core.model import SUPPORTED_ARCHITECTURES, ModelSpec, QuantConfig
from shardsim.errors import ShardsimError
from shardsim.units import canonical_dtype

GROUP_SIZES = (-1, 16, 32, 64, 128, 256, 512, 1024)
"""Quantization group sizes that exist in GPTQ / AWQ checkpoints (-1: one group per output channel)."""


def _shown(value: object) -> str:
    """A JSON value as the file spells it (null, true), shortened."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    return f"{value!r:.60}"


def _int(config: dict, key: str, source: str, limit: int, default: int | None = None, low: int = 1) -> int:
    """An integer field in [low, limit]; ``default`` when absent (None: required)."""
    if key not in config:
        if default is None:
            raise ShardsimError(f"{source}: field '{key}' is missing; a Qwen3 config.json has it")
        return default
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int):
        raise ShardsimError(f"{source}: field '{key}' must be a whole number, got {_shown(value)}")
    if not low <= value <= limit:
        raise ShardsimError(f"{source}: field '{key}' is {value:,}; accepted: {low:,} … {limit:,} (shardsim's limit)")
    return value


def _bool(config: dict, key: str, source: str, default: bool) -> bool:
    value = config.get(key, default)
    if not isinstance(value, bool):
        raise ShardsimError(f"{source}: field '{key}' must be true or false, got {_shown(value)}")
    return value


def _strings(value: object, field: str, source: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ShardsimError(f"{source}: field '{field}' must be a list of module names")
    return tuple(value)


def quant_from_config(config: dict, source: str) -> QuantConfig:
    """``quantization_config`` reduced to what sizes depend on: fp8 (block scales), gptq / awq, modelopt NVFP4."""
    qc = config.get("quantization_config")
    if qc is None or qc == {}:
        return QuantConfig()
    if not isinstance(qc, dict):
        raise ShardsimError(f"{source}: field 'quantization_config' must be an object")
    method = qc.get("quant_method", "")
    if not isinstance(method, str):
        raise ShardsimError(f"{source}: 'quantization_config.quant_method' must be a string, got {method!r:.60}")
    method = method.lower()
    where = f"{source}: quantization_config"
    skip = _strings(qc.get("modules_to_not_convert"), "quantization_config.modules_to_not_convert", source)
    if method == "fp8":
        block = qc.get("weight_block_size") or [128, 128]
        if not (isinstance(block, list) and len(block) == 2
                and all(isinstance(b, int) and not isinstance(b, bool) and 1 <= b <= 4096 for b in block)):
            raise ShardsimError(f"{where}.weight_block_size must be two whole numbers from 1 to 4,096")
        return QuantConfig(method="fp8", bits=8, block_size=(block[0], block[1]), skip_modules=skip)
    if method in ("gptq", "awq"):
        bits = qc.get("bits", qc.get("w_bit", 4))
        group = qc.get("group_size", qc.get("q_group_size", 128))
        if type(bits) is not int or bits not in (4, 8) or type(group) is not int or group not in GROUP_SIZES:
            raise ShardsimError(f"{source}: {method} with bits={bits!r:.20} group_size={group!r:.20} is not supported; "
                                f"accepted: bits 4 or 8, group_size {', '.join(map(str, GROUP_SIZES))}")
        desc_act = _bool(qc, "desc_act", f"{where}", False)
        return QuantConfig(method=method, bits=bits, group_size=group, desc_act=desc_act, skip_modules=skip)
    algo = qc.get("quant_algo", "NVFP4")
    if method in ("modelopt", "nvfp4") and isinstance(algo, str) and "FP4" in algo.upper():
        exclude = _strings(qc.get("exclude_modules"), "quantization_config.exclude_modules", source)
        return QuantConfig(method="nvfp4", bits=4, group_size=16, skip_modules=exclude or skip)
    raise ShardsimError(f"{source}: quant_method {method!r:.40} is not supported; accepted: fp8, gptq, awq, modelopt (NVFP4)")


def _moe_fields(config: dict, source: str, layers: int) -> dict:
    experts = _int(config, "num_experts", source, MAX_EXPERTS)
    fields = dict(num_experts=experts,
                  num_experts_per_tok=_int(config, "num_experts_per_tok", source, experts),
                  moe_intermediate_size=_int(config, "moe_intermediate_size", source, MAX_INTERMEDIATE),
                  decoder_sparse_step=_int(config, "decoder_sparse_step", source, layers, default=1))
    mlp_only = config.get("mlp_only_layers") or []
    if (not isinstance(mlp_only, list) or len(set(mlp_only)) != len(mlp_only)
            or not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < layers for i in mlp_only)):
        raise ShardsimError(f"{source}: field 'mlp_only_layers' must be a list of distinct layer indices "
                            f"0 … {layers - 1}")
    fields["mlp_only_layers"] = tuple(mlp_only)
    return fields


def _derived_head_dim(hidden: int, heads: int, source: str) -> int:
    """hidden_size // num_attention_heads, transformers' fallback when a config has no head_dim."""
    if hidden // heads < 1:
        raise ShardsimError(f"{source}: no head_dim, and hidden_size {hidden} // num_attention_heads {heads} is 0; "
                            "give head_dim")
    return hidden // heads


def _dtype(text: str, source: str) -> str:
    try:
        return canonical_dtype(text)
    except ShardsimError as exc:
        raise ShardsimError(f"{source}: field 'torch_dtype': {exc}") from None


def spec_from_config(config: dict, name: str, source: str = "config.json") -> ModelSpec:
    """Build a ModelSpec from a Hugging Face config dict of Qwen3ForCausalLM or Qwen3MoeForCausalLM."""
    if not isinstance(config, dict):
        raise ShardsimError(f"{source}: expected a JSON object")
    archs = config.get("architectures")
    arch = archs[0] if isinstance(archs, list) and len(archs) == 1 and isinstance(archs[0], str) else None
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ShardsimError(f"{source}: architectures {archs!r:.80} is not supported; accepted: one of "
                            f"{', '.join(SUPPORTED_ARCHITECTURES)}")
    hidden = _int(config, "hidden_size", source, MAX_HIDDEN)
    heads = _int(config, "num_attention_heads", source, MAX_HEADS)
    kv_heads = _int(config, "num_key_value_heads", source, heads, default=heads)
    if heads % kv_heads:
        raise ShardsimError(f"{source}: num_attention_heads {heads} is not a multiple of num_key_value_heads {kv_heads}")
    layers = _int(config, "num_hidden_layers", source, MAX_LAYERS)
    dtype = config.get("torch_dtype", config.get("dtype"))
    dtype = "bfloat16" if dtype is None else dtype
    if not isinstance(dtype, str):
        raise ShardsimError(f"{source}: field 'torch_dtype' must be a string such as \"bfloat16\"")
    fields = dict(
        name=name, architecture=arch, hidden_size=hidden, num_heads=heads, num_kv_heads=kv_heads, num_layers=layers,
        intermediate_size=_int(config, "intermediate_size", source, MAX_INTERMEDIATE),
        # Qwen3 configs always carry head_dim; transformers falls back to hidden // heads only when it is absent.
        head_dim=(_int(config, "head_dim", source, MAX_HEAD_DIM) if "head_dim" in config
                  else _derived_head_dim(hidden, heads, source)),
        vocab_size=_int(config, "vocab_size", source, MAX_VOCAB),
        tie_word_embeddings=_bool(config, "tie_word_embeddings", source, False),
        max_position_embeddings=_int(config, "max_position_embeddings", source, MAX_CONTEXT_TOKENS, default=40960),
        torch_dtype=_dtype(dtype, source), attention_bias=_bool(config, "attention_bias", source, False),
        quant=quant_from_config(config, source),
    )
    if arch == "Qwen3MoeForCausalLM":
        fields.update(_moe_fields(config, source, layers))
    return ModelSpec(**fields)
