"""vLLM's own options (``vllm serve`` flags) and the scheduler defaults it picks for a GPU, by release."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from shardsim.constants import (
    VLLM_BIG_GPU_BYTES,
    VLLM_DEFAULT_BATCHED_TOKENS_BIG,
    VLLM_DEFAULT_BATCHED_TOKENS_SMALL,
    VLLM_DEFAULT_SEQS_BIG,
    VLLM_DEFAULT_SEQS_SMALL,
    VLLM_LLM_BATCHED_TOKENS_BIG,
    VLLM_LLM_BATCHED_TOKENS_SMALL,
)
from shardsim.engines import vllm_hybrid, vllm_multimodal
from shardsim.engines.releases import NEWEST, VllmRules
from shardsim.errors import ShardsimError


class VllmKnobs(BaseModel):
    """vLLM's own options (``vllm serve`` flags); None means vLLM's default for the GPU."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    gpu_memory_utilization: float = 0.9
    max_model_len: int | None = None
    max_num_batched_tokens: int | None = None
    max_num_seqs: int | None = None
    block_size: int = 16
    enforce_eager: bool = False
    kv_cache_dtype: str = "auto"
    sampler: str | None = None  # native (PyTorch sort), triton (0.17+) or flashinfer; None: the release's default
    version: str = "v1"         # the engine core: v1, or v0 (VLLM_USE_V1=0, up to 0.10.x)
    engine_version: str | None = None   # the vLLM release (None: the newest modelled)
    kv_cache_memory_bytes: int | None = None  # 0.10.2+: the KV cache size, bypassing gpu_memory_utilization
    max_model_len_auto: bool = False    # 0.14+: --max-model-len auto / -1
    startup_free_bytes: int | None = None  # free memory at start when other processes hold some (None: all but the context)
    entrypoint: str = "serve"  # serve (OpenAI server) or llm (the offline vllm.LLM class): their own defaults
    install: str = "pip"  # pip (PyPI wheel: no flashinfer before 0.20) or docker (vllm/vllm-openai: flashinfer installed)
    compile_cache: str = "cold"  # torch.compile cache: cold (a first start autotunes in the profile) or warm (a restart)
    # Hybrids only (engines/vllm_hybrid.py); None: not given, vLLM's default
    mamba_cache_dtype: str | None = None  # conv state (and before 0.17 the temporal state): auto = the model's
    mamba_ssm_cache_dtype: str | None = None  # temporal state, 0.17+: auto = the conv's (Qwen3.5: config's)
    mamba_cache_mode: str | None = None  # none | align | all (0.15+)
    enable_prefix_caching: bool | None = None  # None: the release's default (on for hybrids from 0.26)
    # A vision tower only (Qwen3-VL, Qwen3.5 / 3.6; engines/vllm_multimodal.py): image=N,video=N (unnamed: 999);
    limit_mm_per_prompt: str | None = None  # weights | data; the profile's encoder run skipped; longest image edge²
    mm_encoder_tp_mode: str = "weights"
    skip_mm_profiling: bool = False
    mm_max_pixels: int | None = None

    def checked(self) -> "VllmKnobs":
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ShardsimError(f"--gpu-memory-utilization {self.gpu_memory_utilization} is out of range; accepted: (0, 1]")
        for name in ("max_model_len", "max_num_batched_tokens", "max_num_seqs"):
            value = getattr(self, name)
            if value is not None and not 1 <= value <= 10_000_000:
                raise ShardsimError(f"--{name.replace('_', '-')} {value} is out of range; accepted: 1 … 10,000,000")
        if self.block_size not in (1, 8, 16, 32, 64, 128, 256):
            raise ShardsimError(f"--block-size {self.block_size} is not one vLLM accepts: 1, 8, 16, 32, 64, 128, 256")
        if self.kv_cache_dtype not in ("auto", "bf16", "fp16", "fp8", "fp8_e4m3", "fp8_e5m2"):
            raise ShardsimError(f"--kv-cache-dtype {self.kv_cache_dtype!r} is not known; accepted: auto, bf16, fp16, fp8")
        if self.sampler not in (None, "native", "triton", "flashinfer"):
            raise ShardsimError(f"--sampler {self.sampler!r:.40} is not known; accepted: native, triton, flashinfer")
        if self.entrypoint not in ("serve", "llm"):
            raise ShardsimError(f"--vllm-entrypoint {self.entrypoint!r:.40} is not known; accepted: serve, llm")
        if self.compile_cache not in ("cold", "warm"):
            raise ShardsimError(f"--compile-cache {self.compile_cache!r:.40} is not known; accepted: cold, warm")
        if self.install not in ("pip", "docker"):
            raise ShardsimError(f"--vllm-install {self.install!r:.40} is not known; accepted: pip, docker")
        if self.version not in ("v1", "v0"):
            raise ShardsimError(f"--vllm-version {self.version!r:.40} is not known; accepted: v1, v0")
        if self.kv_cache_memory_bytes is not None and not 1 <= self.kv_cache_memory_bytes <= 1 << 50:
            raise ShardsimError(f"--kv-cache-memory-bytes {self.kv_cache_memory_bytes} is out of range; accepted: "
                                "1 B … 1 PiB")
        vllm_multimodal.check_knobs(self)
        vllm_hybrid.check_knobs(self)
        return self


@dataclass(frozen=True, slots=True)
class VllmDefaults:
    max_num_seqs: int
    max_num_batched_tokens: int


def vllm_defaults(capacity_bytes: int, gpu_name: str, rules: VllmRules = NEWEST["vllm"],
                  max_model_len: int | None = None, entrypoint: str = "serve") -> VllmDefaults:
    """The max_num_seqs and max_num_batched_tokens that ``vllm serve`` (or the offline ``vllm.LLM``) picks for this
    GPU at this release (``VllmRules.a100_small_defaults`` and ``clamp_defaults``, cited there; the LLM class
    takes 16,384 / 8,192 tokens on big / other GPUs, engine/arg_utils.py@v0.10.2 _set_default_args_v1)."""
    big = capacity_bytes >= VLLM_BIG_GPU_BYTES and not (rules.a100_small_defaults and "a100" in gpu_name.lower())
    seqs, tokens = ((VLLM_DEFAULT_SEQS_BIG, VLLM_DEFAULT_BATCHED_TOKENS_BIG) if big
                    else (VLLM_DEFAULT_SEQS_SMALL, VLLM_DEFAULT_BATCHED_TOKENS_SMALL))
    if entrypoint == "llm":
        tokens = VLLM_LLM_BATCHED_TOKENS_BIG if big else VLLM_LLM_BATCHED_TOKENS_SMALL
    if rules.clamp_defaults and max_model_len:
        tokens = min(seqs * max_model_len, tokens)
        seqs = min(seqs, tokens)
    return VllmDefaults(seqs, tokens)
