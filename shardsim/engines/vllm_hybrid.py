"""vLLM's memory for hybrid Gated-DeltaNet + full-attention models (Qwen3-Next, Qwen3.5 / 3.6), by release
(``releases.VllmRules``, the hybrid fields). Research with every step read from the wheels:
/work/research/engines/VLLM_HYBRID.md.

One shared block pool holds both the full-attention layers' K/V and the linear-attention layers' recurrent state:
1. attention bytes per token per layer per rank, ``2 · kv heads held · head_dim · dtype`` (v1/kv_cache_interface.py@v0.10.2
   ``AttentionSpec.page_size_bytes``; kv heads ``max(1, kv // tp)``, ``ModelConfig.get_num_kv_heads``);
2. state page per layer per rank, conv + temporal (``core.memory.state``; mamba_utils.py@v0.10.2
   ``gated_delta_net_state_shape``), dtypes by ``VllmRules.state_dtypes``;
3. attention block = A · cdiv(state page, A · attention bytes per token), raised to --block-size when that is larger
   (models/config.py@v0.10.2 ``HybridAttentionMambaModelConfig``; platforms/interface.py@v0.20.0
   ``_align_hybrid_block_size``), and the state page padded to block · attention bytes per token;
4. groups (v1/core/kv_cache_utils.py@v0.24.0 ``_get_kv_cache_groups_uniform_page_size``): group size = the fewer
   layers of the two kinds on the stage (the full-attention ones for Qwen's 3:1 pattern), one attention group and
   cdiv(linear layers, group size) state groups; num_blocks = available // page // group size (``get_num_blocks``);
5. blocks per request = cdiv(max_model_len, block) + state groups × k, k = 1 (+ speculative tokens) without prefix
   caching and 2 in align mode (v1/kv_cache_interface.py@v0.15.0 ``MambaSpec.max_memory_usage_bytes``), + 1 prefill
   checkpoint block with FlashInfer's GDN prefill (@v0.33.0); max concurrency = num_blocks / blocks per request
   (kv_cache_utils.py ``get_max_concurrency_for_kv_cache_config``); the logged tokens by ``VllmRules.hybrid_tokens``.
The available memory is predict_vllm's (the profile does not allocate the state). The GDN layers' activations in
the profile: ``gdn_profile`` here, priced by ``core.memory.deltanet_activations`` (the profile's dummy forward has
no attention metadata, so the chunked delta rule never runs in it; only the projections, gated norm and out_proj).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import lcm

from shardsim.core.layout import Layout
from shardsim.core.memory.kv_cache import kv_bytes_per_token_per_layer
from shardsim.core.memory.state import linear_layers_in, state_bytes_per_sequence_per_layer
from shardsim.core.model import ModelSpec
from shardsim.engines.releases import Resolved, VllmRules
from shardsim.errors import ShardsimError
from shardsim.units import DTYPE_BYTES

STATE_DTYPES = {"auto": None, "bf16": 2, "bfloat16": 2, "fp16": 2, "float16": 2, "fp32": 4, "float32": 4}
MAMBA_CACHE_MODES = ("none", "align", "all")
HYBRID_KNOBS = ("mamba_cache_dtype", "mamba_ssm_cache_dtype", "mamba_cache_mode", "enable_prefix_caching")
KERNEL_BLOCK_ALIGNMENT = 16  # FlashAttention: block sizes MultipleOf(16) (models/config.py@v0.10.2 "16 *"; v1/attention/backends/flash_attn.py@v0.20.0 get_supported_kernel_block_sizes)


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def check_knobs(knobs) -> None:
    """The hybrid knobs' values (bad input: one line)."""
    for name in ("mamba_cache_dtype", "mamba_ssm_cache_dtype"):
        value = getattr(knobs, name)
        if value is not None and value not in STATE_DTYPES:
            raise ShardsimError(f"--{name.replace('_', '-')} {value!r:.40} is not known; accepted: auto, bf16, fp16, "
                                "fp32, float32")
    if knobs.mamba_cache_mode is not None and knobs.mamba_cache_mode not in MAMBA_CACHE_MODES:
        raise ShardsimError(f"--mamba-cache-mode {knobs.mamba_cache_mode!r:.40} is not known; accepted: none, align, "
                            "all")


