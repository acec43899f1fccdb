"""What vLLM's start-up profile charges besides the weights, the dummy forward and the non-torch baseline, by release
(``VllmRules``, each rule cited there): the CUDA-graph memory its worker estimates, the dummy sampler, the buffers
the profile leaves behind (fused-MoE workspaces, Model Runner V2's sampler state, pipeline stages' intermediate
tensors) and a first start's torch.compile autotuning. Each term has its shapes here and a line in the report's
notes; ``engines/vllm.py`` adds them up.

CUDA graphs, per rank (exact: which sizes and how many graphs; estimated: the driver's bytes per graph):
- capture sizes: ``capture_sizes``; PIECEWISE graphs for every size, one per piece between the layers that split the
  graph (attention and linear attention: layers + 1 pieces), and with ``full_and_piecewise`` one FULL graph per
  decode size ≤ max_num_seqs (uniform decode batches, v1/cudagraph_dispatcher.py@v0.11.0).
- the pool: graphs share one memory pool and are captured largest first, so the pool holds the largest size's
  forward transient once (``activation_peak`` at that many tokens, the outputs kept as weak references,
  compilation/cuda_graph.py); every graph adds what the driver keeps for its executable graph, which depends on the
  driver and CUDA runtime, not on the model's shapes: ``VLLM_CUDA_GRAPH_BYTES_PER_GRAPH``, fitted (shardsim/fitted.py).
- what vLLM subtracts is its own estimate, measured at run time: V1 (gpu_model_runner.py@v0.18.0 / @v0.20.0
  ``profile_cudagraph_memory``) captures the two largest sizes of each mode, takes the first capture whole and the
  second as the cost of every other size, at least 1 MiB each: max over modes of the first + Σ (sizes − 1) × the
  second. V2 (v1/worker/gpu/cudagraph_utils.py@v0.30.0 ``profile_cudagraph_memory``) captures PIECEWISE in full and
  extrapolates FULL from a few samples: the capture itself. Offline, only the sizes and the pool are known; the bytes
  per graph are the fitted estimate, and the logs held out show them varying several-fold with the driver.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from shardsim.constants import (
    CUDA_CONTEXT_BYTES,
    CUSTOM_ALLREDUCE_RANK_DATA_BYTES,
    VLLM_CUDA_GRAPH_BYTES_PER_GRAPH,
    VLLM_FLASHINFER_SAMPLER_BYTES_PER_LOGIT,
    VLLM_NON_TORCH_BYTES,
    VLLM_SAMPLER_BYTES_PER_LOGIT,
    VLLM_V0_NON_TORCH_BYTES,
    VLLM_V2_SAMPLER_BYTES_PER_LOGIT,
)
from shardsim.core.layout import Layout
from shardsim.core.memory.activations import activation_peak, activation_peak_bytes
from shardsim.core.memory.runtime import Fabric, nccl_communicator_bytes, nvls_bytes, tp_allreduce_buffers
from shardsim.core.model import ModelSpec
from shardsim.engines.releases import VllmRules
from shardsim.units import DTYPE_BYTES, GiB, MiB

MAX_CAPTURE = 512  # vLLM's default largest capture size (config/vllm.py@v0.11.1 _set_cudagraph_sizes: min(2·seqs, 512))
FP32_BYTES = 4


@lru_cache(maxsize=1024)
def capture_sizes(rules: VllmRules, seqs: int, batched: int) -> tuple[int, ...]:
    """The CUDA-graph capture sizes vLLM picks by default (``VllmRules.capture_sizes``), ascending."""
    if rules.capture_sizes in ("step8", "fixed512"):
        top = min(2 * seqs, MAX_CAPTURE) if rules.capture_sizes == "step8" else MAX_CAPTURE
        return tuple(s for s in [1, 2, 4, *range(8, top + 1, 8)] if s <= batched)
    top = min(2 * seqs, MAX_CAPTURE, batched)
    sizes = [s for s in (1, 2, 4) if s <= top]
    if top >= 8:
        sizes += range(8, min(top + 1, 256), 8)
    if top >= 256:
        sizes += range(256, top + 1, 16)
    if rules.capture_sizes == "step16+tokens" and batched <= top:
        sizes.append(batched)
    return tuple(sorted(set(sizes)))


def v0_capture_sizes(seqs: int) -> tuple[int, ...]:
    """The V0 engine's sizes (config.py@v0.8.5 _set_cudagraph_sizes, ``not envs.VLLM_USE_V1``): 1, 2, 4 and
    multiples of 8 up to the smallest of them ≥ max_num_seqs (8,192 at most), not cut by max_num_batched_tokens."""
    possible = [1, 2, 4, *range(8, 8192 + 1, 8)]
    top = next((s for s in possible if s >= seqs), possible[-1])
    return tuple(s for s in possible if s <= top)


def full_decode_sizes(rules: VllmRules, seqs: int, batched: int) -> tuple[int, ...]:
    """The V1 engine's FULL CUDA-graph sizes: with ``full_and_piecewise`` one per capture size ≤ max_num_seqs, for
    uniform decode batches (v1/cudagraph_dispatcher.py@v0.11.0); none before (PIECEWISE only)."""
    if rules.cudagraph_mode != "full_and_piecewise":
        return ()
    return tuple(s for s in capture_sizes(rules, seqs, batched) if s <= seqs)


@dataclass(frozen=True, slots=True)
class CudaGraphs:
    """One rank's CUDA graphs: sizes, graph count, the pool, what capture takes and what the profile subtracts."""

    sizes: tuple[int, ...]       # PIECEWISE sizes
    full_sizes: tuple[int, ...]  # FULL decode sizes (empty without full_and_piecewise)
    pieces: int                  # PIECEWISE graphs per size
    pool_bytes: int              # the largest size's forward transient, held once by the shared pool
    capture_bytes: int           # what capturing takes ("Graph capturing finished … took")
    estimate_bytes: int          # vLLM's own estimate (0 where the release makes none)
    subtracted: bool             # whether the estimate comes off the KV cache budget

    @property
    def graphs(self) -> int:
        return len(self.sizes) * self.pieces + len(self.full_sizes)

    def describe(self) -> str:
        full = f" + {len(self.full_sizes)} FULL decode graphs" if self.full_sizes else ""
        head = (f"CUDA graphs: {len(self.sizes)} sizes ({self.sizes[0]} to {self.sizes[-1]}) × {self.pieces} pieces{full} = "
                f"{self.graphs:,} graphs; pool {self.pool_bytes / MiB:,.0f} MiB (the {self.sizes[-1]}-token forward) + "
                f"{self.graphs:,} × {VLLM_CUDA_GRAPH_BYTES_PER_GRAPH / 1024:.0f} KiB per graph (fitted on pub-a014; the "
                f"driver's, unknowable offline) = {self.capture_bytes / GiB:.2f} GiB")
        if not self.estimate_bytes:
            return head + "; captured after the KV cache, not subtracted"
        how = "subtracted from the KV cache budget" if self.subtracted else "estimated, not subtracted (opt-in)"
        return head + f"; vLLM's run-time estimate {self.estimate_bytes / GiB:.2f} GiB, {how}"


