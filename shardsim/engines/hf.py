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

from shardsim.constants import CUDA_CONTEXT_BYTES
from shardsim.core.layout import Layout
from shardsim.core.memory.activations import activation_peak_hf
from shardsim.core.memory.kv_cache import kv_bytes_per_token
from shardsim.core.memory.state import hf_state_bytes_per_sequence_per_layer, linear_layers_in
from shardsim.core.model import ModelSpec, QuantConfig
from shardsim.core.quant import fp8_export_spec
from shardsim.engines.common import EngineRankReport, EngineReport, cublas_workspace_bytes, rank_weights
from shardsim.engines.registry import Engine
from shardsim.engines.releases import resolve
from shardsim.errors import ShardsimError
from shardsim.units import DTYPE_BYTES, GiB


class HfKnobs(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    prompt_tokens: int = 1
    generate_tokens: int = 2048
    batch: int = 1
    engine_version: str | None = None  # the transformers release (None: the newest read, releases.NEWEST_RELEASE)
    load_dtype: str = "given"          # given: from_pretrained(dtype=…); unset: no dtype argument, cast afterwards

    def checked(self) -> "HfKnobs":
        if not 1 <= self.prompt_tokens <= 10_000_000 or not 0 <= self.generate_tokens <= 10_000_000:
            raise ShardsimError("--prompt-tokens must be ≥ 1 and --generate-tokens ≥ 0 (at most 10,000,000)")
        if not 1 <= self.batch <= 100_000:
            raise ShardsimError(f"--batch {self.batch} is out of range; accepted: 1 … 100,000")
        if self.load_dtype not in ("given", "unset"):
            raise ShardsimError(f"--load-dtype {self.load_dtype!r:.40} is not known; accepted: given, unset")
        return self


def load_peak_bytes(spec: ModelSpec, dtype: str, quant: QuantConfig, weights: int, knobs: HfKnobs) -> int:
    """The allocated peak while loading one GPU's weights. With no dtype given before transformers 5.0 the
    unquantized weights arrive in float32 (2 × the bf16 bytes) and ``model.to(dtype)`` converts one parameter at
    a time (``torch.nn.Module._apply`` swaps each parameter's data), so the peak is the fp32 copy plus the largest
    parameter in the target dtype, the vocab embedding (V × H). A V100 log of Qwen3-8B shows it: 29.77 GB while
    loading, 14.88 GB after the cast (the ratio 2.0)."""
    rules = resolve("transformers", knobs.engine_version).rules
    if knobs.load_dtype == "given" or rules.default_load_dtype == "auto" or quant.method != "none" or dtype == "fp32":
        return weights
    return weights * 4 // DTYPE_BYTES[dtype] + spec.vocab_size * spec.hidden_size * DTYPE_BYTES[dtype]


def hf_quant(quant: QuantConfig) -> QuantConfig:
    """transformers' GPTQ QuantLinear always holds g_idx."""
    if quant.method == "gptq":
        return quant.model_copy(update={"desc_act": True})
    return quant


def _oom_at(free: int, weights: int, fixed: int, per_token: int, batch: int, prompt: int, total: int) -> int | None:
    """The first token count (prompt + generated) whose KV cache no longer fits ``free``, or None."""
    room = free - weights - fixed
    if per_token * batch * total <= room:
        return None
    return max(prompt, room // (per_token * batch) + 1)


def predict_hf(spec: ModelSpec, layout: Layout, compute_capability: str | None, dtype: str, quant: QuantConfig,
               knobs: HfKnobs, capacity_bytes: int | None = None) -> EngineReport:
    knobs = knobs.checked()
    a = DTYPE_BYTES[dtype]
    total_tokens = knobs.prompt_tokens + knobs.generate_tokens
    cublas = cublas_workspace_bytes(compute_capability)
    ranks, cache = [], []  # cache: (KV bytes per token, state bytes of the batch) per rank
    for held in rank_weights(spec, layout, dtype, hf_quant(quant)):
        rank, layers, weights = held.rank, held.layers, held.weight_bytes
        # a hybrid's linear-attention layers keep no KV but a fixed state per sequence, in transformers' shapes
        # (``core.memory.state.hf_state_bytes_per_sequence_per_layer``: K conv columns, fp32 delta-rule memory)
        linear = linear_layers_in(spec, held.first_layer, held.last_layer)
        per_token = kv_bytes_per_token(spec, a, layout.tp, layers - linear)
        state = linear * hf_state_bytes_per_sequence_per_layer(spec, a) * knobs.batch if linear else 0
        kv_final = per_token * total_tokens * knobs.batch + state
        cache.append((per_token, state))
        logits = knobs.batch * spec.vocab_size * (a + 4)
        peak = weights + kv_final + cublas + logits
        prefill_tokens = knobs.prompt_tokens * knobs.batch
        moe = spec.is_moe
        prefill = weights + per_token * prefill_tokens + state + cublas + activation_peak_hf(
            spec, layout.tp, layout.etp, prefill_tokens, knobs.batch, moe, not moe, True)
        ranks.append(EngineRankReport(rank=rank, layers=layers, model_loading_bytes=weights, kv_cache_bytes=kv_final,
                                      peak_allocated_bytes=peak, used_bytes=max(peak, prefill)))
        ranks[-1].activation_peak_bytes = prefill - weights - per_token * prefill_tokens - state - cublas
    total = sum(r.peak_allocated_bytes for r in ranks)
    refusal = _hf_refusal(spec, dtype, quant, knobs, ranks, cache, capacity_bytes, cublas)
    release = resolve("transformers", knobs.engine_version)
    return EngineReport(
        engine="hf", version=f"transformers {release.version}", knobs=knobs.model_dump(),
        ranks=ranks, starts=refusal is None, refusal=refusal,
        peak_allocated_bytes=total, kv_cache_tokens=total_tokens * knobs.batch,
        error_bands={"peak_allocated_bytes": 0.05},
        notes=[f"prefill peak by the code path: {sum(r.used_bytes for r in ranks):,} B summed over GPUs "
               "(not in the published Qwen benchmark figures)"] + _load_note(spec, dtype, quant, knobs, ranks)
        + [n for n in (release.note, release.warning) if n],
    )


def _load_note(spec: ModelSpec, dtype: str, quant: QuantConfig, knobs: HfKnobs, ranks: list) -> list[str]:
    load = max(load_peak_bytes(spec, dtype, quant, r.model_loading_bytes, knobs) for r in ranks)
    weights = max(r.model_loading_bytes for r in ranks)
    if load == weights:
        return []
    return [f"loading peaks at {load / GiB:.2f} GiB per GPU: the float32 copy before the cast to {dtype} "
            f"({weights / GiB:.2f} GiB after it); pass dtype= to from_pretrained to load {dtype} directly"]


def _hf_refusal(spec: ModelSpec, dtype: str, quant: QuantConfig, knobs: HfKnobs, ranks: list, cache: list,
                capacity_bytes: int | None, cublas: int) -> str | None:
    """Where a GPU runs out of memory, if it does: loading (the fp32 copy), the prefill, or the Nth token
    (``cache``: each rank's KV bytes per token and its sequences' fixed state)."""
    if capacity_bytes is None:
        return None
    free = capacity_bytes - CUDA_CONTEXT_BYTES
    a = DTYPE_BYTES[dtype]
    for r, (per_token, state) in zip(ranks, cache):
        load = load_peak_bytes(spec, dtype, quant, r.model_loading_bytes, knobs)
        if load > free:
            return (f"CUDA out of memory while loading on GPU {r.rank}: {load / GiB:.2f} GiB (weights in float32 "
                    f"before the cast: from_pretrained without a dtype) of {free / GiB:.2f} GiB free")
        prefill = (r.model_loading_bytes + per_token * knobs.prompt_tokens * knobs.batch + state + cublas
                   + r.activation_peak_bytes)
        if prefill > free:
            return (f"CUDA out of memory in the prefill on GPU {r.rank}: {prefill / GiB:.2f} GiB of "
                    f"{free / GiB:.2f} GiB free ({knobs.batch} × {knobs.prompt_tokens:,} prompt tokens at once)")
        fixed = cublas + knobs.batch * spec.vocab_size * (a + 4) + state
        total = knobs.prompt_tokens + knobs.generate_tokens
        at = _oom_at(free, r.model_loading_bytes, fixed, per_token, knobs.batch, knobs.prompt_tokens, total)
        if at is not None:
            return (f"CUDA out of memory at token {at:,} on GPU {r.rank}: the KV cache of {knobs.batch} × {at:,} "
                    f"tokens no longer fits beside {r.model_loading_bytes / GiB:.2f} GiB of weights in "
                    f"{free / GiB:.2f} GiB free")
    return None


def predict(request) -> EngineReport:
    """``predict_hf`` for a ``requests.ServeRequest``."""
    hw = request.hardware
    spec = fp8_export_spec(request.model, request.quant, loads_lm_head=True)  # transformers loads the export's lm_head
    return predict_hf(spec, request.layout, hw.compute_capability, request.workload.dtype, request.quant,
                      request.engine.knobs, hw.capacity_bytes)


ENGINE = Engine("hf", HfKnobs, predict)