def dense_knob_check(spec: ModelSpec, knobs) -> None:
    """The hybrid knobs do nothing for a model without linear-attention layers."""
    given = [name for name in HYBRID_KNOBS if getattr(knobs, name) is not None]
    if given and not spec.is_hybrid:
        flag = "--" + given[0].replace("_", "-")
        raise ShardsimError(f"{flag} does nothing for {spec.name}: it has no linear-attention (Gated-DeltaNet) layers")


@dataclass(frozen=True, slots=True)
class HybridSetup:
    """What the release and knobs make of a hybrid, the same on every rank."""

    conv_bytes: int  # conv state dtype bytes
    ssm_bytes: int  # temporal (delta-rule) state dtype bytes
    attn_bytes_per_token: int  # per layer per rank
    state_page_bytes: int  # conv + temporal of one sequence, one layer, one rank
    block_size: int  # the attention block, tokens
    block_logged: bool  # vLLM logs "Setting attention block size …" (the block was raised)
    mode: str  # mamba_cache_mode in effect: none or align
    state_blocks_per_group: int  # k: blocks one request holds in each state group
    refusal: str | None
    notes: tuple[str, ...]

    @property
    def page_bytes(self) -> int:
        """The padded state page = the attention page: block · attention bytes per token."""
        return self.block_size * self.attn_bytes_per_token

    @property
    def padding(self) -> float:
        return (self.page_bytes - self.state_page_bytes) / self.state_page_bytes


def _state_dtypes(spec: ModelSpec, knobs, rules: VllmRules, dtype: str) -> tuple[int, int, list[str]]:
    """(conv, temporal) dtype bytes by ``VllmRules.state_dtypes``; auto = the model's dtype."""
    conv = STATE_DTYPES[knobs.mamba_cache_dtype or "auto"] or DTYPE_BYTES[dtype]
    notes = []
    if rules.state_dtypes == "cache":
        if knobs.mamba_ssm_cache_dtype not in (None, "auto"):
            notes.append(f"--mamba-ssm-cache-dtype is ignored for Gated-DeltaNet in {rules.label}: both states take "
                         "--mamba-cache-dtype (mamba_utils.py@v0.16.0 gated_delta_net_state_dtype)")
        return conv, conv, notes
    ssm = STATE_DTYPES[knobs.mamba_ssm_cache_dtype or "auto"]
    if ssm is None and spec.architecture.startswith("Qwen3_5") and spec.state_dtype:
        ssm = DTYPE_BYTES[spec.state_dtype]  # models/config.py@v0.17.0 Qwen3_5ForConditionalGenerationConfig
    return conv, ssm or conv, notes


def _mode(knobs, rules: VllmRules, spec: ModelSpec) -> tuple[str, list[str]]:
    """The mamba_cache_mode in effect (models/config.py@v0.15.0 MambaModelConfig: prefix caching on → "align" for
    models without SupportsMambaPrefixCaching, "all" falls back to "align"; off → "none")."""
    if not rules.mamba_cache_mode:
        notes = []
        if knobs.enable_prefix_caching:
            notes.append("Hybrid or mamba-based model detected without support for prefix caching: disabling. "
                         "(models/config.py@v0.11.1; forced off @v0.10.2)")
        return "none", notes
    on = knobs.enable_prefix_caching
    on = rules.hybrid_prefix_caching_default if on is None else on
    asked = knobs.mamba_cache_mode or "none"
    if not on:
        notes = ["Mamba cache mode is set to 'none' when prefix caching is disabled"] if asked != "none" else []
        return "none", notes
    notes = ["Hybrid or mamba-based model detected without support for prefix caching with Mamba cache 'all' mode: "
             "falling back to 'align' mode."] if asked == "all" else []
    return "align", notes


