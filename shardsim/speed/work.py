"""FLOPs and bytes moved by one forward step on one rank, from the tensor inventory and its shard rules.

A step (one engine iteration) runs ``decode`` sequences one token each and ``prefill`` prompt tokens. On the rank
at tp rank 0, ep rank 0 of a pipeline stage (a most loaded one: ``tensors.split_range`` gives the remainder to the
first ranks), per step:

- **matmuls**: every weight matrix the stage holds is multiplied by the step's tokens, 2·out·in FLOPs per token
  with the local [out, in] shape from ``tensors.local_slices`` (Kaplan et al. 2020, arXiv:2001.08361, §2.1: a
  forward pass costs 2 FLOPs per parameter per token). Weights are read once per step in their stored format
  (``memory.weights.stored_tensors``: fp8 block scales, GPTQ / AWQ packing included). A MoE layer's routed experts
  work on token–expert pairs: T·k·E_local/E pairs on the rank (uniform routing), and only the experts some token
  picks are read: E_local·(1 − (1 − k/E)^T) expected (each token picks k of E experts; an expert escapes one token
  with probability 1 − k/E). lm_head runs on the sampled sequences only (vLLM ``LogitsProcessor`` takes the last
  position of each: ``logits_indices`` in ``v1/worker/gpu_model_runner.py``), 2·H·V_local FLOPs each.
- **attention**: per full-attention layer, a query attending n keys costs 4·heads_local·head_dim·n FLOPs (QKᵀ and
  PV, 2 FLOPs per multiply-add; Dao et al. 2022, FlashAttention, arXiv:2205.14135, §3); causal prefill of a
  prompt of P tokens attends P(P+1)/2 keys in all. KV read: each key once per sequence and step, K + V of the
  rank's heads (``memory.kv_cache.kv_bytes_per_token_per_layer``); KV written: every token of the step.
- **linear attention** (Gated DeltaNet): per token and value head the recurrence decays the dk×dv state, reads
  it against k, adds k⊗δ and reads it against q: 7·dk·dv FLOPs (transformers ``torch_recurrent_gated_delta_rule``,
  ``qwen3_next/modeling_qwen3_next.py``@v5.25.0 L614-624), plus the depthwise convolution, 2·K·conv_dim_local;
  each sequence's state (``memory.state``) is read and written once per step.
  Each matmul's input and output are read / written once (bf16), with the matmul's own bytes.
- **other**: the embedding rows written, the fp32 logits written.

Exact where the count is knowable (a decode step of given contexts, a prefill of given length); averages where
routing decides (expert pairs and coverage). Elementwise work (norms, rotary, activation) is not counted: it is
memory traffic on activations, a fraction of a percent of a step's bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from shardsim.constants import ACTIVATION_BYTES, LOGITS_BYTES
from shardsim.core.layout import Layout, rank_coords, rank_of, shard_of, stage_ranges
from shardsim.core.memory.kv_cache import kv_bytes_per_token_per_layer
from shardsim.core.memory.state import state_bytes_per_sequence_per_layer
from shardsim.core.memory.weights import stored_tensors, weight_model
from shardsim.core.model import FULL_ATTENTION, LINEAR_ATTENTION, ModelSpec, QuantConfig
from shardsim.core.tensors import (
    EXPERT,
    Part,
    Shard,
    TensorSpec,
    layer_tensors,
    lm_head_tensor,
    local_slices,
    stage_edge_tensors,
    vocab_range,
)

RECURRENT_FLOPS_PER_STATE_ELEMENT = 7
"""Gated delta rule, per token, value head and element of the dk×dv state: decay (1 multiply), kᵀS (2), S + k⊗δ
(2), qᵀS (2) (transformers ``torch_recurrent_gated_delta_rule``@v5.25.0 L614-624)."""


@dataclass(frozen=True, slots=True)
class StageWork:
    """One rank of a pipeline stage: what a step costs per token, per key, per sequence and per expert pair."""

    pp_rank: int
    layers: int
    attention_layers: int
    linear_layers: int
    moe_layers: int
    dense_weight_bytes: int  # every weight read once a step, routed experts and the embedding table aside
    expert_bytes: int  # one local routed expert of one MoE layer as stored (gate, up, down)
    local_experts: int  # routed experts the rank holds per MoE layer
    num_experts: int
    top_k: int
    matmul_flops_per_token: int  # 2·out·in over the stage's non-expert weight matrices
    expert_flops_per_pair: int  # 2·out·in over one expert's local gate, up and down, per MoE layer
    act_bytes_per_token: int  # inputs and outputs of the non-expert matmuls (bf16)
    expert_act_bytes_per_pair: int
    attn_flops_per_key: int  # 4·heads_local·head_dim over the stage's full-attention layers
    kv_bytes_per_token: int  # K + V over the stage's full-attention layers, the rank's heads
    recurrent_flops_per_token: int  # Gated DeltaNet recurrence and convolution over the stage's linear layers
    state_bytes_per_sequence: int  # conv + delta-rule state over the stage's linear layers
    lm_head_flops_per_sequence: int  # 2·H·V_local on the last stage, else 0
    logits_bytes_per_sequence: int  # fp32 logits of the rank's vocabulary slice on the last stage
    embed_bytes_per_token: int  # the embedding rows written on the first stage
    hidden_size: int

    @property
    def is_moe(self) -> bool:
        return self.moe_layers > 0 and self.local_experts > 0


@dataclass(frozen=True, slots=True)
class StepShape:
    """What one step computes: ``decode`` sequences of one token attending ``decode_keys`` keys each (on average),
    and ``prefill`` prompt tokens attending ``prefill_keys`` keys each (on average), of which ``prefill_done``
    prompts finish this step (they are sampled), and ``prefill_kv_read`` earlier prompt tokens read by chunks."""

    decode: float = 0.0
    decode_keys: float = 0.0
    prefill: float = 0.0
    prefill_keys: float = 0.0
    prefill_done: float = 0.0
    prefill_kv_read: float = 0.0

    @property
    def tokens(self) -> float:
        return self.decode + self.prefill

    @property
    def sequences(self) -> float:
        """Sequences that read their state and are sampled this step."""
        return self.decode + self.prefill_done


@dataclass(frozen=True, slots=True)
class StepWork:
    """FLOPs and bytes of one step on one rank, by op group (the roofline is taken per group)."""

    matmul_flops: float
    matmul_bytes: float
    attention_flops: float
    attention_bytes: float
    other_bytes: float

    @property
    def flops(self) -> float:
        return self.matmul_flops + self.attention_flops

    @property
    def bytes(self) -> float:
        return self.matmul_bytes + self.attention_bytes + self.other_bytes


def _is_matmul(t: TensorSpec) -> bool:
    """A weight matrix multiplied by the activations (x @ Wᵀ): 2-D, named ``*.weight`` (convolution kernels are 3-D,
    norms and biases 1-D)."""
    return len(t.shape) == 2 and t.name.endswith(".weight")


@dataclass
class _Tally:
    dense_bytes: int = 0
    expert_bytes: int = 0
    local_experts: int = 0
    flops: int = 0
    expert_flops: int = 0
    act: int = 0
    expert_act: int = 0

    def add(self, t: TensorSpec, shard: Shard, spec: ModelSpec, dtype: str, quant: QuantConfig, times: int) -> None:
        held = local_slices(t, shard, spec.head_dim)
        stored = stored_tensors(t, shard, spec, dtype, quant)
        matmul = _is_matmul(t)
        out_in = held.shape[0] * held.shape[1] if matmul else 0
        act = (held.shape[0] + held.shape[1]) * ACTIVATION_BYTES if matmul else 0
        if t.rule == EXPERT:
            self.local_experts = held.copies
            self.expert_bytes += times * sum(st.bytes() // st.copies for st in stored)
            self.expert_flops += times * 2 * out_in
            self.expert_act += times * act
            return
        self.dense_bytes += times * sum(st.bytes() for st in stored)
        self.flops += times * 2 * out_in
        self.act += times * act

    def merge(self, other: "_Tally", times: int) -> None:
        """Add ``times`` layers tallied in ``other`` (its experts, if any, are this stage's local experts)."""
        self.local_experts = other.local_experts or self.local_experts
        for name in ("dense_bytes", "expert_bytes", "flops", "expert_flops", "act", "expert_act"):
            setattr(self, name, getattr(self, name) + times * getattr(other, name))


def _layer_class_tally(spec: ModelSpec, wm, cls: int, shard: Shard, dtype: str, quant: QuantConfig) -> _Tally:
    """One layer of class ``cls`` (``memory.weights.WeightModel``) on ``shard``, kept on the weight model."""
    key = ("speed.work", cls, shard)
    tally = wm.cache.get(key)
    if tally is None:
        tally = wm.cache[key] = _Tally()
        for t in layer_tensors(spec, wm.class_layer[cls]):
            tally.add(t, shard, spec, dtype, quant, 1)
    return tally


def stage_place(layout: Layout, pp_rank: int) -> tuple:
    """All ``stage_work`` takes from the layout: the stage's layers, whether it is the first or the last, the shard
    of its tp rank 0 (ep rank 0) and the tp degree. Stages equal in these cost the same whatever the layout."""
    return stage_places(layout)[pp_rank]


def stage_places(layout: Layout) -> tuple[tuple, ...]:
    """``stage_place`` of every stage, in one pass over the stage split."""
    last_stage = layout.pp - 1
    # every stage's tp rank 0 of replica 0 has tp, ep and etp rank 0: one shard for all of them
    shard = shard_of(rank_coords(rank_of(layout, 0, 0, 0), layout), layout)
    return tuple((first, last, p == 0, p == last_stage, shard, layout.tp)
                 for p, (first, last) in enumerate(stage_ranges(layout)))


def stage_work(spec: ModelSpec, layout: Layout, dtype: str, quant: QuantConfig, kv_dtype_bytes: int,
               pp_rank: int, ssm_dtype_bytes: int = 2) -> StageWork:
    """The per-rank costs of stage ``pp_rank`` (its tp rank 0, ep rank 0): each layer class sized once
    (``memory.weights.WeightModel``), the edges by ``tensors.stage_edge_tensors``; the layout enters only through
    ``stage_place``."""
    return placed_stage_work(spec, stage_place(layout, pp_rank), dtype, quant, kv_dtype_bytes, pp_rank,
                             ssm_dtype_bytes)


def placed_stage_work(spec: ModelSpec, place: tuple, dtype: str, quant: QuantConfig, kv_dtype_bytes: int,
                      pp_rank: int, ssm_dtype_bytes: int = 2) -> StageWork:
    """``stage_work`` of a stage given by its ``stage_place``."""
    first, last, is_first, is_last, shard, tp = place
    wm = weight_model(spec, dtype, quant)
    tally = _Tally()
    for cls, count in enumerate(wm.class_counts(first, last)):
        if count:
            tally.merge(_layer_class_tally(spec, wm, cls, shard, dtype, quant), count)
    tp_only = Shard(tp=shard.tp, tp_rank=shard.tp_rank)
    for t in stage_edge_tensors(spec, is_first, is_last):
        if t.part == Part.FINAL_NORM:  # the embedding is gathered by rows, lm_head below, the vision tower idle
            tally.add(t, tp_only, spec, dtype, quant, 1)
    layers = range(first, last + 1)
    counts = _layer_prefix(spec, wm)
    moe, attention, linear = (counts[last + 1][i] - counts[first][i] for i in range(3))
    vocab_local = len(vocab_range(spec.vocab_size, tp, 0)) if is_last else 0
    lm_head = stored_tensors(lm_head_tensor(spec), tp_only, spec, dtype, quant) if is_last else []
    return StageWork(
        pp_rank=pp_rank, layers=len(layers), attention_layers=attention, linear_layers=linear,
        moe_layers=moe, dense_weight_bytes=tally.dense_bytes + sum(st.bytes() for st in lm_head),
        expert_bytes=tally.expert_bytes // max(1, moe), local_experts=tally.local_experts,
        num_experts=spec.num_experts, top_k=spec.num_experts_per_tok, matmul_flops_per_token=tally.flops,
        expert_flops_per_pair=tally.expert_flops // max(1, moe), act_bytes_per_token=tally.act,
        expert_act_bytes_per_pair=tally.expert_act // max(1, moe),
        attn_flops_per_key=attention * 4 * (spec.num_heads // tp) * spec.head_dim,
        kv_bytes_per_token=attention * kv_bytes_per_token_per_layer(spec, tp, kv_dtype_bytes),
        recurrent_flops_per_token=linear * _recurrent_flops(spec, tp),
        state_bytes_per_sequence=linear * state_bytes_per_sequence_per_layer(spec, tp, 2, ssm_dtype_bytes),
        lm_head_flops_per_sequence=2 * spec.hidden_size * vocab_local,
        logits_bytes_per_sequence=vocab_local * LOGITS_BYTES,
        embed_bytes_per_token=spec.hidden_size * ACTIVATION_BYTES if is_first else 0,
        hidden_size=spec.hidden_size,
    )


def _layer_prefix(spec: ModelSpec, wm) -> list[tuple[int, int, int]]:
    """(MoE, full-attention, linear-attention) layers among the first n, for n = 0 … num_layers: any range's counts
    are a difference (kept on the weight model, like ``_layer_class_tally``)."""
    key = ("speed.work", "layer_prefix")
    out = wm.cache.get(key)
    if out is None:
        out = wm.cache[key] = [(0, 0, 0)]
        for i in range(spec.num_layers):
            moe, attention, linear = out[-1]
            kind = spec.layer_kind(i)
            out.append((moe + spec.is_moe_layer(i), attention + (kind == FULL_ATTENTION),
                        linear + (kind == LINEAR_ATTENTION)))
    return out


def _recurrent_flops(spec: ModelSpec, tp: int) -> int:
    """One token through one Gated-DeltaNet layer's recurrence and convolution on one TP rank."""
    la = spec.linear
    if la is None:
        return 0
    heads = la.num_value_heads // tp
    recurrence = RECURRENT_FLOPS_PER_STATE_ELEMENT * heads * la.key_head_dim * la.value_head_dim
    return recurrence + 2 * la.conv_kernel * (la.conv_dim // tp)


def experts_touched(stage: StageWork, tokens: float) -> float:
    """Expected local experts some token of the step picks, per MoE layer: E_local·(1 − (1 − k/E)^T)."""
    if not stage.is_moe or tokens <= 0:
        return 0.0
    return stage.local_experts * (1.0 - (1.0 - stage.top_k / stage.num_experts) ** tokens)


def step_work(stage: StageWork, shape: StepShape) -> StepWork:
    """FLOPs and bytes of one step of ``shape`` on the rank of ``stage`` (formulas in the module docstring)."""
    tokens = shape.tokens
    pairs = tokens * stage.top_k * stage.local_experts / stage.num_experts if stage.is_moe else 0.0
    expert_read = stage.moe_layers * experts_touched(stage, tokens) * stage.expert_bytes
    keys = shape.decode * shape.decode_keys + shape.prefill * shape.prefill_keys
    sampled = shape.sequences
    matmul_flops = (tokens * stage.matmul_flops_per_token + pairs * stage.moe_layers * stage.expert_flops_per_pair
                    + sampled * stage.lm_head_flops_per_sequence)
    kv_read = (shape.decode * shape.decode_keys + shape.prefill_kv_read) * stage.kv_bytes_per_token
    attention_bytes = kv_read + tokens * stage.kv_bytes_per_token + 2 * sampled * stage.state_bytes_per_sequence
    activations = tokens * stage.act_bytes_per_token + pairs * stage.moe_layers * stage.expert_act_bytes_per_pair
    other = tokens * stage.embed_bytes_per_token + sampled * stage.logits_bytes_per_sequence
    return StepWork(
        matmul_flops=matmul_flops, matmul_bytes=stage.dense_weight_bytes + expert_read + activations,
        attention_flops=keys * stage.attn_flops_per_key + tokens * stage.recurrent_flops_per_token,
        attention_bytes=attention_bytes, other_bytes=other,
    )


def prefill_keys_per_token(prompt: int) -> float:
    """Keys one prompt token attends on average under the causal mask: (P + 1) / 2 (P(P+1)/2 in all)."""
    return (prompt + 1) / 2
