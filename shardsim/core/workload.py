"""Workload: what a model must hold besides its weights (context, batch, formats), validated once per command."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from shardsim.constants import KV_BLOCK_TOKENS, MAX_BATCH, MAX_CONTEXT_TOKENS, PREFILL_CHUNK_TOKENS
from shardsim.core.model import QuantConfig
from shardsim.errors import ShardsimError
from shardsim.units import canonical_dtype


class Workload(BaseModel):
    """What the model must hold besides its weights; validated once per command."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    context: int = 8192
    batch: int = 1
    prefill_chunk: int = PREFILL_CHUNK_TOKENS
    dtype: str = "bf16"
    quant: QuantConfig | None = None  # None: the checkpoint's own quantization_config
    kv_dtype: str = "bf16"
    block_size: int = KV_BLOCK_TOKENS
    kernels: str = "fused"  # fused (vLLM/SGLang kernels), eager (shardsim's torch backend) or hf (transformers)
    expert_tokens: int | None = None  # eager MoE: tokens one expert gets at most (None: all T, the bound)

    def checked(self) -> "Workload":
        if not 1 <= self.context <= MAX_CONTEXT_TOKENS:
            raise ShardsimError(f"--context {self.context} is out of range; accepted: 1 … {MAX_CONTEXT_TOKENS:,} tokens")
        if not 1 <= self.batch <= MAX_BATCH:
            raise ShardsimError(f"--batch {self.batch} is out of range; accepted: 1 … {MAX_BATCH:,} sequences")
        if not 1 <= self.prefill_chunk <= MAX_CONTEXT_TOKENS:
            raise ShardsimError(f"--prefill-chunk {self.prefill_chunk} is out of range; accepted: 1 … {MAX_CONTEXT_TOKENS:,}")
        if not 1 <= self.block_size <= 4096:
            raise ShardsimError(f"--block-size {self.block_size} is out of range; accepted: 1 … 4096")
        if self.kernels not in ("fused", "eager", "hf"):
            raise ShardsimError(f"kernels {self.kernels!r} is not known; accepted: fused, eager, hf")
        canonical_dtype(self.dtype)
        canonical_dtype(self.kv_dtype, ("bf16", "fp16", "fp32", "fp8"))
        return self