def _alignment(spec: ModelSpec, rules: VllmRules, mode: str, user_block: int, cc: str | None) -> tuple[int, int]:
    """(block alignment, prefill checkpoint blocks per state group)."""
    align = KERNEL_BLOCK_ALIGNMENT
    if str(cc).startswith("10.") and spec.head_dim == 256:
        align = rules.sm100_head256_alignment
    if rules.align_to_block_size:
        align = max(align, user_block)
    checkpoint = 0
    # FlashInfer's GDN prefill: sm90 always; sm10x / sm12x only with CUDA runtime ≥ 13, not modelled
    # (mamba/gdn/qwen_gdn_linear_attn.py@v0.33.0 _resolve_gdn_prefill_backend)
    if rules.gdn_checkpoint_alignment and mode == "align" and str(cc) == "9.0":
        align, checkpoint = lcm(align, rules.gdn_checkpoint_alignment), 1
    return align, checkpoint


def gdn_profile(spec: ModelSpec, rules: VllmRules, first_layer: int, last_layer: int) -> str | None:
    """The release's GDN profile form (``VllmRules.gdn_profile``) for a stage holding linear-attention layers,
    None for a stage without any (``activations.activation_peak``'s ``gdn``)."""
    return rules.gdn_profile if spec.linear is not None and linear_layers_in(spec, first_layer, last_layer) else None


def attention_block_size(state_page: int, attn_bytes_per_token: int, alignment: int, user_block: int) -> int:
    """A · cdiv(state page, A · attention bytes per token), or --block-size when larger."""
    return max(user_block, alignment * cdiv(state_page, alignment * attn_bytes_per_token))


def setup(spec: ModelSpec, layout: Layout, knobs, release: Resolved, dtype: str, kv_bytes: int,
          compute_capability: str | None) -> HybridSetup:
    """The release's and the knobs' hybrid settings: state dtypes, mode, attention block and refusals."""
    rules: VllmRules = release.rules
    refusal = None
    if spec.architecture not in rules.hybrid_archs:
        first = "0.17.0" if spec.architecture.startswith("Qwen3_5") else "0.10.2"
        refusal = f"vLLM {release.version} does not support {spec.architecture} (added in {first})"
    elif knobs.mamba_cache_mode is not None and not rules.mamba_cache_mode:
        refusal = f"--mamba-cache-mode does not exist in vLLM {release.version} (added in 0.15.0)"
    conv, ssm, notes = _state_dtypes(spec, knobs, rules, dtype)
    mode, mode_notes = _mode(knobs, rules, spec)
    num_spec = spec.speculative_tokens
    if mode == "align" and num_spec:
        refusal = refusal or ("AssertionError: Mamba cache mode 'align' is currently not compatible with speculative "
                              "decoding. (models/config.py@v0.15.0)")
    attn = kv_bytes_per_token_per_layer(spec, layout.tp, kv_bytes)
    page = state_bytes_per_sequence_per_layer(spec, layout.tp, conv, ssm, num_spec)
    align, checkpoint = _alignment(spec, rules, mode, knobs.block_size, compute_capability)
    block = attention_block_size(page, attn, align, knobs.block_size)
    k = (2 if mode == "align" else 1) + num_spec + checkpoint
    if rules.gdn_checkpoint_alignment and mode == "align" and str(compute_capability)[:3] in ("10.", "12."):
        notes.append("align mode on sm10x / sm12x: with CUDA runtime ≥ 13 vLLM uses FlashInfer's GDN prefill, "
                     "aligning the block to 64 and holding one more state block per group; not modelled "
                     "(mamba/gdn/qwen_gdn_linear_attn.py@v0.33.0)")
    if num_spec:
        notes.append("the MTP draft's attention layer is not counted in the block groups")
    return HybridSetup(conv, ssm, attn, page, block, block > knobs.block_size, mode, k, refusal,
                       tuple(notes + mode_notes))


@dataclass(frozen=True, slots=True)
class HybridPool:
    """One rank's share of the pool."""

    full_layers: int
    group_size: int
    state_groups: int
    num_blocks: int

    @property
    def groups(self) -> int:
        return 1 + self.state_groups


