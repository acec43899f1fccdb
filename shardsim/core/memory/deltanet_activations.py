"""The transient of one Gated-DeltaNet (linear-attention) layer in vLLM, per TP rank, read from the wheels.

Per rank: key heads kh = nk/tp, value heads vh = nv/tp (``divide`` in ``Qwen3NextGatedDeltaNet.__init__``),
K = kh·dk, V = vh·dv, H the hidden size, a the activation bytes, T the tokens of the step.

**The profile does not run the delta rule.** vLLM sizes the KV/state pool from a dummy forward of
T = max_num_batched_tokens tokens in min(T, max_num_seqs) sequences of T // n tokens each, the remainder to the
last (v1/worker/gpu_model_runner.py@v0.11.0 and @v0.33.0 ``_dummy_run``; v1/worker/gpu/model_runner.py@v0.33.0
the same). ``profile_run`` calls it with ``is_profile=True`` and neither ``force_attention`` nor a FULL graph
mode, so no attention metadata is built and the forward context's ``attn_metadata`` is None (Model Runner V2:
``skip_attn=True``, the same). The GDN layer returns early on it:

- 0.10.2 … 0.11.0 (``form="skipped"``): the whole layer is the custom op ``vllm.gdn_attention``; its ``_forward``
  returns at ``if attn_metadata is None: # V1 profile run`` before ``in_proj_qkvz`` (models/qwen3_next.py@v0.11.0
  ``Qwen3NextGatedDeltaNet._forward``). Only the decoder layer's output buffer ``torch.empty_like(hidden_states)``,
  T·H·a, is allocated (``Qwen3NextDecoderLayer.forward``).
- 0.11.1 on: the input projections, the gated RMSNorm and ``out_proj`` run in ``forward`` around the custom op
  ``gdn_attention_core`` (``qwen_gdn_attention_core`` from 0.22), whose ``_forward_core`` returns on None (from
  0.18 after ``_warmup_prefill_kernels``: passes of at most 64 tokens, tiny). So the profile sees, in this order
  (layers/mamba/gdn/qwen_gdn_linear_attn.py@v0.33.0 ``QwenGatedDeltaNetAttention.forward_cuda``,
  ``_output_projection``; models/qwen3_next.py@v0.11.1 ``forward``):
  1. ``in_proj_qkvz`` output [T, 2K + 2V] and ``in_proj_ba`` output [T, 2vh];
  2. Qwen3-Next's interleaved layout (``fix_query_key_value_ordering``): the per-key-head split is not viewable
     when kh > 1, so ``value``/``z`` ``.reshape`` copy [T, vh, dv] each, ``b``/``a`` copy [T, vh] each,
     ``rearrange("l p d -> l (p d)")`` copies q and k [T, K] each, and ``torch.cat`` makes ``mixed_qkv``
     [T, 2K + V]: 4K + 3V + 2vh (with kh = 1 all but the cat are views: 2K + V). Qwen3.5's flat layout: views,
     ``b``/``a`` made contiguous for the op call only;
  3. ``core_attn_out = torch.zeros([T, vh, dv])`` (kept by ``forward_cuda`` until it returns);
  4. the gated RMSNorm (layers/layernorm.py@v0.33.0 ``RMSNormGated.forward_cuda`` → fla ``layer_norm_fwd``):
     output [T·vh, dv], rstd fp32 [T·vh]; Qwen3.5's z is a strided view, ``z.reshape(-1, dv)`` copies it, T·V,
     for the norm's duration (third_party/flash_linear_attention/ops/layernorm_guard.py@v0.33.0
     ``_layer_norm_fn_impl``);
  5. ``out_proj`` output [T, H]; up to 0.25 the decoder layer also holds its output buffer [T, H]
     (``form="buffered"``; from 0.26 the layer returns its output, ``form="projections"``).
  Peak = (1 + 2 + 3 + norm output) + max(z copy + rstd, out_proj output) (+ T·H·a buffered). Releases up to 0.21
  free the zeros buffer before ``out_proj`` and 0.22 … 0.32 hold Qwen3.5's z copy through it: one T·V/tp·a less
  or more at that moment, not modelled.

**A real prefill** (not seen by the profile; what the headroom left by --gpu-memory-utilization must absorb) runs
``_forward_core`` in the custom op with the Part-1 tensors alive. With the Triton/FLA backend (third_party/
flash_linear_attention/ops/*.py@v0.33.0; FlashInfer's kernel is the default on sm90 from 0.33 and is not modelled),
chunk size BT = 64 (``FLA_CHUNK_SIZE``), N prefilling sequences and NT = Σ cdiv(Lᵢ, 64) chunks:
``causal_conv1d_fn`` output [T, 2K + V] (``empty_like``); ``fused_post_conv_prep`` q, k [T, kh, dk], v [T, vh, dv],
g and beta fp32 [T, vh]; ``initial_state = ssm_state[indices]`` [N, vh, dv, dk] in the state dtype; then
``chunk_gated_delta_rule_fwd``: g cumsum fp32 [T, vh] (cumsum.py ``chunk_local_cumsum``), A fp32 [T, vh, 64]
(chunk_scaled_dot_kkt.py), its inverse Ai [T, vh, 64] in bf16 (solve_tril.py, ``zeros_like``; A is freed when
``A = solve_tril(…)`` rebinds it), w [T, vh, dk] and u [T, vh, dv] (wy_fast.py ``recompute_w_u_fwd``), h
[NT, vh, dv, dk] bf16, final state fp32 [N, vh, dv, dk] and v_new [T, vh, dv] (chunk_delta_h.py
``chunk_gated_delta_rule_fwd_h``), o [T, vh, dv] (chunk_o.py ``chunk_fwd_o``). The peak is at ``chunk_fwd_o``
allocating o, everything above alive. 0.11.0 (layers/fla/ops) differs: g from ``fused_gdn_gating`` (fp32) and beta
``b.sigmoid()``, ``input_guard`` copies the strided q, k, v (2K + V), ``l2norm_fwd`` makes new q and k (2K), and
``solve_tril`` adds an fp32 [T, vh, 16] diagonal-block inverse.
"""

