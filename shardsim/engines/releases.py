"""Engine releases: the memory rules of each range of vLLM, SGLang and transformers releases, each engine's rows in
one ``ReleaseTable`` of the same shape (rows by first release, the newest release read), each rule cited, and one
``resolve``.

Citations read ``path@vX.Y.Z (function)``: the file as shipped in that release (PyPI wheel; the git tag of the same
name). A release between two rows follows the lower row; a release newer than the newest row follows it with a
warning that its rules were read at an older release; a release older than the oldest row is refused.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, replace

from shardsim.engines.releases_other import (  # noqa: F401  (SGLang's and transformers' rows, re-exported)
    SGLANG_RULES, TRANSFORMERS_RULES, SglangRules, TransformersRules)
from shardsim.engines.rule_row import RuleRow, Version  # noqa: F401
from shardsim.errors import ShardsimError


def parse_version(text: str, engine: str) -> Version:
    """'0.11.0', 'v0.10.1.1', '0.5.2.post1', '0.14.0rc1' → (0, 11, 0); anything else is refused."""
    m = re.fullmatch(r"v?(\d{1,3})\.(\d{1,3})(?:\.(\d{1,3}))?(?:[.\-+]?(?:post|rc|dev|a|b)?\d*[\w.+]*)?",
                     str(text).strip())
    if not m:
        raise ShardsimError(f"--engine-version {str(text)[:40]!r} is not a release number; accepted: X.Y.Z, e.g. "
                            f"{NEWEST_RELEASE.get(engine, '5.24.0')}")
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


@dataclass(frozen=True, slots=True)
class VllmRules(RuleRow):
    """How one range of vLLM releases sizes its memory (V1 engine)."""

    first: Version
    label: str
    # Profiler. "absolute": available = total × util − (absolute torch peak, weights included) − (everything else
    # used on the device, CUDA context and other processes included) (v1/worker/gpu_worker.py@v0.8.5,
    # determine_available_memory). "snapshot": available = requested − (weights + torch peak increase + non-torch
    # increase since the init snapshot) (v1/worker/gpu_worker.py@v0.9.1 and utils.py memory_profiling): the CUDA
    # context is in the baseline, not charged.
    profiler: str
    # ``Free memory on device … less than desired GPU memory utilization`` at start-up (gpu_worker.py@v0.9.1
    # init_device): free memory at start must be ≥ total × util.
    startup_free_check: bool
    # ``vllm serve`` defaults: ≥ 70 GiB GPUs get 1024 seqs / 8192 tokens, others 256 / 2048; from 0.9.0 an A100 gets
    # the small ones (engine/arg_utils.py@v0.8.5 _set_default_args_v1; @v0.9.0 adds ``"a100" not in device_name``).
    a100_small_defaults: bool
    # From 0.12.0 the defaults are clamped: tokens = min(max_num_seqs × max_model_len, default), seqs = min(seqs,
    # tokens) (engine/arg_utils.py@v0.12.0 _set_default_max_num_seqs_and_batched_tokens_args).
    clamp_defaults: bool
    # The profile's dummy sampler: "native" sorts [max_num_seqs, vocab] fp32 logits with int64 indices
    # (v1/sample/ops/topk_topp_sampler.py@v0.11.1: FlashInfer only with VLLM_USE_FLASHINFER_SAMPLER=1; before,
    # FlashInfer when importable, which the PyPI wheels do not bundle); "triton": from 0.17.0 an in-place Triton
    # top-k/top-p kernel for ≥ 8 rows (topk_topp_sampler.py@v0.17.0, topk_topp_triton.py), no sort buffers.
    sampler: str
    # ``--kv-cache-memory-bytes`` (gpu_worker.py@v0.10.2 determine_available_memory: returned as is).
    kv_cache_memory_bytes: bool
    # ``--max-model-len auto`` / -1: the largest length one sequence can hold in the cache (v1/core/
    # kv_cache_utils.py@v0.14.0 _auto_fit_max_model_len).
    max_model_len_auto: bool
    # ``torch.cuda.empty_cache()`` before reading memory in "Model loading took" (platforms/cuda.py@v0.11.0).
    loading_empty_cache: bool
    v0_available: bool = True  # VLLM_USE_V1=0 (the V0 engine) exists up to 0.10.x
    # CUDA graphs are captured after the KV cache is allocated (gpu_model_runner.py compile_or_warm_up_model); from
    # 0.20.0 the V1 runner estimates their memory and subtracts it before sizing the KV cache
    # (envs.py@v0.20.0 VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS default "1"; gpu_worker.py
    # determine_available_memory; 0.18–0.19 estimate it but default the variable to "0").
    v1_graphs_subtracted: bool = False
    # Model Runner V2 (v1/worker/gpu/model_runner.py@v0.22.0): "none"; "dense-bf16" (0.22–0.23: Qwen3ForCausalLM,
    # not MoE, not quantized; config/vllm.py _is_default_v2_model_runner_model); "dense" (0.24–0.28: quantized too,
    # MoE stays on V1); "all" (0.29+: the allow-list is gone). V2's profile skips attention (``skip_attn=True``)
    # and its dummy sampler may skip top-k/top-p; its graph estimate is 0 until 0.29.0
    # (v1/worker/gpu/cudagraph_utils.py@v0.29.0 profile_cudagraph_memory).
    runner_v2: str = "none"
    v2_graphs_subtracted: bool = False
    # Up to 0.11.0 the sampler is FlashInfer's whenever flashinfer is importable (topk_topp_sampler.py@v0.11.0:
    # ``VLLM_USE_FLASHINFER_SAMPLER is not False``); the PyPI wheels do not require it, the vllm/vllm-openai image
    # installs it (docker/Dockerfile, vllm-base stage: the FlashInfer wheel on amd64). From 0.11.1 it is opt-in.
    flashinfer_when_installed: bool = False
    # Attention backend: FlashInfer first on sm100 (B200/GB200) for causal attention, FlashAttention first elsewhere
    # (platforms/cuda.py@v0.27.1 _get_backend_priorities); FlashInfer holds a workspace of
    # VLLM_FLASHINFER_WORKSPACE_BUFFER_SIZE (envs.py@v0.27.1: 394 MiB), allocated during the profile. Read at 0.27.1;
    # earlier releases are not credited with it.
    flashinfer_attention_sm100: bool = False
    # Hybrid GDN + full-attention models (engines/vllm_hybrid.py). Rows also start where these change; ``label`` stays
    # the dense rule set's (bands and calibration group by it). Architectures served: Qwen3NextForCausalLM from
    # model_executor/models/qwen3_next.py@v0.10.2 (absent @v0.10.1.1); Qwen3_5ForConditionalGeneration and
    # Qwen3_5MoeForConditionalGeneration from model_executor/models/registry.py@v0.17.0 (absent @v0.16.0).
    hybrid_archs: tuple[str, ...] = ()
    # State dtypes (model_executor/layers/mamba/mamba_utils.py gated_delta_net_state_dtype): "cache": conv and
    # temporal both in --mamba-cache-dtype (auto = the model's), --mamba-ssm-cache-dtype ignored (@v0.10.2 … @v0.16.0);
    # "split": temporal in --mamba-ssm-cache-dtype (auto = the conv's; for Qwen3.5 auto = the config's
    # mamba_ssm_dtype, models/config.py@v0.17.0 Qwen3_5ForConditionalGenerationConfig).
    state_dtypes: str = "cache"
    # Attention kernel block alignment on sm10x for head_dim 256 with FlashInfer or no backend chosen
    # (flashinfer#1993; models/config.py@v0.12.0 … @v0.17.0 HybridAttentionMambaModelConfig; gone @v0.18.0); 16 else.
    sm100_head256_alignment: int = 16
    # The alignment is max(backend's smallest kernel block, --block-size) (platforms/interface.py@v0.20.0
    # _align_hybrid_block_size); before, --block-size counts only when larger than the computed block
    # (models/config.py@v0.10.2).
    align_to_block_size: bool = False
    # ``--mamba-cache-mode none|align|all`` (config/cache.py@v0.15.0); before, prefix caching is off for Qwen's GDN
    # models (forced off, models/config.py@v0.10.2 MambaModelConfig; no SupportsMambaPrefixCaching, @v0.11.1).
    mamba_cache_mode: bool = False
    # Prefix caching on by default for generative hybrids (config/model.py@v0.26.0 is_prefix_caching_supported;
    # False @v0.25.1), so mamba_cache_mode becomes "align".
    hybrid_prefix_caching_default: bool = False
    # max_num_seqs above the blocks: "none"; "cap": CUDA-graph capture sizes capped, a warning
    # (config/compilation.py@v0.18.0 adjust_cudagraph_sizes_for_mamba_cache); "error": ValueError with full CUDA
    # graphs (config/compilation.py@v0.20.0).
    state_blocks_check: str = "none"
    # "GPU KV cache size": "groups" = num_blocks // groups × smallest group block (v1/core/kv_cache_utils.py@v0.20.0
    # _report_kv_cache_config); "concurrency" = int(max concurrency × max_model_len) (@v0.20.1).
    hybrid_tokens: str = "groups"
    # Align mode with FlashInfer's GDN prefill (sm90): block aligned to lcm(alignment, 64) and one prefill checkpoint
    # block per state group (v1/attention/backends/gdn_attn.py@v0.33.0 FLASHINFER_GDN_CHECKPOINT_ALIGNMENT,
    # platforms/interface.py@v0.33.0, mamba/gdn/qwen_gdn_linear_attn.py@v0.33.0 get_kv_cache_spec); 0: none.
    gdn_checkpoint_alignment: int = 0
    # What a GDN layer allocates in the profile's dummy forward, which has no attention metadata
    # (core/memory/deltanet_activations.py): "skipped" (models/qwen3_next.py@v0.10.2 … @v0.11.0: the layer is one
    # custom op that returns before its projections; the decoder's output buffer only); "buffered" (@v0.11.1: the
    # projections, gated norm and out_proj run around ``gdn_attention_core``, which returns; the decoder layer passes
    # an output buffer up to 0.25); "projections" (models/qwen3_next.py@v0.26.0: the layer returns its output).
    gdn_profile: str = "skipped"
    # Which pipeline stages build the vision tower (and Qwen3-VL's deepstack buffers): "all" (every stage,
    # models/qwen3_vl.py@v0.11.0 ``__init__``; interfaces.py@v0.32.0 ``_mark_tower_model`` skips it only when
    # --limit-mm-per-prompt is 0 for images and videos); "first-v2" (interfaces.py@v0.33.0: also skipped on stages
    # after the first under Model Runner V2). vllm@v0.34.0 skips it on every stage after the first.
    vision_tower_stages: str = "all"
    # CUDA graphs (engines/vllm_profile.py). Capture sizes: "fixed512" = 1, 2, 4 and multiples of 8 up to 512,
    # those ≤ max_num_batched_tokens, whatever max_num_seqs (config.py@v0.8.5 _set_cudagraph_sizes; vLLM PR #17201,
    # merged after 0.8.5, made the 512 a flag, cuda_graph_sizes, still defaulting to 512; PR #20628, merged
    # 2025-07-08 after #20062 was reverted by #20128, made the default min(2·max_num_seqs, 512), taken here from
    # 0.10.0, the first release cut after it); "step8" = 1, 2, 4 and multiples of 8 up to
    # min(2·max_num_seqs, 512), those ≤ max_num_batched_tokens (config/__init__.py@v0.10.2 _set_cudagraph_sizes,
    # config/scheduler.py cuda_graph_sizes); "step16" = up to min(2·max_num_seqs, 512, max_num_batched_tokens):
    # 1, 2, 4, multiples of 8 below 256, of 16 from 256 (config/vllm.py@v0.11.1 _set_cudagraph_sizes);
    # "step16+tokens": max_num_batched_tokens added when within the largest (config/vllm.py@v0.24.0).
    capture_sizes: str = "step8"
    # "piecewise" (the 0.10.x default); "full_and_piecewise": PIECEWISE graphs for every size plus FULL graphs for
    # decode batches ≤ max_num_seqs (config/__init__.py@v0.11.0 default; v1/cudagraph_dispatcher.py@v0.11.0).
    cudagraph_mode: str = "piecewise"
    # V1 estimates its graphs' memory in the profile (gpu_model_runner.py@v0.18.0 profile_cudagraph_memory);
    # subtracted from 0.20 (``v1_graphs_subtracted``).
    v1_graph_estimate: bool = False
    # The worker estimates graphs on CUDA only up to 0.25 (gpu_worker.py@v0.22.0 … @v0.25.1 determine_available_memory:
    # ``current_platform.is_cuda()``, "Skip on ROCm/HIP/XPU"); ROCm too from 0.26.0 (``is_cuda_alike()``).
    graph_estimate_rocm: bool = False
    # The fused-MoE workspaces stay allocated after the profile's forward (v1/worker/workspace.py WorkspaceManager;
    # fused_moe/modular_kernel.py@v0.14.0 _allocate_buffers; the unquantized method goes through the modular kernel
    # from 0.14.0, unquantized_fused_moe_method.py@v0.13.0 calls fused_experts, which frees its caches).
    moe_workspace_kept: bool = False
    # Model Runner V2's dummy sampler copies the logits to fp32 (v1/worker/gpu/sample/sampler.py@v0.22.0 … @v0.25.0
    # and @v0.28.0 … @v0.33.0 apply_sampling_params); @v0.26.0 (and 0.27.1) it works on the bf16 logits in place.
    v2_sampler_fp32: bool = True

    HYBRID_FIELDS = ("hybrid_archs", "state_dtypes", "sm100_head256_alignment", "align_to_block_size",
                     "mamba_cache_mode", "hybrid_prefix_caching_default", "state_blocks_check", "hybrid_tokens",
                     "gdn_checkpoint_alignment", "gdn_profile")
    VISION_FIELDS = ("vision_tower_stages",)

    def to_dict(self, hybrid: bool = False, vision: bool = False) -> dict:
        """The rule set; the hybrid fields only for a hybrid model, the vision fields only with a vision tower."""
        return self.fields((() if hybrid else self.HYBRID_FIELDS) + (() if vision else self.VISION_FIELDS))

    def vision_on_stage(self, pp_rank: int, model_runner_v2: bool) -> bool:
        """Whether a rank of stage ``pp_rank`` builds the vision tower (``vision_tower_stages``)."""
        return pp_rank == 0 or self.vision_tower_stages == "all" or (
            self.vision_tower_stages == "first-v2" and not model_runner_v2)

    def uses_v2(self, is_moe: bool, is_quantized: bool) -> bool:
        """Whether this release runs the model on Model Runner V2."""
        if self.runner_v2 == "all":
            return True
        if self.runner_v2 == "dense":
            return not is_moe
        return self.runner_v2 == "dense-bf16" and not is_moe and not is_quantized

    def graphs_subtracted(self, v2: bool) -> bool:
        """Whether the CUDA-graph estimate is taken off the KV budget."""
        return self.v2_graphs_subtracted if v2 else self.v1_graphs_subtracted


_NEXT = ("Qwen3NextForCausalLM",)
_QWEN35 = _NEXT + ("Qwen3_5ForConditionalGeneration", "Qwen3_5MoeForConditionalGeneration")
_VLLM_HYBRID_CHANGES: dict[Version, dict] = {  # from this release on (each field cited in VllmRules)
    (0, 10, 2): {"hybrid_archs": _NEXT},
    (0, 11, 1): {"gdn_profile": "buffered"},
    (0, 12, 0): {"sm100_head256_alignment": 32},
    (0, 15, 0): {"mamba_cache_mode": True},
    (0, 17, 0): {"hybrid_archs": _QWEN35, "state_dtypes": "split"},
    (0, 18, 0): {"sm100_head256_alignment": 16, "state_blocks_check": "cap"},
    (0, 20, 0): {"align_to_block_size": True, "state_blocks_check": "error"},
    (0, 20, 1): {"hybrid_tokens": "concurrency"},
    (0, 26, 0): {"hybrid_prefix_caching_default": True, "gdn_profile": "projections"},
    (0, 33, 0): {"gdn_checkpoint_alignment": 64, "vision_tower_stages": "first-v2"},
}


_VLLM_PROFILE_CHANGES: dict[Version, dict] = {  # the profile's terms (engines/vllm_profile.py), each cited in VllmRules
    (0, 8, 5): {"capture_sizes": "fixed512"},
    (0, 10, 0): {"capture_sizes": "step8"},
    (0, 11, 0): {"cudagraph_mode": "full_and_piecewise"},
    (0, 11, 1): {"capture_sizes": "step16"},
    (0, 14, 0): {"moe_workspace_kept": True},
    (0, 18, 0): {"v1_graph_estimate": True},
    (0, 24, 0): {"capture_sizes": "step16+tokens"},
    (0, 26, 0): {"v2_sampler_fp32": False, "graph_estimate_rocm": True},
    (0, 28, 0): {"v2_sampler_fp32": True},
}


def _vllm_rows() -> tuple[VllmRules, ...]:
    """vLLM's rows: the dense rule sets, split where the hybrid (and vision) rules or the profile's terms change (a
    split row keeps the dense label)."""
    dense = (
        VllmRules((0, 8, 5), "vLLM 0.8.5 rules", "absolute", False, False, False, "native", False, False, False,
                  flashinfer_when_installed=True),
        VllmRules((0, 9, 0), "vLLM 0.9.0 rules", "absolute", False, True, False, "native", False, False, False,
                  flashinfer_when_installed=True),
        VllmRules((0, 9, 1), "vLLM 0.9.1–0.10.1 rules", "snapshot", True, True, False, "native", False, False, False,
                  flashinfer_when_installed=True),
        VllmRules((0, 10, 2), "vLLM 0.10.2–0.10.x rules", "snapshot", True, True, False, "native", True, False, False,
                  flashinfer_when_installed=True),
        VllmRules((0, 11, 0), "vLLM 0.11.0 rules", "snapshot", True, True, False, "native", True, False, True,
                  v0_available=False, flashinfer_when_installed=True),
        VllmRules((0, 11, 1), "vLLM 0.11.1–0.11.x rules", "snapshot", True, True, False, "native", True, False, True,
                  v0_available=False),
        VllmRules((0, 12, 0), "vLLM 0.12–0.13 rules", "snapshot", True, True, True, "native", True, False, True,
                  v0_available=False),
        VllmRules((0, 14, 0), "vLLM 0.14–0.16 rules", "snapshot", True, True, True, "native", True, True, True,
                  v0_available=False),
        VllmRules((0, 17, 0), "vLLM 0.17–0.19 rules", "snapshot", True, True, True, "triton", True, True, True,
                  v0_available=False),
        VllmRules((0, 20, 0), "vLLM 0.20–0.21 rules", "snapshot", True, True, True, "triton", True, True, True,
                  v0_available=False, v1_graphs_subtracted=True),
        VllmRules((0, 22, 0), "vLLM 0.22–0.23 rules", "snapshot", True, True, True, "triton", True, True, True,
                  v0_available=False, v1_graphs_subtracted=True, runner_v2="dense-bf16"),
        VllmRules((0, 24, 0), "vLLM 0.24–0.26 rules", "snapshot", True, True, True, "triton", True, True, True,
                  v0_available=False, v1_graphs_subtracted=True, runner_v2="dense"),
        # 0.27.0 reworks memory_profiling (utils/mem_utils.py@v0.27.0): non-KV = free memory consumed since the init
        # snapshot + (torch peak − torch allocated after the profile); for a fresh process the same terms as before.
        VllmRules((0, 27, 0), "vLLM 0.27–0.28 rules", "consumed", True, True, True, "triton", True, True, True,
                  v0_available=False, v1_graphs_subtracted=True, runner_v2="dense", flashinfer_attention_sm100=True),
        VllmRules((0, 29, 0), "vLLM 0.29–0.33 rules", "consumed", True, True, True, "triton", True, True, True,
                  v0_available=False, v1_graphs_subtracted=True, runner_v2="all", v2_graphs_subtracted=True,
                  flashinfer_attention_sm100=True),
    )
    out, hybrid = [], {}
    for first in sorted({r.first for r in dense} | set(_VLLM_HYBRID_CHANGES) | set(_VLLM_PROFILE_CHANGES)):
        hybrid |= _VLLM_HYBRID_CHANGES.get(first, {}) | _VLLM_PROFILE_CHANGES.get(first, {})
        row = [r for r in dense if r.first <= first][-1]
        out.append(replace(row, first=first, **hybrid))
    return tuple(out)


VLLM_RULES: tuple[VllmRules, ...] = _vllm_rows()


@dataclass(frozen=True, slots=True)
class ReleaseTable:
    """One engine's rule rows (ascending by first release) and the newest release read when they were written."""

    engine: str
    rows: tuple
    newest: str


