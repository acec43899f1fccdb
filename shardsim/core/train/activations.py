"""Activations of training one micro-batch, per rank, from first principles for Qwen3 (bf16, a = 2 B).

What each layer keeps for its backward (Korthikanti et al. 2022, arXiv:2205.05198, §4; here with Qwen3's GQA,
q/k norms and SwiGLU instead of GPT's MHA and GeLU MLP), T = micro_batch × seq_len / cp tokens, h hidden,
q / kv the head dims of the heads a TP rank holds, I / t the MLP width per TP rank:
- input RMSNorm: its input, T·h·a (and an fp32 rstd per token, T·4);
- q/k/v projection: its input (the normed hidden state), T·h·a;
- q_norm, k_norm: their inputs T·(q + kv)·a;
- attention: q, k (roped) and v, T·(q + 2kv)·a, its output T·q·a and the softmax log-sum-exp, T·heads·4 (flash
  attention, Dao 2022: no s² score matrix; eager attention adds the T·s·heads scores and probabilities, 2·a + 1
  dropout mask byte per element, Korthikanti's 5as/h term);
- post-attention RMSNorm input and the MLP input, 2·T·h·a;
- SwiGLU MLP: gate and up outputs, SiLU(gate) and their product, 4·T·(I/t)·a (HF ``Qwen3MLP``:
  down(act(gate(x)) * up(x)));
- MoE layer: router logits T·E·4 and per routed token-expert pair (T·k of them, over the EP ranks as routed) its
  input copy and the expert's SwiGLU, h·a + 4·I_e·a; dropless routing is priced as balanced (T·k·E_local/E
  pairs on a rank), a capacity factor c caps each expert at c·T·k/E tokens.
Sequence parallel divides the T·h terms by t (Korthikanti §4.2.2). Recompute "selective" drops the attention
core (its output and log-sum-exp; Korthikanti §5), "full" keeps only each layer's input and re-runs one layer in
backward. Pipeline 1F1B keeps pp − stage micro-batches in flight on a stage (Narayanan et al. 2021,
arXiv:2104.04473); interleaved with v chunks multiplies stage 0's by 1 + (pp − 1)/(pp·v).
Logits and loss (last stage, Megatron): bf16 logits T·(V/t)·2, their fp32 upcast 4 and the log-softmax the cross
entropy keeps 4, and in backward their fp32 and bf16 gradients, 6 B more: 16 B per logit at the peak.

DeepSpeed, FSDP and DDP train the transformers model as it is (modeling_qwen3.py@v5.24.0, no fused kernels), whose
autograd keeps more (``hf_layer_bytes``, measured exactly with ``torch.autograd.graph.saved_tensors_hooks``): each
RMSNorm its fp32 input, fp32 rsqrt, bf16 normed value and bf16 output, 4·T·h + 4·T + 2·T·h + 2·T·h; q_norm/k_norm
the same per head, 6·T·(q + kv) + 4·T·(heads + kv heads); SDPA q, k, v, its output and the log-sum-exp
4·T·q + 4·T·kv + 4·T·heads (eager attention instead keeps each score's fp32 softmax and its bf16 copy, 6 B per
score — no dropout mask, Qwen3's attention_dropout is 0 — and k and v repeated to every query head by
``repeat_kv``, 4·T·(q − kv) more); the SwiGLU MLP 8·T·I; a MoE block (transformers integrations/moe.py
``grouped_mm_experts_forward``, the default experts implementation, and modeling_qwen3_moe.py
``Qwen3MoeTopKRouter`` with Qwen3's norm_topk_prob) the router's fp32 softmax 4·T·E, its top-k ids 8·T·k, the
renormalisation's fp32 copy and sum 4·T·k + 4·T, the int32 group offsets 4·E, and per routed token-expert pair
(S = T·k) the gathered input and the down projection's output (kept by the routing-weight product) 2·2·h, the
SwiGLU 8·I, the pair's bf16 weight 2 and three int64 permutation indices 24. The loss keeps the fp32
log-softmax, 4·T·V, beside the final norm's 8·T·h + 4·T, the rotary cos/sin 4·seq·hd (one row of position ids)
and the int64 token ids and targets 8·T each; in backward its fp32 gradient and the gradient of its input, 8·T·V
more:
12 B per logit at the peak (transformers loss/loss_utils.py ``ForCausalLMLoss``: logits.float(); torch
``cross_entropy`` = log_softmax + nll_loss).

A hybrid (Qwen3-Next, Qwen3.5 / 3.6) is priced layer by layer by its kind, with its own stage tail
(``deltanet_activations``: Gated-DeltaNet and gated attention layers, zero-centred norms, the shared expert).
"""

