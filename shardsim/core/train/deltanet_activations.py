"""What a hybrid's decoder layer keeps for backward when DeepSpeed, FSDP or DDP train the transformers model
(Qwen3-Next, Qwen3.5 / 3.6 dense and MoE: Gated-DeltaNet ``linear_attention`` layers and gated ``full_attention``
layers), bf16, per micro-batch, dispatched by layer kind (``ModelSpec.layer_kind``).

Derived from transformers@v5.25.0 ``models/qwen3_next/modeling_qwen3_next.py`` (``Qwen3NextRMSNorm``,
``Qwen3NextRMSNormGated``, ``Qwen3NextAttention``, ``causal_conv1d_fn``, ``l2norm``, ``torch_chunk_gated_delta_rule``,
``Qwen3NextGatedDeltaNet.forward``, ``Qwen3NextSparseMoeBlock``) and its copies ``qwen3_5/modeling_qwen3_5.py`` /
``qwen3_5_moe/modeling_qwen3_5_moe.py`` (the split ``in_proj_qkv`` / ``in_proj_z`` / ``in_proj_b`` / ``in_proj_a``
save the same tensors as the fused ``in_proj_qkvz`` / ``in_proj_ba``), then measured to the byte with
``torch.autograd.graph.saved_tensors_hooks`` (distinct storages, parameters left out: ``launch.train.states.
SavedTensorBytes``) on real transformers models, CPU, bf16, sdpa and eager, at (batch, seq) = (1, 64), (2, 150),
(3, 37), (1, 200) and at Qwen3-Next's and Qwen3.5-0.8B's own widths (``tests/validation/test_validate_train_hybrid.py``).

Every delta-rule and conv term below is the torch fallback's, what transformers runs without flash-linear-attention
and causal-conv1d (CPU, or a GPU without them): the planner prices that figure. With ``fla`` installed the delta rule
is fla's ``ChunkGatedDeltaRuleFunction`` (github.com/fla-org/flash-linear-attention fla/ops/gated_delta_rule/chunk.py
@0315a70), an autograd Function that keeps only ``ctx.save_for_backward(q, q_rstd, k, k_rstd, v, g, beta, A,
initial_state, cu_seqlens)`` — the l2-normed bf16 q and k (2·T·KEY each), their fp32 rstd (4·T·nk each), v and beta
(views of storages kept anyway), the chunk-cumulated fp32 g (4·T·nv) and the bf16 WY matrix A (2·T·nv·64) — and
recomputes the rest in backward: about 51 MB a layer for Qwen3-Next at 4,096 tokens, where the fallback's delta
rule and l2norm keep about 1.04 GB. That GPU figure (and causal-conv1d's fused conv) is neither selectable nor
measured here.

Notation: B micro-batch, S sequence, T = B·S tokens, h hidden; a linear layer's nk key heads and nv value heads of
dk and dv, KEY = nk·dk, VAL = nv·dv, CONV = 2·KEY + VAL, K the conv kernel; C = 64 the delta rule's chunk
(``torch_chunk_gated_delta_rule(chunk_size=64)``), P = ⌈S / C⌉·C the padded length (``F.pad`` to a multiple of the
chunk), N = P / C chunks, X = 4·B·nv (one fp32 value per sequence and value head).

- Zero-centred RMSNorm (``x · rsqrt(mean x² + ε) · (1 + w)`` in fp32): its fp32 input 4·T·h, the rsqrt 4·T, the fp32
  ``1 + w`` 4·h and the fp32 normed value 4·T·h; its bf16 output, 2·T·h, is saved by the projections that read it.
  Per head for q_norm / k_norm (8·T·q + 4·T·heads + 4·hd).
- Gated-DeltaNet mixer: the conv input (q, k, v concatenated) 2·T·CONV and the conv output before its slice to S,
  2·B·CONV·(S + K − 1) (``causal_conv1d_fn`` pads K − 1 and SiLU keeps the padded storage); beta = sigmoid(b) 2·T·nv;
  g = −exp(A_log)·softplus(a + dt_bias): exp(A_log) and its negation 4·nv each, softplus's input and output 4·T·nv
  each; q and k in fp32 (repeated to the nv value heads) with their l2norm's rsqrt, 2·(X·S·dk + X·S); padded to P:
  beta X·P, v X·P·dv, k X·P·dk; the causal mask C² (bool); per chunk pair the decay exp, k_beta·kᵀ, q·kᵀ, the UT system
  and the intra-chunk attention, 5·X·P·C; k_beta, q, the two solves' k_cumdecay and the decayed k X·P·dk each (the
  decayed q too when N ≥ 2: the first chunk reads a zero state that needs no gradient), new_values and v_new X·P·dv
  each plus the padded v; three exps of the cumulated decay 3·X·P and the chunk decay X·N; the recurrent state entering
  each chunk, X·N·dk·dv (the fp32 [dk, dv] memory per value head, N of them).
- Gated RMSNorm over the core output (``Qwen3NextRMSNormGated``): fp32 input 4·T·VAL, rsqrt 4·T·nv, the bf16 normed
  value 2·T·VAL, the gate z in fp32 and SiLU of it 8·T·VAL, the weighted bf16 value 2·T·VAL; out_proj's input 2·T·VAL.
- Gated full attention (q_proj 2× wide: query and a per-head gate): sdpa keeps q, k, v, its output and the
  log-sum-exp, 4·T·q + 4·T·kv + 4·T·heads; the output gate keeps the output's contiguous copy, sigmoid(gate) and the
  gated product (o_proj's input), 6·T·q. Eager attention instead keeps q, k and v repeated to every query head 6·T·q
  (``repeat_kv``), each score's fp32 softmax and bf16 copy 6·B·heads·S², and its output once, 2·T·q, beside the gate's
  sigmoid and product.
- MoE block with a shared expert: the routed part as Qwen3-MoE (``activations.hf_layer_bytes``), the shared expert's
  SwiGLU 8·T·si, sigmoid(shared_expert_gate(x)) 2·T and the shared output it scales 2·T·h. Dense MLP 8·T·I.
- The stage: int64 token ids 8·T on the first; on the last the final (zero-centred) norm, lm_head's input 2·T·h, the
  fp32 logits 4·T·V, int64 targets 8·T (transformers loss/loss_utils.py ``ForCausalLMLoss``: labels padded by one
  and shifted, ``labels[..., 1:].contiguous()``, a view of the padded B·(S + 1) storage when B = 1, so 8 B more) and
  ``nll_loss``'s 0-dim fp32 total weight, 4 B; rotary cos and sin (bf16,
  rot = head_dim × partial_rotary_factor) on a stage with a full-attention layer: [1, S, rot] each, or [B, S, rot]
  with multimodal rope (Qwen3.5 / 3.6 ``Qwen3_5TextModel`` expands position ids to every sequence).
"""

