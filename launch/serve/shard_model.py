"""The torch backend: one rank's shard of a Qwen3 model, built by shardsim's shard rules, and its forward pass.

Weights are read with ``shardsim.core.tensors.local_slices`` — the very rules the planner sizes — through
``safe_open(...).get_slice``. The math follows transformers' ``modeling_qwen3.py`` / ``modeling_qwen3_moe.py``
(RMSNorm, q/k RMSNorm per head, rotary embedding with ``rope_theta``, GQA attention, SwiGLU MLP, top-k softmax
routing with ``norm_topk_prob``), with Megatron-style collectives: an all-reduce after o_proj and down_proj (row
parallel), an all-gather of vocab-parallel logits, point-to-point sends between pipeline stages. A tp=1, pp=1
instance streaming one layer at a time is the unsharded reference.

Tensors are written to be lean, as fused kernels are: in-place activation and products where the math allows,
the KV cache preallocated in whole pages. ``shardsim.core.memory.activations`` with ``kernels="eager"`` models exactly
these transients.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from shardsim.launch.session.worker import Groups

from shardsim.core.layout import Layout, RankCoords, shard_of, stage_ranges
from shardsim.core.model import ModelSpec
from shardsim.core.tensors import TensorSpec, kv_heads_per_rank, local_slices, stage_tensors, vocab_range
from shardsim.units import round_up


@dataclass
class RankModel:
    spec: ModelSpec
    layout: Layout
    coords: RankCoords
    rms_eps: float = 1e-6
    rope_theta: float = 1_000_000.0
    norm_topk_prob: bool = True
    weights: dict = field(default_factory=dict)
    kv: list = field(default_factory=list)

    @property
    def layers(self) -> tuple[int, int]:
        return stage_ranges(self.layout)[self.coords.pp_rank]

    @property
    def is_first(self) -> bool:
        return self.coords.pp_rank == 0

    @property
    def is_last(self) -> bool:
        return self.coords.pp_rank == self.layout.pp - 1

    def held_tensors(self) -> list[TensorSpec]:
        """The checkpoint tensors this rank's stage holds: ``tensors.stage_tensors``, as the planner sizes them."""
        first, last = self.layers
        return stage_tensors(self.spec, first, last, self.is_first, self.is_last)

    def load(self, reader) -> None:
        """Read this rank's slices. A tied lm_head on a later stage is read from its ``source``: a second copy."""
        shard = shard_of(self.coords, self.layout)
        for t in self.held_tensors():
            held = local_slices(t, shard, self.spec.head_dim)
            source = t.source or t.name
            if held.experts is not None:
                self.weights[t.name] = [reader.read(source.format(e=e), held.slices) for e in held.experts]
                self.weights[t.name + ":experts"] = list(held.experts)
            else:
                self.weights[t.name] = reader.read(source, held.slices)
        if self.is_last and "lm_head.weight" not in self.weights:  # tied, one stage: lm_head is the embedding
            self.weights["lm_head.weight"] = self.weights["model.embed_tokens.weight"]

    def weight_tensors(self) -> list[torch.Tensor]:
        out = []
        for key, value in self.weights.items():
            if key.endswith(":experts"):
                continue
            out += value if isinstance(value, list) else [value]
        return out

    def allocate_kv(self, batch: int, context: int, block_size: int, dtype=torch.bfloat16, device="cpu") -> None:
        """One K and one V tensor per layer: [batch, kv heads held, context rounded up to pages, head_dim]."""
        kvh = kv_heads_per_rank(self.spec.num_kv_heads, self.layout.tp)
        slots = round_up(context, block_size)
        first, last = self.layers
        self.kv = [
            (torch.zeros(batch, kvh, slots, self.spec.head_dim, dtype=dtype, device=device),
             torch.zeros(batch, kvh, slots, self.spec.head_dim, dtype=dtype, device=device))
            for _ in range(first, last + 1)
        ]


