"""KV cache bytes per rank.

Per decoder layer a rank stores K and V for every cached token of its KV heads:
    2 × kv_heads_held × head_dim × kv_dtype_bytes × tokens
(Pope et al. 2022, "Efficiently Scaling Transformer Inference", arXiv:2211.05102, §2: KV cache size per token is
2 · n_layers · n_kv_heads · d_head bytes-per-element). Tokens are allocated in whole pages of ``block_size``
tokens per sequence (Kwon et al. 2023, PagedAttention, arXiv:2309.06180; vLLM default block size 16), so a
sequence of T tokens occupies ceil(T / block) × block slots. kv_heads_held is kv/tp, or 1 when tp > kv
(heads replicated; ``shardsim.core.tensors.kv_heads_per_rank``). Only the full-attention layers of the rank's
pipeline stage count: a hybrid's linear-attention layers keep a recurrent state instead (``memory.state``).
"""

from __future__ import annotations

from shardsim.core.model import ModelSpec
from shardsim.core.tensors import kv_heads_per_rank
from shardsim.units import round_up


def kv_tokens_allocated(context: int, batch: int, block_size: int) -> int:
    """Token slots the paged cache allocates for ``batch`` sequences of ``context`` tokens."""
    return round_up(context, block_size) * batch


def kv_bytes_per_token_per_layer(spec: ModelSpec, tp: int, kv_dtype_bytes: int) -> int:
    """K + V of one token in one layer on one TP rank: 2 × kv heads held × head_dim × dtype bytes. The one
    definition every planner, engine profile and review uses."""
    return 2 * kv_heads_per_rank(spec.num_kv_heads, tp) * spec.head_dim * kv_dtype_bytes


def kv_bytes_per_token(spec: ModelSpec, kv_dtype_bytes: int, tp: int = 1, layers: int | None = None) -> int:
    """K + V of one token over ``layers`` full-attention layers (default: all of the model's) on one TP rank."""
    return (spec.attention_layers if layers is None else layers) * kv_bytes_per_token_per_layer(spec, tp, kv_dtype_bytes)


def kv_cache_bytes(spec: ModelSpec, tp: int, kv_dtype_bytes: int, layers: int, context: int, batch: int,
                   block_size: int) -> int:
    """KV cache of one rank holding ``layers`` decoder layers, ``batch`` sequences of ``context`` tokens in pages."""
    return kv_bytes_per_token(spec, kv_dtype_bytes, tp, layers) * kv_tokens_allocated(context, batch, block_size)