from __future__ import annotations

from shardsim.core.model import FULL_ATTENTION, ModelSpec
from shardsim.core.train.choices import TrainSetup
from shardsim.errors import ShardsimError
from shardsim.units import ceil_div

CHUNK = 64
"""``torch_chunk_gated_delta_rule(..., chunk_size=64)``: the default the GatedDeltaNet forward keeps
(modeling_qwen3_next.py@v5.25.0 ``torch_chunk_gated_delta_rule``)."""
NLL_TOTAL_WEIGHT = 4
"""torch ``nll_loss`` saves its 0-dim fp32 ``total_weight`` for backward (aten ``nll_loss_forward``)."""


def zero_centred_norm_bytes(elements: int, rows: int, width: int) -> int:
    """``Qwen3NextRMSNorm`` of ``rows`` rows of ``width`` (``elements`` in all): fp32 input and normed value, an
    fp32 rsqrt per row, the fp32 ``1 + w``."""
    return 8 * elements + 4 * rows + 4 * width


def deltanet_mixer_bytes(spec: ModelSpec, s: TrainSetup) -> int:
    """The Gated-DeltaNet mixer of one ``linear_attention`` layer, from the conv input to out_proj's input."""
    la = spec.linear
    b, seq = s.micro_batch, s.seq_len
    t = b * seq
    nv, dk, dv = la.num_value_heads, la.key_head_dim, la.value_head_dim
    val, conv = la.value_dim, la.conv_dim
    padded = ceil_div(seq, CHUNK) * CHUNK
    chunks = padded // CHUNK
    x = 4 * b * nv
    conv_bytes = 2 * t * conv + 2 * b * conv * (seq + la.conv_kernel - 1)
    gates = 2 * t * nv + 8 * t * nv + 8 * nv
    l2norm = 2 * (x * seq * dk + x * seq)
    per_key = 5 + (chunks >= 2)
    delta_rule = (5 * x * padded * CHUNK + per_key * x * padded * dk + 3 * x * padded * dv + 4 * x * padded
                  + x * chunks * dk * dv + x * chunks + CHUNK * CHUNK)
    gated_norm = 16 * t * val + 4 * t * nv
    return conv_bytes + gates + l2norm + delta_rule + gated_norm + 2 * t * val


