"""HF transformers ``generate``: the peak ``torch.cuda.max_memory_allocated`` of one generation.

Sources: transformers ``generation/utils.py`` (``generate`` asks the model for the last position's logits only,
``logits_to_keep = 1``; greedy/sampling steps keep an fp32 copy of them), ``cache_utils.DynamicCache`` (grows by
``torch.cat`` to exactly prompt + generated tokens, no pages), and PyTorch's cuBLAS workspace, allocated through
the caching allocator on the first matmul (32 MiB + 1 MiB on Hopper, 8.125 MiB + 1 MiB before;
aten/src/ATen/cuda/CublasHandlePool.cpp).

Two figures are given. ``peak_allocated_bytes``: weights + the final KV cache + cuBLAS workspace + the last
step's logits in bf16 and fp32; the Qwen3 speed
benchmark's published peaks (transformers 4.51.3, H20) match it for every input length. ``prefill_peak_bytes``:
weights + the prompt's KV cache + the prefill's activation peak (``activation_peak_hf``), what the code path
implies during a long prefill; the published table does not show it, so it is reported beside, not used.
Quantized checkpoints as transformers holds them: FP8 ``FP8Linear`` keeps ``weight_scale_inv`` in fp32; GPTQ
``QuantLinear`` keeps ``qweight``, ``qzeros``, ``scales`` and ``g_idx``.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from shardsim.core.layout import Layout
from shardsim.core.memory.activations import activation_peak_hf
from shardsim.core.memory.kv_cache import kv_bytes_per_token
from shardsim.core.model import ModelSpec, QuantConfig
from shardsim.engines.common import EngineRankReport, EngineReport, cublas_workspace_bytes, rank_weights
from shardsim.errors import ShardsimError
from shardsim.units import DTYPE_BYTES


class HfKnobs(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt_tokens: int = 1
    generate_tokens: int = 2048
    batch: int = 1

    def checked(self) -> "HfKnobs":
        if not 1 <= self.prompt_tokens <= 10_000_000 or not 0 <= self.generate_tokens <= 10_000_000:
            raise ShardsimError("--prompt-tokens must be ≥ 1 and --generate-tokens ≥ 0 (at most 10,000,000)")
        if not 1 <= self.batch <= 100_000:
            raise ShardsimError(f"--batch {self.batch} is out of range; accepted: 1 … 100,000")
        return self


def hf_quant(quant: QuantConfig) -> QuantConfig:
    """transformers' GPTQ QuantLinear always holds g_idx."""
    if quant.method == "gptq":
        return quant.model_copy(update={"desc_act": True})
    return quant


def predict_hf(spec: ModelSpec, layout: Layout, compute_capability: str | None, dtype: str, quant: QuantConfig,
               knobs: HfKnobs) -> EngineReport:
    knobs = knobs.checked()
    a = DTYPE_BYTES[dtype]
    total_tokens = knobs.prompt_tokens + knobs.generate_tokens
    cublas = cublas_workspace_bytes(compute_capability)
    ranks = []
    for held in rank_weights(spec, layout, dtype, hf_quant(quant)):
        rank, layers, weights = held.rank, held.layers, held.weight_bytes
        per_token = kv_bytes_per_token(spec, a, layout.tp, layers)
        kv_final = per_token * total_tokens * knobs.batch
        logits = knobs.batch * spec.vocab_size * (a + 4)
        peak = weights + kv_final + cublas + logits
        prefill_tokens = knobs.prompt_tokens * knobs.batch
        moe = spec.is_moe
        prefill = weights + per_token * prefill_tokens + cublas + activation_peak_hf(
            spec, layout.tp, layout.etp, prefill_tokens, knobs.batch, moe, not moe, True)
        ranks.append(EngineRankReport(rank=rank, layers=layers, model_loading_bytes=weights, kv_cache_bytes=kv_final,
                                      peak_allocated_bytes=peak, used_bytes=max(peak, prefill)))
        ranks[-1].activation_peak_bytes = prefill - weights - per_token * prefill_tokens - cublas
    total = sum(r.peak_allocated_bytes for r in ranks)
    return EngineReport(
        engine="hf", version="transformers 4.51–5", knobs=knobs.model_dump(), ranks=ranks, starts=True,
        peak_allocated_bytes=total, kv_cache_tokens=total_tokens * knobs.batch,
        error_bands={"peak_allocated_bytes": 0.05},
        notes=[f"prefill peak by the code path: {sum(r.used_bytes for r in ranks):,} B summed over GPUs "
               "(not in the published Qwen benchmark figures)"],
    )
