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
"""

from __future__ import annotations

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


def linear_layers_in(spec: ModelSpec, first: int, last: int) -> int:
    """Linear-attention layers among decoder layers first … last (the rest hold KV)."""
    return sum(1 for layer in range(first, last + 1) if spec.layer_kind(layer) == LINEAR_ATTENTION)