def gated_attention_bytes(spec: ModelSpec, s: TrainSetup) -> int:
    """A gated ``full_attention`` layer's attention: q_norm, k_norm, sdpa (or eager) and the output gate."""
    t, hd = s.tokens(), spec.head_dim
    heads, kvh = spec.num_heads, spec.num_kv_heads
    q, kv = heads * hd, kvh * hd
    norms = zero_centred_norm_bytes(t * q, t * heads, hd) + zero_centred_norm_bytes(t * kv, t * kvh, hd)
    if s.flash_attention:
        core = 4 * t * q + 4 * t * kv + 4 * t * heads
        gate = 6 * t * q
    else:
        core = 6 * t * q + 6 * s.micro_batch * heads * s.seq_len * s.seq_len + 2 * t * q
        gate = 4 * t * q
    return norms + core + gate


def hybrid_mlp_bytes(spec: ModelSpec, s: TrainSetup, moe: bool) -> int:
    """The MLP of a hybrid layer: dense SwiGLU, or routed experts (Qwen3-MoE's rule) plus the shared expert."""
    t, h = s.tokens(), spec.hidden_size
    if not moe:
        return 8 * t * spec.intermediate_size
    e, k, ie = spec.num_experts, spec.num_experts_per_tok, spec.moe_intermediate_size
    pairs = t * k if s.capacity_factor is None else min(t * k, int(s.capacity_factor * t * k / e) * e)
    routed = t * e * 4 + t * k * (8 + 4) + t * 4 + e * 4 + pairs * (4 * h + 8 * ie + 2 + 3 * 8)
    si = spec.shared_expert_intermediate_size
    shared = 8 * t * si + 2 * t + 2 * t * h if si else 0
    return routed + shared


def hybrid_layer_bytes(spec: ModelSpec, s: TrainSetup, layer: int) -> int:
    """What decoder layer ``layer`` of a hybrid keeps for backward, by its kind (rules in the module docstring)."""
    if s.recompute == "selective":
        raise ShardsimError("--recompute selective drops the attention core (Korthikanti et al. 2022, §5); a "
                            "Gated-DeltaNet layer's is not modelled: use --recompute none or full")
    t, h = s.tokens(), spec.hidden_size
    norms = 2 * (zero_centred_norm_bytes(t * h, t, h) + 2 * t * h)   # input and post-attention norms, outputs saved
    if spec.layer_kind(layer) == FULL_ATTENTION:
        mixer = gated_attention_bytes(spec, s)
    else:
        mixer = deltanet_mixer_bytes(spec, s)
    return norms + mixer + hybrid_mlp_bytes(spec, s, spec.is_moe_layer(layer))


def hybrid_tail_bytes(spec: ModelSpec, s: TrainSetup, first: int, last: int, is_first: bool, is_last: bool) -> int:
    """What a stage holding layers ``first`` … ``last`` keeps beside them: token ids, rotary cos / sin, the final
    norm, logits, targets and the loss's total weight (module docstring)."""
    t, h = s.tokens(), spec.hidden_size
    out = 8 * t if is_first else 0
    if is_last:
        targets = 8 * t + (8 if s.micro_batch == 1 else 0)   # one row: the shifted view keeps the padded storage
        out += zero_centred_norm_bytes(t * h, t, h) + 2 * t * h + 4 * t * spec.vocab_size + targets + NLL_TOTAL_WEIGHT
    if any(spec.layer_kind(layer) == FULL_ATTENTION for layer in range(first, last + 1)):
        rows = t if spec.mrope_section else s.seq_len
        out += 2 * 2 * rows * spec.rotary_dim
    return out