# ------------------------------------------------------------------------------------------ math


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """Qwen3RMSNorm: x · rsqrt(mean(x²) + eps) · weight, the mean in fp32."""
    variance = x.float().pow_(2).mean(-1, keepdim=True)
    out = x * torch.rsqrt(variance.add_(eps)).to(x.dtype)
    return out.mul_(weight)


def rotary(positions: torch.Tensor, head_dim: int, theta: float, dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """cos/sin of the rotary embedding (Su et al. 2021, arXiv:2104.09864), HF's rotate_half convention."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device) / head_dim))
    freqs = positions.float()[:, None] * inv_freq[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos().to(dtype), emb.sin().to(dtype)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x: [B, heads, T, hd]; (x · cos) + (rotate_half(x) · sin)."""
    half = x.shape[-1] // 2
    rotated = torch.cat((-x[..., half:], x[..., :half]), dim=-1)
    return rotated.mul_(sin).add_(x * cos)


def _all_reduce(t: torch.Tensor, group) -> torch.Tensor:
    if group is not None:
        import torch.distributed as dist

        dist.all_reduce(t, group=group)
    return t


def attention(m: RankModel, layer: int, slot: int, x: torch.Tensor, pos0: int, cos, sin, tp_group) -> torch.Tensor:
    """Self-attention of one layer on this rank's heads; writes K/V into the cache at positions pos0 … pos0+T-1."""
    w, p, hd = m.weights, f"model.layers.{layer}.self_attn.", m.spec.head_dim
    b, t, _ = x.shape
    q = (x @ w[p + "q_proj.weight"].T).view(b, t, -1, hd)
    k = (x @ w[p + "k_proj.weight"].T).view(b, t, -1, hd)
    v = (x @ w[p + "v_proj.weight"].T).view(b, t, -1, hd)
    q = apply_rotary(rms_norm(q, w[p + "q_norm.weight"], m.rms_eps).transpose(1, 2), cos, sin)
    k = apply_rotary(rms_norm(k, w[p + "k_norm.weight"], m.rms_eps).transpose(1, 2), cos, sin)
    k_cache, v_cache = m.kv[slot]
    k_cache[:, :, pos0:pos0 + t].copy_(k)
    v_cache[:, :, pos0:pos0 + t].copy_(v.transpose(1, 2))
    del k, v
    keys, values = k_cache[:, :, :pos0 + t], v_cache[:, :, :pos0 + t]
    out = F.scaled_dot_product_attention(q, keys, values, is_causal=(t > 1), enable_gqa=q.shape[1] != keys.shape[1])
    del q
    out = out.transpose(1, 2).reshape(b, t, -1) @ w[p + "o_proj.weight"].T
    return _all_reduce(out, tp_group)


def dense_mlp(m: RankModel, layer: int, x: torch.Tensor, tp_group) -> torch.Tensor:
    """SwiGLU: down(silu(gate(x)) · up(x)); gate/up column-parallel, down row-parallel + all-reduce."""
    w, p = m.weights, f"model.layers.{layer}.mlp."
    h = F.silu(x @ w[p + "gate_proj.weight"].T, inplace=True)
    h.mul_(x @ w[p + "up_proj.weight"].T)
    return _all_reduce(h @ w[p + "down_proj.weight"].T, tp_group)


def moe_mlp(m: RankModel, layer: int, x: torch.Tensor, moe_group) -> torch.Tensor:
    """Qwen3-MoE block on this rank's experts: softmax routing, top-k, optional renormalisation, then a sum of
    the local experts' (partial, if experts are TP-split) outputs all-reduced over the MoE group."""
    w, p = m.weights, f"model.layers.{layer}.mlp."
    b, t, hsz = x.shape
    flat = x.reshape(-1, hsz)
    probs = F.softmax((flat @ w[p + "gate.weight"].T).float(), dim=-1)
    top_w, top_i = torch.topk(probs, m.spec.num_experts_per_tok, dim=-1)
    del probs
    if m.norm_topk_prob:
        top_w /= top_w.sum(dim=-1, keepdim=True)
    top_w = top_w.to(x.dtype)
    out = torch.zeros_like(flat)
    gate = w[p + "experts.{e}.gate_proj.weight"]
    up = w[p + "experts.{e}.up_proj.weight"]
    down = w[p + "experts.{e}.down_proj.weight"]
    for j, expert in enumerate(w[p + "experts.{e}.gate_proj.weight:experts"]):
        token, slot = torch.nonzero(top_i == expert, as_tuple=True)
        if token.numel() == 0:
            continue
        xe = flat[token]
        h = F.silu(xe @ gate[j].T, inplace=True)
        h.mul_(xe @ up[j].T)
        del xe
        y = (h @ down[j].T).mul_(top_w[token, slot, None])
        del h
        out.index_add_(0, token, y)
        del y, token, slot
    return _all_reduce(out, moe_group).view(b, t, hsz)


def layer_forward(m: RankModel, layer: int, slot: int, h: torch.Tensor, pos0: int, cos, sin, groups: Groups) -> torch.Tensor:
    """One decoder layer: h + attn(norm(h)), then + mlp(norm(h)); KV cache slot ``slot``."""
    p = f"model.layers.{layer}."
    x = rms_norm(h, m.weights[p + "input_layernorm.weight"], m.rms_eps)
    h = h + attention(m, layer, slot, x, pos0, cos, sin, groups.tp)
    del x
    x = rms_norm(h, m.weights[p + "post_attention_layernorm.weight"], m.rms_eps)
    mlp = moe_mlp(m, layer, x, groups.moe) if m.spec.is_moe_layer(layer) else dense_mlp(m, layer, x, groups.tp)
    del x
    return h.add_(mlp)


def stage_forward(m: RankModel, owned: list, pos0: int, groups: Groups) -> torch.Tensor:
    """The decoder layers of this stage on hidden states h [B, T, H] at positions pos0 … pos0+T-1.

    ``owned`` is a one-element list holding h: the function takes the caller's only reference, so the stage
    input is freed as soon as the first layer has produced its successor (as in an engine's forward)."""
    h = owned.pop()
    t = h.shape[1]
    cos, sin = rotary(torch.arange(pos0, pos0 + t, device=h.device), m.spec.head_dim, m.rope_theta, h.dtype)
    first, last = m.layers
    for slot, layer in enumerate(range(first, last + 1)):
        h = layer_forward(m, layer, slot, h, pos0, cos, sin, groups)
    return h


def embed(m: RankModel, tokens: torch.Tensor, tp_group) -> torch.Tensor:
    """Vocab-parallel embedding: rows outside this rank's vocab range give zeros; an all-reduce sums the ranks."""
    table = m.weights["model.embed_tokens.weight"]
    if m.layout.tp == 1:
        return table[tokens]
    rows = vocab_range(m.spec.vocab_size, m.layout.tp, m.coords.tp_rank)
    start, stop = rows.start, rows.stop
    local = tokens - start
    outside = (local < 0) | (local >= stop - start)
    h = table[local.clamp_(0, stop - start - 1)]
    h[outside] = 0
    return _all_reduce(h, tp_group)


def logits(m: RankModel, h_last: torch.Tensor, tp_group) -> torch.Tensor:
    """fp32 logits of the last position of each sequence: final norm, vocab-parallel lm_head, all-gather."""
    x = rms_norm(h_last, m.weights["model.norm.weight"], m.rms_eps)
    local = (x @ m.weights["lm_head.weight"].T).float()
    if tp_group is None:
        return local
    import torch.distributed as dist

    parts = [torch.empty_like(local) for _ in range(m.layout.tp)]
    dist.all_gather(parts, local, group=tp_group)
    return torch.cat(parts, dim=-1)