def rocm(gpu_name: str) -> bool:
    """An AMD GPU (the catalog's MI… cards): vLLM runs on ROCm there."""
    return bool(re.match(r"\s*(AMD\b|MI\d)", gpu_name, re.I))


@dataclass(frozen=True, slots=True)
class GraphRun:
    """What decides a rank's graphs besides the model: the profile's shape and how vLLM runs."""

    seqs: int
    batched: int
    eager: bool = False
    v0: bool = False       # the V0 engine: one whole-model graph per size, its own sizes (``v0_capture_sizes``)
    on_rocm: bool = False  # ROCm: the worker makes no estimate before 0.26 (``graph_estimate_rocm``)


@lru_cache(maxsize=8192)
def cuda_graphs(spec: ModelSpec, tp: int, etp: int, layers: int, has_moe: bool, has_dense: bool, rules: VllmRules,
                v2: bool, run: GraphRun) -> CudaGraphs | None:
    """The rank's CUDA graphs (module docstring); None with --enforce-eager. Memoised: a review meets the same
    stage on every cluster of a GPU."""
    if run.eager:
        return None
    seqs, batched, v0 = run.seqs, run.batched, run.v0
    sizes = v0_capture_sizes(seqs) if v0 else capture_sizes(rules, seqs, batched)
    full = () if v0 else full_decode_sizes(rules, seqs, batched)
    pieces = 1 if v0 else layers + 1
    pool = activation_peak_bytes(spec, tp, etp, sizes[-1], sizes[-1], has_moe, has_dense, False)
    per = VLLM_CUDA_GRAPH_BYTES_PER_GRAPH
    capture = pool + (len(sizes) * pieces + len(full)) * per
    estimate = 0
    if run.on_rocm and not rules.graph_estimate_rocm:
        pass
    elif v2 and rules.v2_graphs_subtracted:
        estimate = capture
    elif not v2 and rules.v1_graph_estimate:
        modes = [(len(sizes), pieces)] + ([(len(full), 1)] if full else [])
        estimate = pool + max(g for _, g in modes) * per + sum((n - 1) * max(g * per, MiB) for n, g in modes)
    return CudaGraphs(sizes, full, pieces, pool, capture, estimate, rules.graphs_subtracted(v2) and estimate > 0)


