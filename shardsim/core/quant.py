"""How a weight is stored in memory under each weight format: the tensors one Linear becomes.

Formats:
- ``bf16`` / ``fp16`` / ``fp32``: the weight itself.
- ``fp8`` block-scaled e4m3 (Qwen's official FP8 checkpoints, DeepSeek-V3 style): weight 1 B/elem plus
  ``weight_scale_inv`` of shape [ceil(out/128), ceil(in/128)]. vLLM keeps these scales in float32
  (``vllm/model_executor/layers/quantization/fp8.py``, ``Fp8LinearMethod.create_weights``: block scale created
  with ``dtype=torch.float32``), so they are sized at 4 B.
- ``gptq`` int4/int8 (Frantar et al. 2022, arXiv:2210.17323; AutoGPTQ / vLLM ``gptq.py`` layout): ``qweight``
  int32 [in·bits/32, out], ``qzeros`` int32 [groups, out·bits/32], ``scales`` fp16 [groups, out], and ``g_idx``
  int32 [in] when ``desc_act`` reorders the input channels.
- ``awq`` int4 (Lin et al. 2023, arXiv:2306.00978; vLLM ``awq.py`` layout): ``qweight`` int32 [in, out·bits/32],
  ``qzeros`` int32 [groups, out·bits/32], ``scales`` fp16 [groups, out].
groups = ceil(in / group_size), or 1 with group_size -1 (one group per output channel).
"""

from __future__ import annotations

from dataclasses import dataclass

from shardsim.constants import FP8_SCALE_BYTES, GROUP_SCALE_BYTES, NVFP4_GROUP, PACKED_INT_BYTES
from shardsim.core.model import ModelSpec, QuantConfig
from shardsim.units import DTYPE_BYTES, ceil_div

QUANT_CHOICES = ("none", "fp8", "int8", "int4", "awq", "nvfp4")


def quant_from_choice(choice: str, group_size: int = 128) -> QuantConfig:
    """``--quant`` on the command line: none, fp8 (128×128 blocks), int8 / int4 (GPTQ layout, group scales+zeros)."""
    if choice == "none":
        return QuantConfig()
    if choice == "fp8":
        return QuantConfig(method="fp8", bits=8)
    if choice == "nvfp4":
        return QuantConfig(method="nvfp4", bits=4, group_size=16)
    if choice == "awq":
        return QuantConfig(method="awq", bits=4, group_size=group_size)
    bits = 8 if choice == "int8" else 4
    return QuantConfig(method="gptq", bits=bits, group_size=group_size)


@dataclass(frozen=True, slots=True)
class StoredPart:
    """One tensor a Linear weight becomes in memory: its name suffix, shape and bytes per element."""

    suffix: str
    shape: tuple[int, ...]
    elem_bytes: int


def stored_linear(out_features: int, in_features: int, quant: QuantConfig, dtype: str) -> list[StoredPart]:
    """The tensors a Linear weight of [out, in] becomes.

    ``out``/``in`` are the dims this rank holds (already sharded).
    """
    if quant.method == "none":
        return [StoredPart("weight", (out_features, in_features), DTYPE_BYTES[dtype])]
    if quant.method == "fp8":
        bn, bk = quant.block_size
        return [
            StoredPart("weight", (out_features, in_features), 1),
            StoredPart("weight_scale_inv", (ceil_div(out_features, bn), ceil_div(in_features, bk)), FP8_SCALE_BYTES),
        ]
    if quant.method == "nvfp4":
        # NVIDIA ModelOpt NVFP4 (vLLM modelopt.py, ModelOptNvFp4LinearMethod): e2m1 values packed two per byte,
        # an fp8 e4m3 scale per 16 input elements, and fp32 global weight and input scales.
        return [
            StoredPart("weight", (out_features, ceil_div(in_features, 2)), 1),
            StoredPart("weight_scale", (out_features, ceil_div(in_features, NVFP4_GROUP)), 1),
            StoredPart("weight_scale_2", (1,), 4),
            StoredPart("input_scale", (1,), 4),
        ]
    pack = 32 // quant.bits
    groups = 1 if quant.group_size <= 0 else ceil_div(in_features, quant.group_size)
    if quant.method == "awq":
        return [
            StoredPart("qweight", (in_features, ceil_div(out_features, pack)), PACKED_INT_BYTES),
            StoredPart("qzeros", (groups, ceil_div(out_features, pack)), PACKED_INT_BYTES),
            StoredPart("scales", (groups, out_features), GROUP_SCALE_BYTES),
        ]
    stored = [
        StoredPart("qweight", (ceil_div(in_features, pack), out_features), PACKED_INT_BYTES),
        StoredPart("qzeros", (groups, ceil_div(out_features, pack)), PACKED_INT_BYTES),
        StoredPart("scales", (groups, out_features), GROUP_SCALE_BYTES),
    ]
    if quant.method == "gptq_marlin":  # vLLM's Marlin repack: same qweight/scales, symmetric qzeros dropped
        stored = [stored[0], stored[2]]
    if quant.desc_act:
        stored.append(StoredPart("g_idx", (in_features,), 4))
    return stored


def is_skipped(module: str, quant: QuantConfig) -> bool:
    """A module kept in high precision: listed in ``modules_to_not_convert`` (exact path or a path suffix)."""
    return any(module == skip or module.endswith("." + skip) for skip in quant.skip_modules)


def fp8_export_spec(spec: ModelSpec, quant: QuantConfig, loads_lm_head: bool) -> ModelSpec:
    """The model as an engine holds Qwen's FP8 export of a bf16 preset (``--quant fp8``, or a ``-FP8`` checkpoint
    of a tied model), one definition for the planner, the engines and ``calibrate``.

    Qwen's FP8 exports keep lm_head out of quantization (``modules_to_not_convert`` lists ``lm_head``, e.g.
    presets/Qwen3-30B-A3B-FP8.json) and store it as its own bf16 ``lm_head.weight``. Whether a tied model then
    holds a second vocabulary table depends on the loader:
    - transformers (``loads_lm_head``: ``--engine hf`` and ``accelerate``) keeps it beside ``embed_tokens``: the
      published Qwen3-0.6B-FP8 peaks (QwenLM/Qwen3 speed_benchmark.md; rows fit-09, fit-12, fit-15, fit-18) exceed
      the tied size by V·H·2 B (297 MiB) at every input length and match the untied size;
    - vLLM and SGLang tie lm_head to embed_tokens whenever the config says so
      (vllm/model_executor/models/qwen3.py@v0.11.0 ``Qwen3ForCausalLM.__init__``, its ``load_weights`` skipping
      ``lm_head.``; sglang/srt/models/qwen3.py@v0.5.10, without pipeline stages), so the export stays tied there, as
      in shardsim's own plan.
    lm_head and the MoE router gates are not ``linear`` tensors in ``core.tensors`` (never quantized), so the
    export's ``modules_to_not_convert`` needs no other change."""
    if quant.method == "fp8" and spec.tie_word_embeddings and loads_lm_head:
        return spec.model_copy(update={"tie_word_embeddings": False})
    return spec