def rank_pool(spec: ModelSpec, first_layer: int, last_layer: int, available: int, hs: HybridSetup) -> HybridPool:
    """Groups of the stage's layers and the blocks its available memory holds."""
    linear = linear_layers_in(spec, first_layer, last_layer)
    full = last_layer - first_layer + 1 - linear
    group = min(n for n in (full, linear) if n) if full or linear else 1
    state_groups = cdiv(linear, group)
    return HybridPool(full, group, state_groups, max(0, available) // hs.page_bytes // group)


def blocks_per_request(pool: HybridPool, hs: HybridSetup, max_len: int) -> int:
    """cdiv(max_model_len, block) for the attention group + k per state group (the sum over groups of
    ``max_memory_usage_bytes`` / page, kv_cache_utils.py@v0.20.0 get_max_concurrency_for_kv_cache_config)."""
    return cdiv(max_len, hs.block_size) + pool.state_groups * hs.state_blocks_per_group


def logged_tokens(pool: HybridPool, hs: HybridSetup, rules: VllmRules, max_len: int) -> int:
    """"GPU KV cache size: N tokens" as the release prints it: num_blocks // groups × the smallest group block (the
    state groups' block is max_model_len without prefix caching, the attention block in align mode;
    kv_cache_utils.py@v0.20.0 _report_kv_cache_config), or from 0.20.1 int(max concurrency × max_model_len)."""
    if rules.hybrid_tokens == "concurrency":
        return int(pool.num_blocks / blocks_per_request(pool, hs, max_len) * max_len)
    smallest = hs.block_size if hs.mode == "align" else min(hs.block_size, max_len)
    return pool.num_blocks // pool.groups * smallest


def longest_request(pool: HybridPool, hs: HybridSetup) -> int:
    """The longest max_model_len the pool holds for one request (``--max-model-len auto``)."""
    return max(0, pool.num_blocks - pool.state_groups * hs.state_blocks_per_group) * hs.block_size


@dataclass(frozen=True, slots=True)
class HybridSummary:
    """The report's hybrid figures, for the rank with the fewest blocks (vLLM takes the minimum over workers)."""

    num_blocks: int
    blocks_per_request: int
    kv_cache_tokens: int
    max_concurrency: float
    fields: dict  # EngineReport's hybrid fields
    refusal: str | None  # max_num_seqs above the blocks (hs.refusal comes earlier)
    notes: tuple[str, ...]


def state_blocks_refusal(rules: VllmRules, seqs: int, num_blocks: int, enforce_eager: bool) -> tuple[str | None, list]:
    """max_num_seqs above the pool's blocks with full CUDA graphs: a ValueError from 0.20.0
    (config/compilation.py@v0.20.0), capped capture sizes and a warning in 0.18–0.19 (@v0.18.0)."""
    if enforce_eager or seqs <= num_blocks:
        return None, []
    if rules.state_blocks_check == "error":
        return (f"ValueError: max_num_seqs ({seqs}) exceeds available Mamba cache blocks ({num_blocks}). Each decode "
                "sequence requires one Mamba cache block, so CUDA graph capture cannot proceed. Please lower "
                f"max_num_seqs to at most {num_blocks} or increase gpu_memory_utilization."), []
    if rules.state_blocks_check == "cap":
        return None, [f"vLLM caps the CUDA-graph capture sizes at the {num_blocks} Mamba cache blocks (max_num_seqs "
                      f"{seqs}), a warning (config/compilation.py@v0.18.0 adjust_cudagraph_sizes_for_mamba_cache)"]
    return None, []


def summary(pools: list[HybridPool], hs: HybridSetup, rules: VllmRules, max_len: int, seqs: int,
            enforce_eager: bool) -> HybridSummary:
    """Blocks per request, tokens, concurrency, the report fields and the state-blocks refusal."""
    pool = min(pools, key=lambda p: p.num_blocks)
    per_request = blocks_per_request(pool, hs, max_len)
    refusal, notes = state_blocks_refusal(rules, seqs, pool.num_blocks, enforce_eager)
    fields = {
        "attention_block_size": hs.block_size, "state_page_bytes": hs.state_page_bytes,
        "state_page_padding": hs.padding, "state_blocks": pool.num_blocks,
        "state_blocks_per_request": pool.state_groups * hs.state_blocks_per_group,
        "kv_bytes_per_token": hs.attn_bytes_per_token * pool.full_layers,
        "state_bytes_per_sequence": pool.state_groups * hs.state_blocks_per_group * pool.group_size * hs.page_bytes,
    }
    return HybridSummary(pool.num_blocks, per_request, logged_tokens(pool, hs, rules, max_len),
                         pool.num_blocks / per_request, fields, refusal, hs.notes + tuple(notes))
