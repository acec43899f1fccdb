"""What each rank holds under transformers' own tensor-parallel plan of a hybrid (Qwen3-Next, Qwen3.5 / 3.6), where
it differs from shardsim's (vLLM's) shard rules.

transformers v5.25.0 ``qwen3_next/configuration_qwen3_next.py`` ``base_model_tp_plan`` (L60-76) and
``qwen3_5/configuration_qwen3_5.py`` (L58-73) list the attention, the dense / shared-expert MLP and the
Gated-DeltaNet projections (``in_proj_*`` and ``out_proj`` as ``colwise_gather_output``: dim 0 split, the output
gathered); every module it does not list stays whole on every rank:

- the Gated-DeltaNet ``conv1d.weight``, ``dt_bias`` and ``A_log`` (vLLM splits them with the key heads);
- the routed experts of Qwen3-Next and Qwen3.5 / 3.6 MoE (``mlp.experts.gate_up_proj`` / ``down_proj`` are in
  ``base_model_ep_plan`` only; ``qwen3_5_moe/configuration_qwen3_5_moe.py`` L58-83): replicated unless ``--ep``
  shards them by expert, so the fused [E, 2·Im, H] / [E, H, Im] tensors weigh what the per-expert inventory does;
- the vision tower (its blocks are not ``layers.*``).

The ``out_proj`` split on dim 0 (its output rows) holds as many bytes as vLLM's row split, so it needs no rule here.
Measured with ``shardsim validate --backend transformers --tp 2``: weights equal to the byte (tests/validation/
test_validate_hybrid.py).
"""

from __future__ import annotations

from shardsim.core.layout import Layout, rank_coords, shard_of
from shardsim.core.model import ModelSpec
from shardsim.core.tensor_spec import EXPERT, Part, TensorSpec
from shardsim.core.tensors import local_slices, numel_of, stage_tensors

REPLICATED_SUFFIXES = ("linear_attn.conv1d.weight", "linear_attn.dt_bias", "linear_attn.A_log")


def whole_on_every_rank(t: TensorSpec, ep: int) -> bool:
    """Whether transformers' plan leaves ``t`` whole on every rank (see the module docstring)."""
    return t.name.endswith(REPLICATED_SUFFIXES) or t.part == Part.VISION or (t.rule == EXPERT and ep == 1)


def hf_plan_weight_bytes(spec: ModelSpec, layout: Layout, rank: int, elem_bytes: int = 2) -> int:
    """Parameter bytes rank ``rank`` holds when transformers loads ``spec`` with its TP plan (one stage: the
    transformers backend has no pipeline parallelism)."""
    shard = shard_of(rank_coords(rank, layout), layout)
    total = 0
    for t in stage_tensors(spec, 0, spec.num_layers - 1, True, True):
        if whole_on_every_rank(t, layout.ep):
            total += t.numel * elem_bytes  # every expert of an expert tensor
            continue
        held = local_slices(t, shard, spec.head_dim)
        total += numel_of(held.shape) * held.copies * elem_bytes
    return total