RELEASE_TABLES = {
    # newest: PyPI, 2026-12-01
    "vllm": ReleaseTable("vllm", VLLM_RULES, "0.33.0"),
    "sglang": ReleaseTable("sglang", SGLANG_RULES, "0.5.23"),
    "transformers": ReleaseTable("transformers", TRANSFORMERS_RULES, "5.24.0"),
}
NEWEST = {engine: table.rows[-1] for engine, table in RELEASE_TABLES.items()}
NEWEST_RELEASE = {engine: table.newest for engine, table in RELEASE_TABLES.items()}
"""The newest release of each engine published when these rules were read; the default."""


@dataclass(frozen=True, slots=True)
class Resolved:
    """A release as asked, the rule set it maps to, and why (a warning when it is not read at that release)."""

    version: str
    rules: VllmRules | SglangRules | TransformersRules
    warning: str | None
    given: bool = True  # False: no release was asked, the newest read is assumed

    @property
    def note(self) -> str | None:
        """A report's note when no release was given: which release and rule set the figures assume."""
        if self.given:
            return None
        return (f"release not given: {self.version}, the newest read, assumed ({self.rules.label}); "
                "--engine-version names the one you run")


def resolve(engine: str, version: str | None) -> Resolved:
    """The rules of ``engine`` (vllm, sglang or transformers) at ``version`` (None: the newest release)."""
    return _resolve(engine, version if version is None else str(version))


@functools.lru_cache(maxsize=512)
def _resolve(engine: str, version: str | None) -> Resolved:
    """``resolve``, pure, so kept per (engine, version): a review resolves the same release for every layout."""
    table = RELEASE_TABLES[engine].rows
    text = version if version is not None else NEWEST_RELEASE[engine]
    asked = parse_version(text, engine)
    if asked < table[0].first:
        raise ShardsimError(f"--engine-version {text} is older than the oldest {engine} release shardsim models "
                            f"({table[0].first_text}); accepted: {table[0].first_text} or newer")
    rules = [r for r in table if r.first <= asked][-1]
    warning = None
    newest_read = parse_version(NEWEST_RELEASE[engine], engine)
    if asked > newest_read:
        warning = (f"{engine} {text} is newer than the newest release read ({NEWEST_RELEASE[engine]}); "
                   f"using the {rules.label}")
    return Resolved(text.lstrip("v"), rules, warning, version is not None)
