"""Workload: what a model must hold besides its weights (context, batch, formats), validated once per command."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from shardsim.constants import KV_BLOCK_TOKENS, MAX_BATCH, MAX_CONTEXT_TOKENS, STEP_TOKENS
from shardsim.core.model import QuantConfig
from shardsim.errors import ShardsimError
from shardsim.units import canonical_dtype


class Workload(BaseModel):
    """What the model must hold besides its weights; validated once per command.

    ``batch`` sequences of ``context`` tokens are in flight. One forward step computes
    ``step_shape(context, batch)``: each sequence's prompt in chunks of ``prefill_chunk`` tokens (None: whole),
    all sequences at once, capped by the step budget ``step_tokens`` of serving engines (vLLM
    ``max_num_batched_tokens``, SGLang ``chunked_prefill_size``); ``step_tokens`` None is HF ``generate``, which
    prefills batch × prompt in one forward.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    context: int = 8192
    batch: int = 1
    prefill_chunk: int | None = None
    step_tokens: int | None = STEP_TOKENS
    dtype: str = "bf16"
    quant: QuantConfig | None = None  # None: the checkpoint's own quantization_config
    kv_dtype: str = "bf16"
    state_dtype: str | None = None  # hybrids' delta-rule memory: None = the config's mamba_ssm_dtype, else the model's
    block_size: int = KV_BLOCK_TOKENS
    kernels: str = "fused"  # fused (vLLM/SGLang kernels), eager (shardsim's torch backend) or hf (transformers)
    expert_tokens: int | None = None  # eager MoE: tokens one expert gets at most (None: all T, the bound)

    def checked(self) -> "Workload":
        if not 1 <= self.context <= MAX_CONTEXT_TOKENS:
            raise ShardsimError(f"--context {self.context} is out of range; accepted: 1 … {MAX_CONTEXT_TOKENS:,} tokens")
        if not 1 <= self.batch <= MAX_BATCH:
            raise ShardsimError(f"--batch {self.batch} is out of range; accepted: 1 … {MAX_BATCH:,} sequences")
        if self.prefill_chunk is not None and not 1 <= self.prefill_chunk <= MAX_CONTEXT_TOKENS:
            raise ShardsimError(f"prefill chunk {self.prefill_chunk} is out of range; accepted: 1 … {MAX_CONTEXT_TOKENS:,}")
        if self.step_tokens is not None and not 1 <= self.step_tokens <= MAX_CONTEXT_TOKENS:
            raise ShardsimError(f"step budget (--max-num-batched-tokens / --chunked-prefill-size) {self.step_tokens} is "
                                f"out of range; accepted: 1 … {MAX_CONTEXT_TOKENS:,} tokens per forward step")
        if not 1 <= self.block_size <= 4096:
            raise ShardsimError(f"--block-size {self.block_size} is out of range; accepted: 1 … 4096")
        if self.kernels not in ("fused", "eager", "hf"):
            raise ShardsimError(f"kernels {self.kernels!r} is not known; accepted: fused, eager, hf")
        canonical_dtype(self.dtype)
        canonical_dtype(self.kv_dtype, ("bf16", "fp16", "fp32", "fp8"))
        return self


def step_shape(context: int, batch: int, prefill_chunk: int | None, step_tokens: int | None) -> tuple[int, int]:
    """(tokens, sequences) of the largest forward step: T = min(context, chunk) × batch, capped at the step budget;
    the sequences sampled in that step are min(batch, T) (each holds at least one token of the step).
    Sources: vLLM v1/core/sched/scheduler.py@v0.11.0 (``token_budget = max_num_batched_tokens``, one request gets
    at most the remaining budget); SGLang srt/managers/schedule_policy.py@v0.5.2 (``rem_chunk_tokens``);
    HF transformers generation/utils.py (``generate`` runs the whole padded batch × prompt at once)."""
    tokens = (context if prefill_chunk is None else min(context, prefill_chunk)) * batch
    if step_tokens is not None:
        tokens = min(tokens, step_tokens)
    return tokens, min(batch, tokens)