from __future__ import annotations

from dataclasses import dataclass

from shardsim.core.model import ModelSpec
from shardsim.core.tensors import kv_heads_per_rank
from shardsim.core.train.choices import TrainSetup
from shardsim.core.train.deltanet_activations import hybrid_layer_bytes, hybrid_tail_bytes
from shardsim.core.train.frameworks import FRAMEWORKS
from shardsim.core.tensors import numel_of
from shardsim.core.train.frameworks.deepspeed import (DS_MAX_LIVE_ELEMENTS, DS_MAX_REUSE_ELEMENTS,
                                                      DS_PREFETCH_BUCKET_ELEMENTS)
from shardsim.core.train.params import hf_parameter_shapes, is_moe_layer

A = 2  # bf16 activations
LOGIT_PEAK_BYTES = 16
HF_LOGIT_SAVED_BYTES = 4
HF_LOGIT_PEAK_BYTES = 12


@dataclass(frozen=True, slots=True)
class TrainActivations:
    stage_bytes: int      # what the stage's layers keep for backward, one micro-batch
    in_flight: int        # micro-batches alive at once on this stage
    recompute_extra: int  # full recompute: one layer's activations rebuilt during backward
    logits: int           # the loss's peak (last stage)
    saved_tail: int = 0   # what the last stage keeps beside the layers at the end of forward (loss, final norm)
    retained: int = 0     # gathered parameters the framework released that autograd still holds (ZeRO-3 experts)

    @property
    def peak(self) -> int:
        return self.stage_bytes * self.in_flight + self.recompute_extra + self.logits + self.retained

    @property
    def saved(self) -> int:
        """Bytes kept for backward at the end of one micro-batch's forward (what saved_tensors_hooks see)."""
        return self.stage_bytes + self.saved_tail + self.retained

    @property
    def saved_in_flight(self) -> int:
        """Bytes kept for backward at the schedule's fullest moment: every micro-batch in flight keeps ``saved``
        (what ``LiveSavedBytes`` sees over a pipeline step; ``saved`` when nothing is pipelined)."""
        return self.saved * self.in_flight


