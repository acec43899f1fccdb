"""A ModelSpec from a Hugging Face config dict of Qwen3 (dense, MoE), Qwen3-Next, Qwen3.5 / 3.6 or Qwen3-VL: strictly
typed, bounded. The language model's fields are read at the top level or under ``text_config`` (Qwen3.5 / 3.6,
Qwen3-VL), the vision tower's under ``vision_config``.

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
from shardsim.core.model import (
    FULL_ATTENTION,
    LINEAR_ATTENTION,
    MOE_ARCHITECTURES,
    SUPPORTED_ARCHITECTURES,
    LinearAttention,
    ModelSpec,
    QuantConfig,
    VisionSpec,
)
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


NESTED_TEXT = ("Qwen3_5ForConditionalGeneration", "Qwen3_5MoeForConditionalGeneration",
               "Qwen3VLForConditionalGeneration", "Qwen3VLMoeForConditionalGeneration")
"""Architectures whose language model sits under ``text_config`` and under ``model.language_model.`` in the
checkpoint (transformers v5.25.0 ``conversion_mapping.py``: the qwen3_5 / qwen3_vl prefix rules)."""
HYBRID = {"Qwen3NextForCausalLM": "fused", "Qwen3_5ForConditionalGeneration": "split",
          "Qwen3_5MoeForConditionalGeneration": "split"}
"""Hybrid architectures and how their Gated-DeltaNet input projections are stored (``core.model.LinearAttention``)."""
QWEN3_NEXT_MTP_LAYERS = 1
"""Qwen3-Next's config has no ``mtp_num_hidden_layers``, yet its checkpoints hold one MTP layer (``mtp.layers.0.*``:
the tensor table of Qwen/Qwen3-Next-80B-A3B-Instruct, github.com/gogongxt/python scripts/models@ec99626)."""
DEFAULT_FULL_ATTENTION_INTERVAL = 4
"""transformers v5.25.0 ``qwen3_next/configuration_qwen3_next.py``: ``full_attention_interval`` defaults to 4."""


def spec_from_config(config: dict, name: str, source: str = "config.json") -> ModelSpec:
    """Build a ModelSpec from a Hugging Face config dict of a supported architecture."""
    if not isinstance(config, dict):
        raise ShardsimError(f"{source}: expected a JSON object")
    archs = config.get("architectures")
    arch = archs[0] if isinstance(archs, list) and len(archs) == 1 and isinstance(archs[0], str) else None
    if arch not in SUPPORTED_ARCHITECTURES:
        raise ShardsimError(f"{source}: architectures {archs!r:.80} is not supported; accepted: one of "
                            f"{', '.join(SUPPORTED_ARCHITECTURES)}")
    text = config
    if arch in NESTED_TEXT:
        text = config.get("text_config")
        if not isinstance(text, dict):
            raise ShardsimError(f"{source}: {arch} keeps its language model under 'text_config', which is missing")
        source_text = f"{source}: text_config"
    else:
        source_text = source
    fields = _text_fields(text, config, name, arch, source_text)
    layers = fields["num_layers"]
    if arch in MOE_ARCHITECTURES:
        fields.update(_moe_fields(text, source_text, layers))
        fields["shared_expert_intermediate_size"] = _int(text, "shared_expert_intermediate_size", source_text,
                                                         MAX_INTERMEDIATE, default=0, low=0)
    if arch in HYBRID:
        fields.update(_hybrid_fields(text, source_text, layers, HYBRID[arch], arch))
    if arch in NESTED_TEXT:
        fields["text_prefix"] = "model.language_model."
        if "vision_config" in config:
            fields["vision"] = _vision(config["vision_config"], f"{source}: vision_config")
    return ModelSpec(**fields)


def _text_fields(text: dict, top: dict, name: str, arch: str, source: str) -> dict:
    """The fields every Qwen3 language model has."""
    hidden = _int(text, "hidden_size", source, MAX_HIDDEN)
    heads = _int(text, "num_attention_heads", source, MAX_HEADS)
    kv_heads = _int(text, "num_key_value_heads", source, heads, default=heads)
    if heads % kv_heads:
        raise ShardsimError(f"{source}: num_attention_heads {heads} is not a multiple of num_key_value_heads {kv_heads}")
    layers = _int(text, "num_hidden_layers", source, MAX_LAYERS)
    dtype = text.get("torch_dtype", text.get("dtype", top.get("torch_dtype", top.get("dtype"))))
    dtype = "bfloat16" if dtype is None else dtype
    if not isinstance(dtype, str):
        raise ShardsimError(f"{source}: field 'torch_dtype' must be a string such as \"bfloat16\"")
    tie_source = top if "tie_word_embeddings" in top else text
    return dict(
        name=name, architecture=arch, hidden_size=hidden, num_heads=heads, num_kv_heads=kv_heads, num_layers=layers,
        # MoE configs whose every layer is sparse (Qwen3.5 MoE) carry no dense intermediate size
        intermediate_size=_int(text, "intermediate_size", source, MAX_INTERMEDIATE,
                               default=0 if arch in MOE_ARCHITECTURES else None),
        # Qwen3 configs always carry head_dim; transformers falls back to hidden // heads only when it is absent.
        head_dim=(_int(text, "head_dim", source, MAX_HEAD_DIM) if "head_dim" in text
                  else _derived_head_dim(hidden, heads, source)),
        vocab_size=_int(text, "vocab_size", source, MAX_VOCAB),
        tie_word_embeddings=_bool(tie_source, "tie_word_embeddings", source, False),
        max_position_embeddings=_int(text, "max_position_embeddings", source, MAX_CONTEXT_TOKENS, default=40960),
        torch_dtype=_dtype(dtype, source), attention_bias=_bool(text, "attention_bias", source, False),
        quant=quant_from_config(top, source),
    )


def _hybrid_fields(text: dict, source: str, layers: int, projection: str, arch: str) -> dict:
    """Gated DeltaNet dims, the layer kinds (``layer_types``, else every ``full_attention_interval``-th layer full),
    the output gate, the MTP layers and the state dtype."""
    linear = LinearAttention(
        num_key_heads=_int(text, "linear_num_key_heads", source, MAX_HEADS),
        num_value_heads=_int(text, "linear_num_value_heads", source, MAX_HEADS),
        key_head_dim=_int(text, "linear_key_head_dim", source, MAX_HEAD_DIM),
        value_head_dim=_int(text, "linear_value_head_dim", source, MAX_HEAD_DIM),
        conv_kernel=_int(text, "linear_conv_kernel_dim", source, 64),
        projection=projection)
    if linear.num_value_heads % linear.num_key_heads:
        raise ShardsimError(f"{source}: linear_num_value_heads {linear.num_value_heads} is not a multiple of "
                            f"linear_num_key_heads {linear.num_key_heads}")
    kinds = text.get("layer_types")
    if kinds is None:
        interval = _int(text, "full_attention_interval", source, layers, default=DEFAULT_FULL_ATTENTION_INTERVAL)
        kinds = [LINEAR_ATTENTION if (i + 1) % interval else FULL_ATTENTION for i in range(layers)]
    if (not isinstance(kinds, list) or len(kinds) != layers
            or any(k not in (FULL_ATTENTION, LINEAR_ATTENTION) for k in kinds)):
        raise ShardsimError(f"{source}: field 'layer_types' must list {layers} entries, each "
                            f"\"{FULL_ATTENTION}\" or \"{LINEAR_ATTENTION}\"")
    state = text.get("mamba_ssm_dtype")
    mtp_default = QWEN3_NEXT_MTP_LAYERS if arch == "Qwen3NextForCausalLM" else 0
    return dict(linear=linear, layer_types=tuple(kinds), **_rotary(text, source),
                attn_output_gate=_bool(text, "attn_output_gate", source, True),
                mtp_layers=_int(text, "mtp_num_hidden_layers", source, 16, default=mtp_default, low=0),
                state_dtype=None if state is None else _dtype(state, source))


HYBRID_PARTIAL_ROTARY_FACTOR = 0.25
"""transformers v5.25.0 ``configuration_qwen3_next.py`` / ``configuration_qwen3_5.py`` / ``configuration_qwen3_5_moe.py``:
``kwargs.setdefault("partial_rotary_factor", 0.25)`` when a hybrid's config does not give it."""


