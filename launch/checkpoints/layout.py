"""How a checkpoint stores each tensor of shardsim's inventory: name, shape and dtype on disk.

shardsim's inventory (``shardsim.core.tensors.inventory``) lists routed experts one projection at a time, expert by
expert. Most checkpoints store them so (Qwen3-MoE, Qwen3-Next: ``mlp.experts.{e}.gate_proj.weight``, fused by
transformers at load). Qwen3.5 / 3.6 MoE (``Qwen3_5MoeForConditionalGeneration``) store the decoder layers' experts
FUSED, as transformers' ``Qwen3_5MoeExperts`` holds them (3-D, no ``.weight`` suffix; gate rows first, then up):

  ``...mlp.experts.gate_up_proj`` [E, 2·Im, H] and ``...mlp.experts.down_proj`` [E, H, Im]

(tensor tables of downloads of Qwen/Qwen3.5-35B-A3B and Qwen/Qwen3.6-35B-A3B, github.com/gogongxt/python
scripts/models/qwen3.5_35b_a3b.md and qwen3.6_35b_a3b.md @ec9962697819add8f24ce1b180cf98ca6a53c40f; transformers
v5.25.0 ``models/qwen3_5_moe/modeling_qwen3_5_moe.py`` L943-944). The MTP head's experts are per expert in
Qwen3.5-35B-A3B and fused in Qwen3.6-35B-A3B (same tables); transformers ignores ``mtp.*`` either way
(``_keys_to_ignore_on_load_unexpected``, same file L1104). Byte totals are the same in both layouts.
"""

from __future__ import annotations

from shardsim.core.model import ModelSpec
from shardsim.core.tensor_spec import Part, TensorSpec
from shardsim.core.tensors import inventory

FUSED_EXPERTS = ("Qwen3_5MoeForConditionalGeneration",)

Entry = tuple[str, tuple[int, ...], str]


def fused_mtp_experts(spec: ModelSpec) -> bool:
    """Whether the published checkpoint of ``spec`` fuses its MTP head's experts (a fact of its tensor table,
    ``ModelSpec.mtp_experts_fused``, from ``presets/checkpoint_facts.json``: Qwen3.6-35B-A3B yes, Qwen3.5 no)."""
    return spec.architecture in FUSED_EXPERTS and spec.mtp_experts_fused


def _fused(t: TensorSpec, dtype: str) -> list[Entry]:
    """The fused tensor an expert projection belongs to: gate_proj opens ``gate_up_proj`` [E, 2·Im, H], up_proj
    lies inside it (no entry of its own), down_proj is ``down_proj`` [E, H, Im]."""
    prefix, rest = t.name.split("{e}.", 1)
    projection = rest.split(".", 1)[0]
    if projection == "gate_proj":
        return [(prefix + "gate_up_proj", (t.experts, 2 * t.shape[0], t.shape[1]), dtype)]
    if projection == "down_proj":
        return [(prefix + "down_proj", (t.experts, *t.shape), dtype)]
    return []


def stored_entries(spec: ModelSpec, fused_mtp: bool | None = None) -> list[Entry]:
    """Every tensor of ``spec``'s checkpoint as stored: name, shape, dtype (the tensors the published checkpoint
    keeps in fp32, ``TensorSpec.checkpoint_dtype``, in fp32). ``fused_mtp`` None: as the model's release does."""
    fuse = spec.architecture in FUSED_EXPERTS
    fused_mtp = fused_mtp_experts(spec) if fused_mtp is None else fused_mtp
    out: list[Entry] = []
    for t in inventory(spec):
        dtype = t.checkpoint_dtype or "bf16"
        if t.experts and fuse and (t.part != Part.MTP or fused_mtp):
            out += _fused(t, dtype)
        else:
            out += [(name, shape, dtype) for name, shape in t.expand()]
    return out