def hf_layer_bytes(spec: ModelSpec, s: TrainSetup, moe: bool, tp: int = 1) -> int:
    """What a transformers Qwen3 decoder layer keeps for backward (rules in the module docstring); under
    torch-native TP the heads and the MLP width a rank holds are 1/tp, the hidden-size terms whole."""
    t, h, hd = s.tokens(), spec.hidden_size, spec.head_dim
    heads, kvh = spec.num_heads // tp, kv_heads_per_rank(spec.num_kv_heads, tp)
    q, kv = heads * hd, kvh * hd
    norms = 2 * (8 * t * h + 4 * t)
    qk = 6 * t * (q + kv) + 4 * t * (heads + kvh)
    attention = 4 * t * q + 4 * t * kv
    core = 4 * t * heads if s.flash_attention else t * s.seq_len * heads * 6 + 4 * t * (q - kv)
    attention += core
    if s.recompute == "selective":
        attention -= 2 * t * q + core
    if moe:
        e, k, ie = spec.num_experts, spec.num_experts_per_tok, spec.moe_intermediate_size
        pairs = t * k if s.capacity_factor is None else min(t * k, int(s.capacity_factor * t * k / e) * e)
        router = t * e * 4 + t * k * (8 + 4) + t * 4        # softmax, top-k ids, the renormalised weights
        mlp = router + e * 4 + pairs * (4 * h + 8 * ie + 2 + 3 * 8)
    else:
        mlp = 8 * t * (spec.intermediate_size // tp)
    return norms + qk + attention + mlp


def layer_bytes(spec: ModelSpec, s: TrainSetup, tp: int, ep: int, moe: bool, cp: int = 1) -> int:
    """What one decoder layer keeps for backward for one micro-batch on one rank."""
    t = s.tokens(cp)
    h, hd = spec.hidden_size, spec.head_dim
    q = spec.num_heads // tp * hd
    kv = kv_heads_per_rank(spec.num_kv_heads, tp) * hd
    heads = spec.num_heads // tp
    sp = tp if s.sequence_parallel else 1
    hidden_terms = 4 * t * h * A // sp + t * 4
    attention = t * (q + kv) * A + t * (q + 2 * kv) * A
    core = t * q * A + t * heads * 4
    if not s.flash_attention:
        core += t * (s.seq_len // cp) * heads * (2 * A + 1)
    if s.recompute == "selective":
        core = 0
    if moe:
        e, k, ie = spec.num_experts, spec.num_experts_per_tok, spec.moe_intermediate_size
        local = -(-e // ep) if ep > 1 else e
        pairs = t * k * local // e
        if s.capacity_factor is not None:
            pairs = min(pairs, int(s.capacity_factor * t * k / e) * local)
        etp = tp // ep if ep <= tp else 1
        mlp = t * e * 4 + pairs * (h * A + 4 * (ie // etp) * A)
    else:
        mlp = 4 * t * (spec.intermediate_size // tp) * A
    return hidden_terms + attention + core + mlp


def zero3_retained_expert_bytes(spec: ModelSpec, s: TrainSetup, layers: int,
                                max_reuse: int = DS_MAX_REUSE_ELEMENTS, prefetch: int = DS_PREFETCH_BUCKET_ELEMENTS,
                                max_live: int = DS_MAX_LIVE_ELEMENTS) -> int:
    """Experts ZeRO-3 gathers and releases during the forward that autograd keeps alive until their backward.

    transformers' grouped_mm experts (integrations/moe.py ``_grouped_linear``) save a view of the gathered
    ``gate_up_proj`` and ``down_proj`` for backward; ZeRO-3 releases a parameter by ``param.data = torch.empty(0)``
    (partition_parameters.py ``free_param``), which frees nothing while that view lives, so a released layer's
    experts stay whole, in bf16, until its backward. What ZeRO-3 does not release after a module's forward
    (partitioned_param_coordinator.py ``__params_to_release``): a parameter met again within
    ``stage3_max_reuse_distance`` elements of the modules to come, or one its prefetcher has already fetched for a
    later use (it looks ``stage3_prefetch_bucket_size`` elements ahead, within ``stage3_max_live_parameters``). A
    layer's experts are met again first in its own backward, after the later layers twice (forward and backward)
    and the final norm and lm_head once. Measured on CPU: Qwen3-30B-A3B, 2 layers, ZeRO-3 over 2 ranks (layer 0
    released: 1,207,959,552 B), and a small MoE at four reuse / prefetch settings
    (tests/validation/test_train_backends.py). Full fine-tuning without full recompute."""
    if not (FRAMEWORKS[s.framework].retains_released_experts(s) and spec.is_moe and not s.lora
            and s.recompute != "full"):
        return 0
    h, e, ie = spec.hidden_size, spec.num_experts, spec.moe_intermediate_size
    head = spec.vocab_size * h + h
    window = max(max_reuse, min(prefetch, max_live))
    retained, later = 0, 0
    for layer in reversed(range(layers)):
        if is_moe_layer(spec, layer) and 2 * later + head >= window:
            retained += 2 * e * 3 * ie * h
        later += sum(numel_of(shape) for shape in hf_parameter_shapes(spec, layer, layer, False, False))
    return retained


def in_flight(s: TrainSetup, pp: int, stage: int) -> int:
    """Micro-batches whose activations a stage holds at once (1F1B; at most the micro-batches of a step)."""
    if pp == 1:
        return 1
    held = min(pp - stage, max(s.grad_accum, 1))
    if s.schedule == "interleaved" and stage == 0:
        return -(-held * (pp * s.virtual_stages + pp - 1) // (pp * s.virtual_stages))
    return held


def train_activations(spec: ModelSpec, s: TrainSetup, tp: int, ep: int, pp: int, stage: int, layers: int,
                      moe_layers: int, is_last: bool, cp: int = 1, first_layer: int = 0) -> TrainActivations:
    """The activation peak of one rank of ``stage`` holding ``layers`` decoder layers from ``first_layer`` on
    (``moe_layers`` of them MoE); a hybrid's layers each by their kind (``deltanet_activations``)."""
    if spec.linear is not None:
        return _hybrid_activations(spec, s, pp, stage, first_layer, layers, is_last)
    dense = layers - moe_layers
    framework = FRAMEWORKS[s.framework]
    hf = framework.runs_transformers_model
    per_dense = (hf_layer_bytes(spec, s, False, tp) if hf else layer_bytes(spec, s, tp, ep, False, cp)) if dense else 0
    per_moe = (hf_layer_bytes(spec, s, True, tp) if hf else layer_bytes(spec, s, tp, ep, True, cp)) if moe_layers else 0
    flights = in_flight(s, pp, stage)
    sp = tp if s.sequence_parallel else 1
    # torch-native TP gathers the logits (lm_head ColwiseParallel with replicated output): the loss sees the whole
    # vocabulary; Megatron's vocab-parallel cross entropy keeps the rank's V/t columns
    vocab = spec.vocab_size if framework.gathers_logits else -(-spec.vocab_size // tp)
    logits = s.tokens(cp) * vocab * (HF_LOGIT_PEAK_BYTES if hf else LOGIT_PEAK_BYTES) if is_last else 0
    tail = 0
    if hf and is_last:
        tail = s.tokens(cp) * vocab * HF_LOGIT_SAVED_BYTES + 8 * s.tokens(cp) * spec.hidden_size + 4 * s.tokens(cp)
    if hf:
        tail += 4 * (s.seq_len // cp) * spec.head_dim   # rotary cos/sin, [1, seq, hd] (position ids of one row)
        tail += 8 * s.tokens(cp) * ((stage == 0) + is_last)   # int64 token ids (embedding) and targets (nll_loss)
    if s.recompute == "full":
        kept_input = s.tokens(cp) * spec.hidden_size * A // sp
        return TrainActivations(kept_input * layers, flights, max(per_dense, per_moe), logits, tail)
    retained = zero3_retained_expert_bytes(spec, s, layers) if hf else 0
    return TrainActivations(per_dense * dense + per_moe * moe_layers, flights, 0, logits, tail, retained)


def _hybrid_activations(spec: ModelSpec, s: TrainSetup, pp: int, stage: int, first: int, layers: int,
                        is_last: bool) -> TrainActivations:
    """A hybrid trained as the transformers model (tp = cp = 1: ``setup.check_setup``): every layer by its kind, the
    stage's tail (``deltanet_activations.hybrid_tail_bytes``), the loss's peak as Qwen3's, ZeRO-3's retained experts."""
    last = first + layers - 1
    per_layer = [hybrid_layer_bytes(spec, s, layer) for layer in range(first, last + 1)]
    logits = s.tokens() * spec.vocab_size * HF_LOGIT_PEAK_BYTES if is_last else 0
    tail = hybrid_tail_bytes(spec, s, first, last, stage == 0, is_last)
    if s.recompute == "full":
        return TrainActivations(s.tokens() * spec.hidden_size * A * layers, in_flight(s, pp, stage),
                                max(per_layer, default=0), logits, tail)
    retained = zero3_retained_expert_bytes(spec, s, layers)
    return TrainActivations(sum(per_layer), in_flight(s, pp, stage), 0, logits, tail, retained)
