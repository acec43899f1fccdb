"""The time of one step on one GPU: a roofline per op group, with the fitted efficiencies and overheads.

Roofline (Williams, Waterman, Patterson 2009, "Roofline: an insightful visual performance model", CACM 52(4)): an
op group takes max(FLOPs / achieved FLOP/s, bytes / achieved bandwidth). Taken per group — the matmuls (weights
read), attention (KV and state read and written), the rest (activations, embedding rows, logits: bytes only) —
and summed, since the groups run one after the other. Achieved = peak × efficiency; the efficiencies and the
overheads (per step, per sampled sequence, per layer and MoE layer a rank runs) are the only fitted values
(``speed.fitted``). The per-layer floor stands for what a roofline of bytes and FLOPs misses when a layer's
dozen-odd small kernels are launched one by one — microseconds each, however little a kernel reads — which is why
a 0.6B model does not decode 10× faster than an 8B one; a step of decodes alone that vLLM replays as one whole
CUDA graph (its FULL graphs from 0.11, ``pipeline``) has none (vLLM's fitted values are fitted that way). Peaks are the GPU catalog's datasheet figures
(``cluster_specs/gpus.yaml``: ``bf16_tflops`` / ``fp16_tflops`` dense, ``memory_bandwidth_GBps``). An fp8
checkpoint's matmuls run at bf16's achieved rate times the engine's fitted fp8 speedup (``Efficiency.compute_of``);
its attention runs in 16 bits at bf16's.
"""

from __future__ import annotations

from dataclasses import dataclass

from shardsim.errors import ShardsimError

FP8_DENSE_OVER_BF16 = 2.0
"""fp8 tensor-core peak over bf16, dense, on the GPUs with fp8 (NVIDIA H100 datasheet: FP8 3,958 vs BF16 1,979
TFLOPS with sparsity, SXM; L40S datasheet: 1,466 vs 733; Ada whitepaper, RTX 4090: 660.6 vs 330.3): fp8
block-quantized checkpoints run their matmuls in fp8 (vLLM ``Fp8LinearMethod`` with block scales: W8A8,
activations quantized per token group)."""


@dataclass(frozen=True, slots=True)
class GpuPeaks:
    """One GPU's dense peak for the step's matmul dtype and its memory bandwidth, with where they come from."""

    gpu: str
    flops: float  # FLOP/s
    dtype: str
    bandwidth: float  # bytes/s
    source: str


def gpu_peaks(gpu, dtype: str, quant_method: str) -> GpuPeaks:
    """The peaks of ``gpu`` (a ``hardware.specs.GPUSpec``) for weights of ``dtype`` stored as ``quant_method``:
    fp8 checkpoints on fp8 GPUs compute in fp8; GPTQ / AWQ (W4A16, W8A16) and bf16 / fp16 in 16 bits; a GPU
    without bf16 (V100, T4) computes in fp16. Refused for a GPU whose figures the catalog does not hold."""
    half = gpu.fp16_tflops if dtype == "fp16" or gpu.bf16_tflops == 0 else gpu.bf16_tflops
    half_name = "fp16" if dtype == "fp16" or gpu.bf16_tflops == 0 else "bf16"
    if half <= 0 or gpu.memory_bandwidth_GBps <= 0:
        raise ShardsimError(f"speed needs the GPU's FLOP/s and memory bandwidth, which the catalog does not hold for "
                            f"{gpu.name}; give --gpu NAME or a cluster of a catalog GPU (shardsim gpus)")
    tflops, name, why = half, half_name, f"catalog {half_name}_tflops {half:g} (dense)"
    if quant_method == "fp8" and gpu.fp8:
        tflops, name, why = half * FP8_DENSE_OVER_BF16, "fp8", f"2 × catalog {half_name}_tflops {half:g} (fp8 dense)"
    return GpuPeaks(gpu.name, tflops * 1e12, name, gpu.memory_bandwidth_GBps * 1e9,
                    f"{why}; catalog memory_bandwidth_GBps {gpu.memory_bandwidth_GBps:g}")


@dataclass(frozen=True, slots=True)
class Efficiency:
    """The fitted values one engine's step times use (``speed.fitted``)."""

    compute: float  # achieved / peak FLOP/s in compute-bound groups
    memory: float  # achieved / peak bandwidth in memory-bound groups
    step_overhead_s: float  # per engine step: scheduling, launches, host sync
    ttft_overhead_s: float  # per request: the API server's tokenization, queueing into the engine, first detokenize
    seq_overhead_s: float = 0.0  # per sequence sampled in a step: sampler, detokenizer, streaming to the client
    layer_overhead_s: float = 0.0  # per layer a rank runs in a step: the floor of its small kernels and their gaps
    moe_layer_overhead_s: float = 0.0  # more per MoE layer: routing, sort/align and the grouped GEMMs' launches
    fp8_speedup: float | None = None  # fp8 matmuls' achieved FLOP/s over bf16's (None: the peaks' ratio)

    def compute_of(self, dtype: str) -> float:
        """The achieved share of the ``dtype`` peak (``GpuPeaks``) of the matmuls: ``compute`` in 16 bits; in fp8,
        the fitted speedup over bf16 at bf16's efficiency, ``compute`` × speedup / ``FP8_DENSE_OVER_BF16`` (without a
        fitted speedup, the datasheets' 2×: ``compute`` of the fp8 peak)."""
        if dtype != "fp8" or self.fp8_speedup is None:
            return self.compute
        return self.compute * self.fp8_speedup / FP8_DENSE_OVER_BF16


@dataclass(frozen=True, slots=True)
class GroupTime:
    name: str
    flops: float
    nbytes: float
    compute_s: float
    memory_s: float

    @property
    def seconds(self) -> float:
        return max(self.compute_s, self.memory_s)

    @property
    def bound(self) -> str:
        return "compute" if self.compute_s > self.memory_s else "memory"


def group_times(work, peaks: GpuPeaks, eff: Efficiency) -> list[GroupTime]:
    """The roofline of each op group of a ``work.StepWork``. The matmuls run in the peaks' dtype at its efficiency
    (``Efficiency.compute_of``); attention and the recurrence in 16 bits whatever the weights (FlashAttention /
    FlashInfer and the Gated DeltaNet kernels take bf16 queries; an fp8 checkpoint's fp8 is its linear layers',
    vLLM ``Fp8LinearMethod``), at the 16-bit peak and efficiency."""
    byte_rate = peaks.bandwidth * eff.memory
    matmul_s = work.matmul_flops / (peaks.flops * eff.compute_of(peaks.dtype))
    half_rate = (peaks.flops / FP8_DENSE_OVER_BF16 if peaks.dtype == "fp8" else peaks.flops) * eff.compute
    return [GroupTime("matmul", work.matmul_flops, work.matmul_bytes, matmul_s, work.matmul_bytes / byte_rate),
            GroupTime("attention", work.attention_flops, work.attention_bytes, work.attention_flops / half_rate,
                      work.attention_bytes / byte_rate),
            GroupTime("other", 0.0, work.other_bytes, 0.0, work.other_bytes / byte_rate)]


def gpu_seconds(work, peaks: GpuPeaks, eff: Efficiency) -> float:
    """One rank's GPU time for a step: the sum of its op groups' rooflines."""
    return sum(g.seconds for g in group_times(work, peaks, eff))
