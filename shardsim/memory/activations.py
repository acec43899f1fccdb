"""Activation peak of inference on one rank: the largest transient of a prefill chunk, from first principles.

T = tokens in flight = min(context, prefill_chunk) × batch (a chunked prefill processes ``prefill_chunk`` tokens
of each sequence at once; vLLM ``max_num_batched_tokens``, Agrawal et al. 2024, Sarathi-Serve, arXiv:2403.02310).
a = activation bytes (bf16: 2). Per rank with tp ranks (Megatron-LM: activations inside attention and MLP are
split over tp, Korthikanti et al. 2022, arXiv:2205.05198, §4.2; hidden states between blocks are whole):

- resident: hidden_states and residual, 2·T·H·a, live through the whole layer;
- attention: qkv output T·(q+2kv)·hd·a, normed/rotated q and k T·(q+kv)·hd·a, rotary cos/sin 2·T·hd·4,
  attention output T·q·hd·a, o_proj output T·H·a (q, kv = heads held by the rank). FlashAttention keeps no
  T×T score matrix (Dao et al. 2022, arXiv:2205.14135), so none is counted;
- dense MLP: gate and up outputs plus their product, 3·T·(I/tp)·a (SwiGLU, vLLM ``MergedColumnParallelLinear`` +
  ``SiluAndMul``; HF ``Qwen3MLP``), then down output T·H·a;
- MoE: router logits T·E·4; top-k ids and weights T·k·8; fused-MoE caches for T' = min(T, 32768) tokens:
  T'·k·(2·Im/etp + Im/etp + H)·a (vLLM ``fused_moe.py`` intermediate_cache1/2/3). All top-k copies are counted
  on every rank — the worst case where routing sends every token to local experts;
- logits (last stage only): only the sampled position of each sequence: batch·(V/tp)·(a + 4) for the bf16
  logits and their fp32 copy, plus batch·V·4 for the all-gathered fp32 logits when tp > 1.
The peak is resident + the largest of the transients.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..constants import ACTIVATION_BYTES, LOGITS_BYTES, MOE_CHUNK_TOKENS, ROUTER_LOGITS_BYTES
from ..models import ModelSpec
from ..tensors import kv_heads_per_rank


@dataclass(frozen=True, slots=True)
class ActivationPeak:
    resident: int
    attention: int
    mlp: int
    logits: int

    @property
    def peak(self) -> int:
        return self.resident + max(self.attention, self.mlp, self.logits)


def activation_peak_bytes(spec: ModelSpec, tp: int, etp: int, tokens: int, batch: int, has_moe: bool,
                          has_dense: bool, is_last_stage: bool, act_bytes: int = ACTIVATION_BYTES) -> int:
    """The peak (resident + largest transient) as one number; see ``activation_peak`` for the terms."""
    key = (id(spec), tp, etp, tokens, batch, has_moe, has_dense, is_last_stage, act_bytes)
    hit = _PEAK_MEMO.get(key)
    if hit is None:
        if len(_PEAK_MEMO) > 100_000:
            _PEAK_MEMO.clear()
        hit = _PEAK_MEMO[key] = (spec, activation_peak(spec, tp, etp, tokens, batch, has_moe, has_dense, is_last_stage, act_bytes).peak)
    return hit[1]


# (id(spec), …) → (spec, peak); the spec is kept so its id stays unique while the entry lives.
_PEAK_MEMO: dict[tuple, tuple] = {}


def activation_peak(spec: ModelSpec, tp: int, etp: int, tokens: int, batch: int, has_moe: bool, has_dense: bool,
                    is_last_stage: bool, act_bytes: int = ACTIVATION_BYTES) -> ActivationPeak:
    """The transients of one prefill chunk of ``tokens`` tokens (all sequences together) on one rank."""
    h, hd, a = spec.hidden_size, spec.head_dim, act_bytes
    q = spec.num_heads // tp
    kv = kv_heads_per_rank(spec.num_kv_heads, tp)
    t = tokens
    resident = 2 * t * h * a
    attention = t * hd * a * (q + 2 * kv) + t * hd * a * (q + kv) + 2 * t * hd * 4 + t * q * hd * a + t * h * a
    mlp = 0
    if has_dense:
        mlp = 3 * t * (spec.intermediate_size // tp) * a + t * h * a
    if has_moe:
        k, mi = spec.num_experts_per_tok, spec.moe_intermediate_size // etp
        chunk = min(t, MOE_CHUNK_TOKENS)
        moe = t * spec.num_experts * ROUTER_LOGITS_BYTES + t * k * 8 + chunk * k * (3 * mi + h) * a
        mlp = max(mlp, moe)
    logits = 0
    if is_last_stage:
        v_local = -(-spec.vocab_size // tp)
        logits = batch * v_local * (a + LOGITS_BYTES) + (batch * spec.vocab_size * LOGITS_BYTES if tp > 1 else 0)
    return ActivationPeak(resident, attention, mlp, logits)


def activation_peak_eager(spec: ModelSpec, tp: int, etp: int, tokens: int, batch: int, has_moe: bool,
                          has_dense: bool, is_last_stage: bool, act_bytes: int = ACTIVATION_BYTES) -> int:
    """Peak live bytes of the eager (unfused) forward of shardsim's torch backend, ``launch/shard_model.py``.

    Derived op by op from that code (HF ``modeling_qwen3.py`` math, no fused kernels), T tokens, a bytes:
    rotary cos/sin 2·T·hd·a for the stage; RMSNorm upcasts to fp32 (T·H·4 transient);
    attention phase: the layer input and its norm 2·T·H·a, plus q, k, v and, while q is normed and rotated,
    three more q-sized tensors: T·hd·a·max(4q + 2kv, q + 5kv); MLP phase: input, new hidden and norm 3·T·H·a plus
    gate and up 2·T·(I/tp)·a (SiLU and the product in place); MoE phase: 3·T·H·a plus the output buffer T·H·a,
    top-k 12·T·k and the router's bf16 and two fp32 T·E copies; logits phase (last stage): T·H·a plus
    batch·(V/tp)·(a+4), or with tp > 1 batch·(V/tp)·4 + 2·batch·V·4 for the all-gather and its concatenation.
    """
    h, hd, a, t = spec.hidden_size, spec.head_dim, act_bytes, tokens
    q = spec.num_heads // tp
    kv = kv_heads_per_rank(spec.num_kv_heads, tp)
    rope = 2 * t * hd * a
    phases = [2 * t * h * a + t * hd * a * max(4 * q + 2 * kv, q + 5 * kv), 2 * t * h * a + t * h * 4]
    if has_dense:
        phases.append(3 * t * h * a + 2 * t * (spec.intermediate_size // tp) * a)
    if has_moe:
        e, k = spec.num_experts, spec.num_experts_per_tok
        phases.append(3 * t * h * a + max(t * e * (a + 8), t * h * a + 12 * t * k))
    if is_last_stage:
        v_local = -(-spec.vocab_size // tp)
        gather = batch * v_local * 4 + 2 * batch * spec.vocab_size * 4 if tp > 1 else 0
        phases.append(t * h * a + max(batch * v_local * (a + 4), gather))
    return rope + max(phases)
