"""The recurrent state of Gated-DeltaNet (linear attention) layers: per sequence, per layer, per TP rank.

A linear-attention layer keeps no KV cache; each running sequence holds a fixed-size state instead:
- the short convolution's last K − 1 inputs (plus one per speculative token): (K − 1 + spec) × conv_dim / tp;
- the delta-rule memory, one key-dim × value-dim matrix per value head: num_value_heads / tp × key_dim × value_dim.
Source: vLLM ``vllm/model_executor/layers/mamba/mamba_utils.py``@v0.10.2
``MambaStateShapeCalculator.gated_delta_net_state_shape`` (``divide`` asserts tp divides conv_dim and the value
heads); the same shapes in SGLang ``python/sglang/srt/configs/mamba_utils.py``@v0.5.4. The conv state takes the
cache dtype (vLLM ``--mamba-cache-dtype``, auto = the model's), the delta-rule memory the SSM dtype (vLLM 0.17.0+
``--mamba-ssm-cache-dtype``, which for Qwen3.5 defaults to the config's ``mamba_ssm_dtype``; ``engines.releases``
holds which release does what).

transformers (``kernels="hf"``) keeps other shapes, cited to v5.25.0: ``cache_utils.py`` ``LinearAttentionLayer``
(L1225-1342) holds per layer a conv state of the full kernel width, [batch, conv_dim, K] (``causal_conv1d_forward``
passes ``conv_kernel_size=conv1d.kernel_size[0]``, ``qwen3_5/modeling_qwen3_5.py`` L316-318 and
``qwen3_next/modeling_qwen3_next.py`` L406-407), in the activations' dtype, and a recurrent state
[batch, nv, dk, dv] in fp32 whatever the config says: the torch gated-delta-rule paths (the only ones on CPU or
without flash-linear-attention) cast q, k, v to fp32 and the cache stores ``zeros_like`` of the fp32 state they return
(``torch_chunk_gated_delta_rule`` L379 / L447, ``torch_recurrent_gated_delta_rule`` L504 / L519). Its TP plan gathers
the linear-attention projections' outputs (``colwise_gather_output`` in ``base_model_tp_plan``), so every rank runs
the whole layer and holds the whole state.
"""

from __future__ import annotations

from functools import lru_cache

from shardsim.core.model import LINEAR_ATTENTION, ModelSpec


def conv_state_bytes(spec: ModelSpec, tp: int, dtype_bytes: int, speculative_tokens: int = 0) -> int:
    """The convolution state of one sequence in one linear-attention layer on one TP rank."""
    la = spec.linear
    return (la.conv_kernel - 1 + speculative_tokens) * (la.conv_dim // tp) * dtype_bytes


def temporal_state_bytes(spec: ModelSpec, tp: int, dtype_bytes: int) -> int:
    """The delta-rule memory of one sequence in one linear-attention layer on one TP rank."""
    la = spec.linear
    return (la.num_value_heads // tp) * la.key_head_dim * la.value_head_dim * dtype_bytes


def state_bytes_per_sequence_per_layer(spec: ModelSpec, tp: int, conv_dtype_bytes: int, ssm_dtype_bytes: int,
                                       speculative_tokens: int = 0) -> int:
    """Both states of one sequence in one linear-attention layer on one TP rank (0 for a model without any)."""
    if spec.linear is None:
        return 0
    return (conv_state_bytes(spec, tp, conv_dtype_bytes, speculative_tokens)
            + temporal_state_bytes(spec, tp, ssm_dtype_bytes))


HF_RECURRENT_STATE_BYTES = 4
"""transformers keeps the delta-rule memory in fp32 (the torch kernels' dtype; see the module docstring)."""


def hf_state_bytes_per_sequence_per_layer(spec: ModelSpec, act_bytes: int) -> int:
    """transformers' state of one sequence in one linear-attention layer, on every rank: K × conv_dim conv state in
    the activations' dtype plus nv × dk × dv fp32 delta-rule memory."""
    if spec.linear is None:
        return 0
    la = spec.linear
    return (la.conv_kernel * la.conv_dim * act_bytes
            + la.num_value_heads * la.key_head_dim * la.value_head_dim * HF_RECURRENT_STATE_BYTES)


def linear_layers_in(spec: ModelSpec, first: int, last: int) -> int:
    """Linear-attention layers among decoder layers first … last (the rest hold KV)."""
    if not spec.layer_types:
        return 0
    prefix = _linear_prefix(spec.layer_types)
    return prefix[last + 1] - prefix[first]


@lru_cache(maxsize=64)
def _linear_prefix(layer_types: tuple[str, ...]) -> tuple[int, ...]:
    """Linear-attention layers among the first i layers, for every i (memoised per model)."""
    prefix = [0]
    for kind in layer_types:
        prefix.append(prefix[-1] + (kind == LINEAR_ATTENTION))
    return tuple(prefix)
