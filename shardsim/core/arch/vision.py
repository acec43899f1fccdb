"""The vision tower's weights (Qwen3-VL, Qwen3.5 / 3.6) and how vLLM splits them by default.

Shapes (transformers v5.25.0 ``qwen3_vl/modeling_qwen3_vl.py`` ``Qwen3VLVisionModel`` L620-665, ``PatchMerger``
L170-184; ``qwen3_5/modeling_qwen3_5.py`` ``Qwen3_5VisionModel`` L1198-1231), d = vision hidden, Iv = vision
intermediate, m = spatial_merge_size²:
``patch_embed.proj`` Conv3d [d, in_channels, temporal_patch, patch, patch] + bias [d]; ``pos_embed`` [positions, d];
per block: ``norm1`` / ``norm2`` LayerNorm weight and bias [d], ``attn.qkv`` [3d, d] + [3d], ``attn.proj`` [d, d] + [d],
``mlp.linear_fc1`` [Iv, d] + [Iv], ``mlp.linear_fc2`` [d, Iv] + [d]; ``merger``: ``norm`` [d] (+ bias), ``linear_fc1``
[m·d, m·d] + [m·d], ``linear_fc2`` [H, m·d] + [H]; each deepstack merger the same with its norm over m·d.

Tensor parallelism: vLLM's default ``--mm-encoder-tp-mode weights`` shards the encoder like the language model
(``vllm/model_executor/models/qwen3_vl.py``@v0.11.0 ``Qwen3_VisionBlock``: qkv ``QKVParallelLinear``, proj
``RowParallelLinear``, fc1 ``ColumnParallelLinear``, fc2 ``RowParallelLinear``; a row-parallel bias is whole on every
rank); LayerNorms, the patch embedding and the position table are replicated.
"""

from __future__ import annotations

from shardsim.core.model import ModelSpec
from shardsim.core.tensor_spec import COLUMN, REPLICATED, ROW, Part, TensorSpec

VISION_PREFIX = "model.visual."


def vision_tensors(spec: ModelSpec) -> list[TensorSpec]:
    """Every weight of the vision tower, its merger and deepstack mergers (empty without a vision tower)."""
    v = spec.vision
    if v is None:
        return []
    d, iv, m = v.hidden_size, v.intermediate_size, v.spatial_merge_size ** 2
    p = VISION_PREFIX

    def whole(name: str, shape: tuple[int, ...]) -> TensorSpec:
        return TensorSpec(p + name, shape, REPLICATED, Part.VISION)

    def column(name: str, shape: tuple[int, ...]) -> TensorSpec:
        return TensorSpec(p + name, shape, COLUMN, Part.VISION, None, 0, linear=name.endswith(".weight"))

    def row(name: str, shape: tuple[int, ...]) -> TensorSpec:
        return TensorSpec(p + name, shape, ROW, Part.VISION, None, 1, linear=True)

    out = [whole("patch_embed.proj.weight", (d, v.in_channels, v.temporal_patch_size, v.patch_size, v.patch_size)),
           whole("patch_embed.proj.bias", (d,)), whole("pos_embed.weight", (v.num_position_embeddings, d))]
    for j in range(v.depth):
        b = f"blocks.{j}."
        out += [whole(b + "norm1.weight", (d,)), whole(b + "norm1.bias", (d,)),
                whole(b + "norm2.weight", (d,)), whole(b + "norm2.bias", (d,)),
                column(b + "attn.qkv.weight", (3 * d, d)), column(b + "attn.qkv.bias", (3 * d,)),
                row(b + "attn.proj.weight", (d, d)), whole(b + "attn.proj.bias", (d,)),
                column(b + "mlp.linear_fc1.weight", (iv, d)), column(b + "mlp.linear_fc1.bias", (iv,)),
                row(b + "mlp.linear_fc2.weight", (d, iv)), whole(b + "mlp.linear_fc2.bias", (d,))]
    out += _merger(p, "merger.", d, m, spec.hidden_size, post_shuffle=False)
    for k in range(v.deepstack_mergers):
        out += _merger(p, f"deepstack_merger_list.{k}.", d, m, spec.hidden_size, post_shuffle=True)
    return out


def _merger(p: str, name: str, d: int, m: int, out_hidden: int, post_shuffle: bool) -> list[TensorSpec]:
    """A patch merger: LayerNorm over d (over m·d after the shuffle for deepstack), fc1 [m·d, m·d], fc2 [H, m·d]."""
    norm = m * d if post_shuffle else d
    md = m * d
    return [TensorSpec(p + name + "norm.weight", (norm,), REPLICATED, Part.VISION),
            TensorSpec(p + name + "norm.bias", (norm,), REPLICATED, Part.VISION),
            TensorSpec(p + name + "linear_fc1.weight", (md, md), COLUMN, Part.VISION, None, 0, linear=True),
            TensorSpec(p + name + "linear_fc1.bias", (md,), COLUMN, Part.VISION, None, 0),
            TensorSpec(p + name + "linear_fc2.weight", (out_hidden, md), ROW, Part.VISION, None, 1, linear=True),
            TensorSpec(p + name + "linear_fc2.bias", (out_hidden,), REPLICATED, Part.VISION)]