def moe_workspace_bytes(spec: ModelSpec, etp: int, tokens: int) -> int:
    """The fused-MoE workspaces of ``tokens`` tokens that the WorkspaceManager keeps (``moe_workspace_kept``):
    TritonExperts.workspace_shapes (fused_moe/experts/triton_moe.py@v0.28.0; fused_moe.py@v0.14.0) gives
    workspace1 [M, k, max(I, H)] (shared with the output [M, H]) and workspace2 [M, k, max(2I, H)] in the
    activation dtype, each rounded to 256 B (v1/worker/workspace.py ``get_simultaneous``); I = the expert
    intermediate on this rank, M = the profile's tokens. FP8 MoE takes its workspaces the same way
    (quantization/fp8.py make_fp8_moe_kernel); its backend (Triton, DeepGEMM, CUTLASS) may size them a little
    differently, Triton's are used."""
    k, mi, h = spec.num_experts_per_tok, spec.moe_intermediate_size // etp, spec.hidden_size
    a = 2

    def aligned(n: int) -> int:
        return -(-n // 256) * 256

    return aligned(tokens * k * max(mi, h) * a) + aligned(tokens * k * max(2 * mi, h) * a)


def intermediate_tensor_bytes(spec: ModelSpec, tokens: int, dtype: str) -> int:
    """A later pipeline stage's receive buffers: hidden_states and residual [max_num_batched_tokens, H]
    (models/utils.py make_empty_intermediate_tensors_factory for Qwen3; gpu_model_runner.py@v0.20.0 ``_dummy_run``
    allocates them on the first dummy run, inside the profile; V2 at load, v1/worker/gpu/model_runner.py@v0.28.0
    ``load_model``, before it)."""
    return 2 * tokens * spec.hidden_size * DTYPE_BYTES[dtype if dtype != "fp32" else "bf16"]


def intermediate_charged(v2: bool, rules: VllmRules) -> bool:
    """Whether the profile charges a later stage's receive buffers: V1 allocates them inside the profile (its torch
    peak holds them); V2 before it, charged only where the profiler counts all memory consumed since the init
    snapshot (utils/mem_utils.py@v0.27.0 ``memory_profiling``: total_consumed)."""
    return not v2 or rules.profiler == "consumed"


def compile_note(compile_cache: str, eager: bool, version: str) -> str | None:
    """A first start's torch.compile, said and not sized (``compile_cache`` cold | warm; None when nothing is
    compiled: --enforce-eager, or the V0 engine). The mechanism is in the source: the profile's first forward runs
    Inductor's Triton kernels for the first time, and a kernel with several configs is benchmarked then
    (torch/_inductor/runtime/triton_heuristics.py ``CachingAutotuner.benchmark_all_configs``), holding Triton's
    256 MB L2-flush buffer (triton/testing.py ``do_bench``, backend driver ``get_empty_cache_for_benchmark``) and
    clones of the kernel's mutated arguments (bounded by the peak so far, ``copy_args_to_cpu_if_needed``) while the
    forward's tensors are live; a warm restart reads each kernel's chosen config from the autotune cache that vLLM
    keeps under its compile cache (compilation/compiler_interface.py@v0.10.2 ``InductorAdaptor.initialize_cache``
    points TORCHINDUCTOR_CACHE_DIR and TRITON_CACHE_DIR there; the log says "Directly load the compiled graph(s)").
    What it adds is not sized: the live set at each benchmarked kernel and which kernels have several configs are
    not in vLLM's source, and the one figure the source gives (the flush buffer over the forward) neither reaches
    the measured differences (0.65 GiB, Qwen3-8B on an L40S, vLLM 0.10.2, pub-v034 vs pub-v035, where the sampler,
    not the forward, sets the peak; 0.95 GiB, Qwen3-8B on an RTX 5090, vLLM 0.24.0, pub-m001) nor leaves the rows
    that it moves within their bounds. So no number is added."""
    if eager or version == "v0":
        return None
    if compile_cache == "warm":
        return "torch.compile: warm cache (a restart): the kernels' autotuning is read from the cache"
    return ("torch.compile: a cold cache (a first start) autotunes Inductor's Triton kernels inside the profile; "
            "published first starts peak 0.65–0.95 GiB above a warm restart of the same model (Qwen3-8B, vLLM 0.10.2 "
            "and 0.24), not sized from the source and not added here: expect less KV cache on a first start than "
            "shown; --compile-cache warm for a restart")


# ------------------------------------------------------------------------------------------ the forward, non-torch
def non_torch_bytes(version: str, rules: VllmRules, layout: Layout, rank: int, fabric: Fabric) -> int:
    """Non-torch memory the profile charges: the kernels and handles loaded during start-up (fitted, TP1) plus,
    at TP > 1, the TP group's NCCL buffers, NVLS, custom all-reduce IPC buffers (its 8 MiB rank data is a torch
    tensor) and symmetric-memory buffer on this fabric (``core.memory.runtime``), and at PP > 1 the PP group's
    NCCL communicator (vllm/distributed/device_communicators/cuda_communicator.py: PyNccl for every group but EP). The 0.8.5–0.9.0 profiler charges
    everything used on the device, the CUDA context included."""
    if version == "v0":
        return VLLM_V0_NON_TORCH_BYTES
    groups_bytes = 0
    if layout.tp > 1:  # the TP group: tp consecutive ranks (``layout.rank_groups``)
        first = rank - rank % layout.tp
        groups_bytes = _tp_group_bytes(range(first, first + layout.tp), fabric)
    if layout.pp > 1:  # the PP group's own PyNccl communicator (every non-EP group gets one, cuda_communicator.py)
        stride = layout.tp * layout.dp
        groups_bytes += _pp_group_bytes(range(rank % stride, layout.world_size, stride), fabric)
    context = CUDA_CONTEXT_BYTES if rules.profiler == "absolute" else 0
    return VLLM_NON_TORCH_BYTES + groups_bytes + context


@lru_cache(maxsize=4096)
def ranks_non_torch_bytes(version: str, rules: VllmRules, layout: Layout, fabric: Fabric) -> tuple[int, ...]:
    """``non_torch_bytes`` of every rank of ``layout`` in rank order; memoised: a review meets a layout again on
    every cluster of the same fabric and with every KV dtype."""
    return tuple(non_torch_bytes(version, rules, layout, rank, fabric) for rank in range(layout.world_size))


@lru_cache(maxsize=4096)
def _tp_group_bytes(members: range, fabric: Fabric) -> int:
    """A TP group's NCCL buffers, NVLS, custom all-reduce IPC buffers (less its 8 MiB rank data, a torch tensor) and
    symmetric-memory buffer on one of its ranks (``core.memory.runtime``); memoised: every rank of a group, and
    every layout that places the group alike, asks again."""
    custom, symmetric = tp_allreduce_buffers(members, fabric)
    return (nccl_communicator_bytes(members, fabric) + nvls_bytes(members, fabric)
            + max(0, custom - CUSTOM_ALLREDUCE_RANK_DATA_BYTES) + symmetric)


@lru_cache(maxsize=4096)
def _pp_group_bytes(members: range, fabric: Fabric) -> int:
    return nccl_communicator_bytes(members, fabric)


def counted_context(version: str, rules: VllmRules) -> int:
    """The CUDA context where ``non_torch_bytes`` does not already hold it (the 0.8.5–0.9.0 V1 profiler charges
    everything used on the device, the context included)."""
    return 0 if rules.profiler == "absolute" and version != "v0" else CUDA_CONTEXT_BYTES


def others_bytes(rules: VllmRules, capacity_bytes: int, startup_free_bytes: int | None) -> int:
    """Other processes' memory on the device (the total less the context and the free memory at start); the 0.8.5
    profiler already charges it to the KV budget (everything used on the device), later ones leave it out."""
    if rules.profiler == "absolute" or startup_free_bytes is None:
        return 0
    return max(0, capacity_bytes - CUDA_CONTEXT_BYTES - startup_free_bytes)


def left_for_graphs(capacity_bytes: int, context_bytes: int, kept_bytes: int, cache_bytes: int,
                    other_processes_bytes: int) -> int:
    """Free memory when CUDA graphs are captured after the KV cache: the device less the CUDA context, what the
    process keeps (weights, non-torch memory, what of the profile stays allocated: workspaces, kept buffers), the
    KV cache and other processes' memory (charged to the KV budget by the 0.8.5 profiler, left out of it from
    0.9.1); the profile's transient activations are back with the driver (``torch.cuda.empty_cache()`` after the
    profile run: v1/worker/gpu_worker.py@v0.8.5 determine_available_memory; utils.py@v0.10.2 memory_profiling)."""
    return capacity_bytes - context_bytes - kept_bytes - cache_bytes - other_processes_bytes


def forward_peak(spec: ModelSpec, layout: Layout, tokens: int, seqs: int, has_moe: bool, has_dense: bool,
                  skip_attention: bool, gdn: str | None = None) -> int:
    """The profile's dummy forward (``memory.activations``; ``gdn``: ``vllm_hybrid.gdn_profile``); Model Runner V2
    profiles with ``skip_attn=True`` (v1/worker/gpu/model_runner.py@v0.22.0 profile_run): no attention transient."""
    if not skip_attention:
        return activation_peak_bytes(spec, layout.tp, layout.etp, tokens, seqs, has_moe, has_dense, False, gdn=gdn)
    peak = activation_peak(spec, layout.tp, layout.etp, tokens, seqs, has_moe, has_dense, False, gdn=gdn)
    return peak.resident + max(peak.mlp, peak.linear_attention)


# ------------------------------------------------------------------------------------------ the dummy sampler
SAMPLER_SOURCES = {
    "native": "PyTorch sort of the fp32 logits with int64 indices, v1/sample/ops/topk_topp_sampler.py@v0.11.1",
    "triton": "in-place Triton top-k/top-p, no sort buffers, v1/sample/ops/topk_topp_sampler.py@v0.17.0",
    "flashinfer": "FlashInfer top-k/top-p: opted in (VLLM_USE_FLASHINFER_SAMPLER=1), or installed up to 0.11.0 "
                  "(topk_topp_sampler.py@v0.11.0; the vllm/vllm-openai image installs it, docker/Dockerfile)",
}


def sampler_name(knob: str | None, install: str, rules: VllmRules) -> str:
    """The sampler the profile runs: the knob, else FlashInfer where this release uses it whenever installed and
    the install has it, else the release's default."""
    if knob:
        return knob
    if rules.flashinfer_when_installed and install == "docker":
        return "flashinfer"
    return rules.sampler


def per_logit(sampler: str) -> int:
    return VLLM_SAMPLER_BYTES_PER_LOGIT if sampler == "native" else VLLM_FLASHINFER_SAMPLER_BYTES_PER_LOGIT


def v2_per_logit(rules: VllmRules, tp: int) -> float:
    """Model Runner V2's dummy sampler per logit: the bf16 logits (and the vocab shard before the all-gather at
    TP > 1), plus their fp32 copy where ``apply_sampling_params`` makes one (``v2_sampler_fp32``)."""
    bf16 = VLLM_V2_SAMPLER_BYTES_PER_LOGIT * (1 + (1 / tp if tp > 1 else 0))
    return bf16 + (FP32_BYTES if rules.v2_sampler_fp32 else 0)


def v2_sampler_state_bytes(spec: ModelSpec, max_num_reqs: int) -> int:
    """Model Runner V2's persistent penalty state, allocated with the sampler at load on the last pipeline stage
    (v1/worker/gpu/model_runner.py@v0.22.0: ``if self.is_last_pp_rank``; sample/penalties.py@v0.27.1,
    PenaltiesState: ``output_bin_counts`` int32 [max_num_reqs, V] and ``prompt_bin_mask`` int32
    [max_num_reqs, ceil(V/32)]). From 0.27 ``memory_profiling`` charges all memory consumed since the init
    snapshot (utils/mem_utils.py@v0.27.0), these included."""
    return max_num_reqs * spec.vocab_size * 4 + max_num_reqs * -(-spec.vocab_size // 32) * 4


def sampler_note(sampler: str, rules: VllmRules, seqs: int, vocab: int, v2: bool, tp: int) -> str:
    if v2:
        at = "v0.22.0" if rules.first < (0, 26, 0) else "v0.28.0"
        copy = (f", plus their fp32 copy (v1/worker/gpu/sample/sampler.py@{at} apply_sampling_params)"
                if rules.v2_sampler_fp32 else " in place (v1/worker/gpu/sample/sampler.py@v0.26.0 apply_sampling_params)")
        return (f"activation peak: Model Runner V2's dummy sampler over {seqs:,} × {vocab:,} logits reads the bf16 "
                f"logits{copy}, {v2_per_logit(rules, tp):g} B per logit (v1/worker/gpu/model_runner.py@v0.27.1 "
                "_dummy_sampler_run); its forward skips attention"
                + ("; its persistent penalty state is charged on the last stage (utils/mem_utils.py@v0.27.0)"
                   if rules.profiler == "consumed" else ""))
    return (f"activation peak: the profile's dummy sampler over {seqs:,} × {vocab:,} logits, "
            f"{per_logit(sampler)} B per logit ({sampler}: {SAMPLER_SOURCES[sampler]})")


def buffers_note(moe_ws: tuple[int, int], intermediate: int, state: int, rules: VllmRules, v2: bool) -> str | None:
    """What the profile charges beyond the forward and the sampler, one line (None: nothing). ``moe_ws``: (bytes,
    how much they raise the activation peak)."""
    parts = []
    if moe_ws[0]:
        raised = f"raises the peak {moe_ws[1] / MiB:,.0f} MiB" if moe_ws[1] else "under the forward's peak: no change"
        parts.append(f"fused-MoE workspaces {moe_ws[0] / MiB:,.0f} MiB kept by the WorkspaceManager under the dummy "
                     f"sampler (fused_moe/modular_kernel.py _allocate_buffers), {raised}")
    if intermediate:
        where = "allocated at load, counted by the 0.27+ profiler" if v2 else "allocated in the profile's dummy run"
        parts.append(f"later pipeline stages' receive buffers {intermediate / MiB:,.0f} MiB (hidden_states + residual "
                     f"[max_num_batched_tokens, H], {where})")
    if state:
        parts.append(f"V2 sampler state {state / MiB:,.0f} MiB on the last stage")
    if not parts:
        return None
    tail = ("; not modelled: the allocator's reserve left by weight post-processing (segments the caching allocator "
            "keeps after process_weights_after_loading, counted by the 0.27+ profiler; their size follows the "
            "allocator's segment layout, not the weights' shapes)") if rules.profiler == "consumed" else ""
    return "profile also charges: " + "; ".join(parts) + tail
