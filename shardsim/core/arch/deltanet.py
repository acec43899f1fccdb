"""The weights of one Gated-DeltaNet (linear attention) layer and how tensor parallelism splits them.

Shapes (transformers v5.25.0 ``qwen3_next/modeling_qwen3_next.py`` ``Qwen3NextGatedDeltaNet`` L643-686; Qwen3.5 / 3.6
``qwen3_5/modeling_qwen3_5.py`` ``Qwen3_5GatedDeltaNet`` L555-598), with KEY = key heads × key dim, VAL = value heads ×
value dim, CONV = 2·KEY + VAL, K the conv kernel:

- fused (Qwen3-Next): ``in_proj_qkvz`` [2·KEY + 2·VAL, H], ``in_proj_ba`` [2·nv, H];
- split (Qwen3.5 / 3.6): ``in_proj_qkv`` [2·KEY + VAL, H], ``in_proj_z`` [VAL, H], ``in_proj_b`` and ``in_proj_a`` [nv, H];
- ``conv1d.weight`` [CONV, 1, K] (depthwise, no bias), ``dt_bias`` and ``A_log`` [nv], ``norm.weight`` [value dim],
  ``out_proj`` [H, VAL].

Tensor parallelism (vLLM ``vllm/model_executor/models/qwen3_next.py``@v0.10.2 ``Qwen3NextGatedDeltaNet``: the input
projections are column parallel by key heads, the conv weight, ``dt_bias`` and ``A_log`` are split with them,
``out_proj`` is row parallel, the gated norm over one head's value dim is replicated; ``divide`` asserts tp divides
the key and value heads).
"""

from __future__ import annotations

from shardsim.core.model import ModelSpec
from shardsim.core.tensor_spec import COLUMN, REPLICATED, ROW, Part, TensorSpec


def deltanet_tensors(spec: ModelSpec, layer: int, prefix: str) -> list[TensorSpec]:
    """The ``linear_attn`` weights of layer ``layer`` (``prefix``: the layer's name prefix)."""
    la, h = spec.linear, spec.hidden_size
    p = prefix + "linear_attn."
    key, val, nv = la.key_dim, la.value_dim, la.num_value_heads
    fp32 = spec.fp32_tensors

    def column(name: str, shape: tuple[int, ...], linear: bool = True) -> TensorSpec:
        return TensorSpec(p + name, shape, COLUMN, Part.LAYER, layer, 0, linear=linear,
                          checkpoint_dtype=_stored(name, fp32))

    if la.projection == "fused":
        projections = [column("in_proj_qkvz.weight", (2 * key + 2 * val, h)), column("in_proj_ba.weight", (2 * nv, h))]
    else:
        projections = [column("in_proj_qkv.weight", (2 * key + val, h)), column("in_proj_z.weight", (val, h)),
                       column("in_proj_b.weight", (nv, h)), column("in_proj_a.weight", (nv, h))]
    return projections + [
        column("conv1d.weight", (la.conv_dim, 1, la.conv_kernel), linear=False),
        column("dt_bias", (nv,), linear=False),
        column("A_log", (nv,), linear=False),
        TensorSpec(p + "norm.weight", (la.value_head_dim,), REPLICATED, Part.LAYER, layer,
                   checkpoint_dtype=_stored("norm.weight", fp32)),
        TensorSpec(p + "out_proj.weight", (h, val), ROW, Part.LAYER, layer, 1, linear=True),
    ]


def _stored(name: str, fp32: tuple[str, ...]) -> str | None:
    """fp32 when the checkpoint keeps this tensor in fp32 (``ModelSpec.fp32_tensors``), else the model's dtype."""
    return "fp32" if any(("linear_attn." + name).endswith(suffix) for suffix in fp32) else None