from __future__ import annotations

from shardsim.constants import ACTIVATION_BYTES
from shardsim.core.model import ModelSpec

FLA_CHUNK_SIZE = 64  # BT: third_party/flash_linear_attention/ops/utils.py@v0.33.0 FLA_CHUNK_SIZE
GDN_PROFILE_FORMS = ("skipped", "buffered", "projections")
_FP32 = 4


def _dims(spec: ModelSpec, tp: int) -> tuple[int, int, int, int]:
    """(kh, K, V, vh) held by one rank."""
    la = spec.linear
    return la.num_key_heads // tp, la.key_dim // tp, la.value_dim // tp, la.num_value_heads // tp


def projection_elements(spec: ModelSpec, tp: int) -> int:
    """Elements per token alive from the input projections to the layer's return: ``in_proj_qkvz`` and
    ``in_proj_ba`` outputs, the interleaved layout's copies (Qwen3-Next) and ``core_attn_out``."""
    kh, key, val, vh = _dims(spec, tp)
    layout = 0
    if spec.linear.projection == "fused":  # fix_query_key_value_ordering + rearrange + torch.cat
        layout = (2 * key + 2 * val + 2 * vh if kh > 1 else 0) + 2 * key + val
    return (2 * key + 2 * val) + 2 * vh + layout + val


def gdn_profile_bytes(spec: ModelSpec, tp: int, tokens: int, form: str, act_bytes: int = ACTIVATION_BYTES) -> int:
    """The GDN layer's transient in vLLM's profile run (module docstring), ``form`` one of ``GDN_PROFILE_FORMS``."""
    if form not in GDN_PROFILE_FORMS:
        raise ValueError(f"unknown GDN profile form {form!r}")
    t, a, h = tokens, act_bytes, spec.hidden_size
    buffer = t * h * a  # Qwen3NextDecoderLayer's torch.empty_like(hidden_states)
    if form == "skipped":
        return buffer
    _, _, val, vh = _dims(spec, tp)
    z_copy = t * val * a if spec.linear.projection != "fused" else 0
    kept = t * (projection_elements(spec, tp) + val) * a  # + the gated norm's output
    peak = kept + max(z_copy + t * vh * _FP32, t * h * a)
    return peak + (buffer if form == "buffered" else 0)


def prefill_chunks(tokens: int, seqs: int) -> tuple[int, int]:
    """(N sequences, NT chunks) of ``tokens`` split as vLLM's dummy batch: n = min(T, seqs) sequences of T // n
    tokens, the remainder to the last; NT = Σ cdiv(Lᵢ, 64) (``prepare_chunk_indices``)."""
    n = max(1, min(tokens, seqs))
    base, extra = divmod(tokens, n)
    return n, (n - 1) * -(-base // FLA_CHUNK_SIZE) + -(-(base + extra) // FLA_CHUNK_SIZE)


def gdn_prefill_bytes(spec: ModelSpec, tp: int, tokens: int, seqs: int, act_bytes: int = ACTIVATION_BYTES,
                      state_bytes: int = ACTIVATION_BYTES) -> int:
    """The GDN layer's transient in a real chunked prefill of ``tokens`` tokens in ``seqs`` sequences (Triton/FLA
    backend @v0.33.0, peak at ``chunk_fwd_o``; module docstring), the decoder's output buffer not included;
    ``state_bytes``: the temporal state's dtype (the gathered initial state)."""
    t, a = tokens, act_bytes
    _, key, val, vh = _dims(spec, tp)
    dk, dv = spec.linear.key_head_dim, spec.linear.value_head_dim
    n, nt = prefill_chunks(tokens, seqs)
    contiguous_ba = 2 * vh if spec.linear.projection != "fused" else 0  # b.contiguous(), a.contiguous() op args
    part1 = t * (projection_elements(spec, tp) + contiguous_ba) * a
    conv_and_prep = t * 2 * (2 * key + val) * a + t * vh * 2 * _FP32  # conv out; q, k, v; g, beta fp32
    chunk = (t * vh * _FP32  # g cumsum
             + t * vh * FLA_CHUNK_SIZE * a  # Ai (the fp32 A is freed by then)
             + t * vh * (dk + 3 * dv) * a  # w, u, v_new, o
             + nt * vh * dv * dk * a)  # h: one state per chunk
    states = n * vh * dv * dk * (state_bytes + _FP32)  # gathered initial state, fp32 final state
    return part1 + conv_and_prep + chunk + states