def _rotary(text: dict, source: str) -> dict:
    """The rotary dims a hybrid's attention uses: ``partial_rotary_factor`` (under ``rope_parameters``, else at the
    top, else transformers' default) and the multimodal rope's ``mrope_section`` (Qwen3.5 / 3.6)."""
    rope = text.get("rope_parameters") or text.get("rope_scaling") or {}
    if not isinstance(rope, dict):
        raise ShardsimError(f"{source}: field 'rope_parameters' must be an object")
    factor = rope.get("partial_rotary_factor", text.get("partial_rotary_factor", HYBRID_PARTIAL_ROTARY_FACTOR))
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not 0 < factor <= 1:
        raise ShardsimError(f"{source}: field 'partial_rotary_factor' must be a number in (0, 1], got {_shown(factor)}")
    section = rope.get("mrope_section") or []
    if not isinstance(section, list) or not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i <= 1024
                                                for i in section):
        raise ShardsimError(f"{source}: field 'mrope_section' must be a list of whole numbers")
    return dict(partial_rotary_factor=float(factor), mrope_section=tuple(section))


def _vision(vision: object, source: str) -> VisionSpec:
    if not isinstance(vision, dict):
        raise ShardsimError(f"{source}: expected an object")
    deepstack = vision.get("deepstack_visual_indexes") or []
    if not isinstance(deepstack, list) or not all(isinstance(i, int) and not isinstance(i, bool) for i in deepstack):
        raise ShardsimError(f"{source}: field 'deepstack_visual_indexes' must be a list of layer indices")
    return VisionSpec(
        depth=_int(vision, "depth", source, MAX_LAYERS), hidden_size=_int(vision, "hidden_size", source, MAX_HIDDEN),
        intermediate_size=_int(vision, "intermediate_size", source, MAX_INTERMEDIATE),
        num_heads=_int(vision, "num_heads", source, MAX_HEADS),
        out_hidden_size=_int(vision, "out_hidden_size", source, MAX_HIDDEN),
        in_channels=_int(vision, "in_channels", source, 16, default=3),
        patch_size=_int(vision, "patch_size", source, 1024, default=16),
        temporal_patch_size=_int(vision, "temporal_patch_size", source, 64, default=2),
        spatial_merge_size=_int(vision, "spatial_merge_size", source, 64, default=2),
        num_position_embeddings=_int(vision, "num_position_embeddings", source, 1 << 20, default=2304),
        deepstack_mergers=len(deepstack))
