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
  logits and their fp32 copy, plus batch·V·4 for the all-gathered fp32 logits when tp > 1;
- linear attention (stages holding Gated-DeltaNet layers, only when asked with ``gdn``): the layer's transient in
  vLLM's profile run, ``core.memory.deltanet_activations.gdn_profile_bytes`` (the profile skips the chunked delta
  rule), or with ``gdn="prefill:B"`` (shardsim's own plan of a hybrid) the real chunked prefill's,
  ``gdn_prefill_bytes``, the temporal state in B-byte elements.
The peak is resident + the largest of the transients.
"""

from __future__ import annotations

from dataclasses import dataclass

from shardsim.constants import ACTIVATION_BYTES, LOGITS_BYTES, MOE_CHUNK_TOKENS, ROUTER_LOGITS_BYTES
from shardsim.core.memory.deltanet_activations import gdn_prefill_bytes, gdn_profile_bytes
from shardsim.core.model import ModelSpec
from shardsim.core.tensors import kv_heads_per_rank


@dataclass(frozen=True, slots=True)
class ActivationPeak:
    resident: int
    attention: int
    mlp: int
    logits: int
    linear_attention: int = 0

    @property
    def peak(self) -> int:
        return self.resident + max(self.attention, self.mlp, self.logits, self.linear_attention)


def activation_peak_bytes(spec: ModelSpec, tp: int, etp: int, tokens: int, batch: int, has_moe: bool,
                          has_dense: bool, is_last_stage: bool, act_bytes: int = ACTIVATION_BYTES,
                          gdn: str | None = None) -> int:
    """The peak (resident + largest transient) as one number; see ``activation_peak`` for the terms."""
    key = (id(spec), tp, etp, tokens, batch, has_moe, has_dense, is_last_stage, act_bytes, gdn)
    hit = _PEAK_MEMO.get(key)
    if hit is None:
        if len(_PEAK_MEMO) > 100_000:
            _PEAK_MEMO.clear()
        peak = activation_peak(spec, tp, etp, tokens, batch, has_moe, has_dense, is_last_stage, act_bytes, gdn).peak
        hit = _PEAK_MEMO[key] = (spec, peak)
    return hit[1]


# (id(spec), …) → (spec, peak); the spec is kept so its id stays unique while the entry lives.
_PEAK_MEMO: dict[tuple, tuple] = {}


def activation_peak(spec: ModelSpec, tp: int, etp: int, tokens: int, batch: int, has_moe: bool, has_dense: bool,
                    is_last_stage: bool, act_bytes: int = ACTIVATION_BYTES, gdn: str | None = None) -> ActivationPeak:
    """The transients of one prefill chunk of ``tokens`` tokens (all sequences together) on one rank; ``gdn``: the
    vLLM release's GDN profile form (``deltanet_activations.GDN_PROFILE_FORMS``) for a stage holding linear-attention
    layers, None for none."""
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
    linear = 0
    if gdn and spec.linear is not None:
        if gdn.startswith("prefill"):   # "prefill:B": a real chunked prefill, the temporal state in B-byte elements
            linear = gdn_prefill_bytes(spec, tp, t, batch, a, int(gdn.partition(":")[2] or a))
        else:
            linear = gdn_profile_bytes(spec, tp, t, gdn, a)
    return ActivationPeak(resident, attention, mlp, logits, linear)


def activation_peak_eager(spec: ModelSpec, tp: int, etp: int, tokens: int, batch: int, has_moe: bool,
                          has_dense: bool, is_last_stage: bool, act_bytes: int = ACTIVATION_BYTES,
                          expert_tokens: int | None = None) -> int:
    """Peak live bytes of the eager (unfused) forward of shardsim's torch backend, ``launch/serve/shard_model.py``.

    Derived op by op from that code (HF ``modeling_qwen3.py`` math, no fused kernels), T tokens, a bytes:
    rotary cos/sin 2·T·hd·a for the stage; RMSNorm upcasts to fp32 (T·H·4 transient);
    attention phase: the layer input and its norm 2·T·H·a, plus q, k, v and, while q is normed and rotated,
    three more q-sized tensors: T·hd·a·max(4q + 2kv, q + 5kv); MLP phase: input, new hidden and norm 3·T·H·a plus
    gate and up 2·T·(I/tp)·a (SiLU and the product in place); MoE phase: 3·T·H·a plus either the router's bf16
    and two fp32 T·E copies, or the output buffer T·H·a, top-k ids and weights T·k·(12 + a) and one expert's
    tokens, SwiGLU and down output n·(2H + I_e)·a with n ≤ T (bounded by n = T: random routers send most tokens
    to a few experts); logits phase (last stage): T·H·a plus
    batch·(V/tp)·(a+4), or with tp > 1 batch·(V/tp)·4 + 2·batch·V·4 for the all-gather and its concatenation.
    """
    h, hd, a, t = spec.hidden_size, spec.head_dim, act_bytes, tokens
    q = spec.num_heads // tp
    kv = kv_heads_per_rank(spec.num_kv_heads, tp)
    # gloo's process group releases the tensor of the last all-reduce from its worker thread, so with tp > 1
    # one more hidden-size tensor is often still alive (measured: the peak moves by ±T·H·a between runs).
    rope = 2 * t * hd * a + (t * h * a if tp > 1 else 0)
    phases = [2 * t * h * a + t * hd * a * max(4 * q + 2 * kv, q + 5 * kv), 2 * t * h * a + t * h * 4]
    if has_dense:
        phases.append(3 * t * h * a + 2 * t * (spec.intermediate_size // tp) * a)
    if has_moe:
        e, k, mi = spec.num_experts, spec.num_experts_per_tok, spec.moe_intermediate_size // etp
        # Router: bf16 logits, their fp32 copy and the softmax. Experts: output buffer, top-k ids/weights, and
        # for the expert being computed its tokens, their SwiGLU and the down output: n·(2H + I_e)·a with n ≤ T
        # tokens routed to that expert (the bound: every token picks it).
        n = t if expert_tokens is None else min(t, expert_tokens)
        phases.append(3 * t * h * a + max(t * e * (a + 8), t * h * a + t * k * (12 + a) + n * (2 * h + mi) * a))
    if is_last_stage:
        v_local = -(-spec.vocab_size // tp)
        gather = batch * v_local * 4 + 2 * batch * spec.vocab_size * 4 if tp > 1 else 0
        phases.append(t * h * a + max(batch * v_local * (a + 4), gather))
    return rope + max(phases)


def activation_peak_hf(spec: ModelSpec, tp: int, etp: int, tokens: int, batch: int, has_moe: bool,
                       has_dense: bool, is_last_stage: bool, act_bytes: int = ACTIVATION_BYTES,
                       expert_tokens: int | None = None) -> int:
    """Peak live bytes of a Hugging Face transformers forward (``modeling_qwen3.py`` / ``modeling_qwen3_moe.py``,
    SDPA attention, tensor parallel hooks), derived from that code, T tokens, a bytes, KV cache excluded:

    rotary cos/sin 2·T·hd·a; ``Qwen3RMSNorm`` holds an fp32 copy and its square, 2·T·H·4, beside the layer input
    and the residual; attention: input and normed input 2·T·H·a, and while q is normed (fp32 copy and square)
    and rotated (q·cos, rotate_half, ·sin) up to five q-sized and two kv-sized tensors, or while k is normed one
    q and six kv: T·hd·a·max(5q + 2kv, q + 6kv); ``Qwen3MLP``: layer input, residual, attention output and normed
    input 4·T·H·a, plus act(gate(x)), up(x) and their product 3·T·(I/tp)·a; ``Qwen3MoeSparseMoeBlock`` with
    transformers' default ``grouped_mm`` experts (``integrations/moe.py``, ``grouped_mm_experts_forward``): the
    same 4·T·H·a plus either the router (bf16 logits and fp32 probabilities T·E·(a + 4)) or, for the S = T·k
    token-expert pairs sorted by expert, the gathered inputs, their masked copy, the down output and its
    weighted copy 4·S·H·a, or, earlier, two of them beside the gate/up and gated outputs S·(2H + 3·I_e)·a, plus
    sort ids and weights S·(16 + a) (routing-independent: every pair is computed); logits (last stage, last position only as ``generate`` asks): T·H·a plus local, gathered and
    concatenated bf16 logits and the fp32 copy, batch·((V/tp)·a + 2·V·a + V·4).
    """
    h, hd, a, t = spec.hidden_size, spec.head_dim, act_bytes, tokens
    q = spec.num_heads // tp
    kv = kv_heads_per_rank(spec.num_kv_heads, tp)
    rope = 2 * t * hd * a
    phases = [2 * t * h * a + 2 * t * h * 4, 2 * t * h * a + t * hd * a * max(5 * q + 2 * kv, q + 6 * kv)]
    if has_dense:
        phases.append(4 * t * h * a + 3 * t * (spec.intermediate_size // tp) * a)
    if has_moe:
        e, k, mi = spec.num_experts, spec.num_experts_per_tok, spec.moe_intermediate_size // etp
        s_rows = t * k  # token-expert pairs, all processed at once by grouped_mm
        experts = s_rows * a * max(4 * h, 2 * h + 3 * mi) + s_rows * (16 + a)
        phases.append(4 * t * h * a + max(t * e * (a + 4), experts))
    if is_last_stage:
        v_local = -(-spec.vocab_size // tp)
        gathered = 2 * spec.vocab_size * a if tp > 1 else 0
        phases.append(t * h * a + batch * (v_local * a + gathered + spec.vocab_size * 4))
    return rope + max(phases)
