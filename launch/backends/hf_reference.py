"""The unsharded reference of a hybrid (Qwen3-Next, Qwen3.5 / 3.6): transformers' own model at tp = 1, one causal
pass over prompt + generated tokens, no cache.

shardsim's streaming reference (``serve.reference``) has no Gated-DeltaNet; transformers' has (its torch
gated-delta-rule, chunked over a whole sequence). A sharded run decodes token by token through the recurrent state,
so agreement with this single pass also proves the state carried the sequence (at tp = 1 that is the whole check).
"""

from __future__ import annotations

import torch

from shardsim.launch.backends.hf_tp import load_hf_tp


def hf_reference_logits(checkpoint_dir: str, sequences: list[list[int]], n_positions: int,
                        dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """fp32 logits [batch, n_positions, vocab] at the last ``n_positions`` positions of ``sequences`` (the prompt's
    last token, then each generated token the sharded run fed back); the model computed in ``dtype`` (bf16 as
    served; fp32 to measure the bf16 reference's own noise, ``serve.reference.reference_noise``)."""
    model = load_hf_tp(checkpoint_dir, tp=1, dtype=dtype)
    tokens = torch.tensor(sequences, dtype=torch.long)
    with torch.no_grad():
        out = model(input_ids=tokens, use_cache=False, logits_to_keep=n_positions)
    del model
    return out.logits.float()
