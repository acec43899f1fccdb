"""SGLang's memory for hybrid GDN models (Qwen3-Next, Qwen3.5 / 3.6): a state pool of per-request slots beside the
KV pool, split by release (``SglangRules`` fields ``hybrid_archs`` … ``mamba_padding_counted``, each cited there).

Sources (the wheels of each release, ``sglang/srt/<path>@vX.Y.Z``):
- per request, on one TP rank (configs/qwen3_next.py@v0.5.2 ``mamba_cache_per_req``; configs/mamba_utils.py@v0.5.9
  ``Mamba2CacheParams``): linear layers × (conv (K − 1) · conv_dim / tp in bf16 + temporal n_v / tp · d_k · d_v in the
  SSM dtype); ``memory.state.state_bytes_per_sequence_per_layer`` has the shapes;
- rest = avail after load − total × (1 − mem_fraction_static), GiB (model_runner.py@v0.5.2 profile_max_num_token,
  as ``engines.sglang``);
- slots (max_mamba_cache_size): fixed (--max-mamba-cache-size, --max-running-requests, 512) or
  rest · r / (1 + r) // per request, r = --mamba-full-memory-ratio (model_runner.py@v0.5.4 handle_max_mamba_cache);
  from 0.5.17 (budget − per request) // per request, the padding slot counted (kv_cache_configurator.py@v0.5.17);
- #tokens = (rest − slots · per request) // cell, cell = K + V of one token over the full-attention layers only
  (``len(full_attention_layer_ids)``, model_runner.py@v0.5.2 profile_max_num_token);
- max_running_requests = min(default, slots // ratio), ratio 3 with the radix cache, + 2 for the extra buffer with
  the overlap schedule, 1 without the radix cache (model_runner.py@v0.5.4 ``MAMBA_CACHE_SIZE_MAX_RUNNING_REQUESTS_
  RATIO``; model_runner_kv_cache_mixin.py@v0.5.10 ``_calculate_mamba_ratio``);
- the pool allocates slots + 1 (mem_cache/memory_pool.py@v0.5.4 ``MambaPool``: ``(num_mamba_layers, size + 1)``).
Not modelled: speculative decoding's intermediate states, DP attention. ``knobs`` are ``engines.sglang.SglangKnobs``
(not imported here: ``engines.sglang`` calls this module).
"""

from __future__ import annotations

from dataclasses import dataclass

from shardsim.constants import CUDA_CONTEXT_BYTES, SGLANG_LOAD_OVERHEAD_BYTES, SGLANG_MAX_REQS, SGLANG_MIN_REQS
from shardsim.core.layout import Layout
from shardsim.core.memory.kv_cache import kv_bytes_per_token
from shardsim.core.memory.state import linear_layers_in, state_bytes_per_sequence_per_layer
from shardsim.core.model import ModelSpec, QuantConfig
from shardsim.engines.bands import error_bands
from shardsim.engines.common import EngineRankReport, EngineReport, rank_weights
from shardsim.engines.refusals import sglang_hybrid_refusal, sglang_loading_refusal, sglang_pool_refusal
from shardsim.engines.releases import SGLANG_RULES, Resolved, SglangRules
from shardsim.errors import ShardsimError
from shardsim.units import DTYPE_BYTES, GiB

MAMBA_RATIO_RADIX = 3
"""Slots per running request with the radix cache (model_runner.py@v0.5.4 MAMBA_CACHE_SIZE_MAX_RUNNING_REQUESTS_RATIO)."""
MAMBA_RATIO_EXTRA_BUFFER = 2
"""More slots per running request for the extra buffer (ping-pong) with the overlap schedule, on by default
(model_runner_kv_cache_mixin.py@v0.5.9 MAMBA_CACHE_V2_ADDITIONAL_RATIO_OVERLAP)."""
MAMBA_FIXED_SLOTS = 512
"""Slots without the radix cache and without --max-running-requests (model_runner.py@v0.5.2; until 0.5.8)."""
MAMBA_FULL_MEMORY_RATIO = 0.9
"""--mamba-full-memory-ratio default (server_args.py@v0.5.4; arg_groups/fields/schedule.py@v0.5.20 fallback 0.9)."""
CONV_STATE_BYTES = 2
"""The conv state is bf16 (configs/qwen3_next.py@v0.5.2; env SGLANG_MAMBA_CONV_DTYPE, configs/mamba_utils.py@v0.5.9)."""
SSM_DTYPES = {"float32": "fp32", "bfloat16": "bf16"}
STRATEGIES = ("auto", "no_buffer", "extra_buffer")


@dataclass(frozen=True, slots=True)
class PoolSizes:
    """One rank's state and KV pools as SGLang sizes them."""

    per_request: int  # state bytes of one request over the rank's linear layers
    slots: int  # max_mamba_cache_size
    slot_rule: str  # how the slots were chosen, in words
    state_pool_bytes: int  # MambaPool: (slots + 1) × per request
    kv_tokens: int  # max_total_num_tokens
    cell: int  # KV bytes per token over the full-attention layers
    strategy: str  # the radix cache's mamba strategy, or "radix cache off"
    ratio: int  # slots per running request
    default_requests: int  # max running requests before the state cap
    max_running: int  # min(default, slots // ratio)


def first_serving(arch: str) -> str:
    """The first SGLang release whose rules serve ``arch``."""
    return next((r.first_text for r in SGLANG_RULES if arch in r.hybrid_archs), "none")


HYBRID_ONLY = ("mamba_full_memory_ratio", "mamba_ssm_dtype", "max_mamba_cache_size", "disable_radix_cache",
               "mamba_scheduler_strategy", "mamba_radix_cache_strategy")
"""The knobs that only a hybrid's state pool reads; ``--max-running-requests`` caps every model's running batch
(and sizes its request table: ``predict_sglang``)."""


def _hybrid_knobs(knobs: "SglangKnobs") -> dict:
    names = HYBRID_ONLY + ("max_running_requests",)
    return {n: getattr(knobs, n) for n in names if getattr(knobs, n) not in (None, False)}


def check_hybrid_knobs(spec: ModelSpec, release: Resolved, knobs: "SglangKnobs") -> None:
    """The hybrid knobs' values, and that the model and the release have them; each refusal one line."""
    given, rules, v = _hybrid_knobs(knobs), release.rules, release.version
    flag = {n: "--" + n.replace("_", "-") for n in given}
    hybrid_only = [n for n in given if n in HYBRID_ONLY]
    if hybrid_only and not spec.is_hybrid:
        name = hybrid_only[0]
        raise ShardsimError(f"{flag[name]} applies to hybrid models (Qwen3-Next, Qwen3.5 / 3.6); {spec.name} has no "
                            "linear-attention layers")
    ratio = knobs.mamba_full_memory_ratio
    if ratio is not None and not 0 < ratio <= 100:
        raise ShardsimError(f"--mamba-full-memory-ratio {ratio} is out of range; accepted: (0, 100]")
    if knobs.mamba_ssm_dtype is not None and knobs.mamba_ssm_dtype not in SSM_DTYPES:
        raise ShardsimError(f"--mamba-ssm-dtype {knobs.mamba_ssm_dtype!r:.40}; accepted: float32, bfloat16")
    for name in ("max_mamba_cache_size", "max_running_requests"):
        if name in given and not 1 <= given[name] <= 100_000_000:
            raise ShardsimError(f"{flag[name]} {given[name]} is out of range; accepted: 1 … 100,000,000")
    for name in ("mamba_scheduler_strategy", "mamba_radix_cache_strategy"):
        if name in given and given[name] not in STRATEGIES:
            raise ShardsimError(f"{flag[name]} {given[name]!r:.40}; accepted: {', '.join(STRATEGIES)}")
    if not spec.is_hybrid:
        return
    if spec.architecture not in rules.hybrid_archs:
        first = first_serving(spec.architecture)
        raise ShardsimError(f"SGLang {v} does not serve {spec.architecture} (first in {first}); use "
                            f"--engine-version {first} or newer")
    if spec.speculative_tokens:
        raise ShardsimError("the SGLang hybrid profile does not model speculative decoding (MTP draft states)")
    if ratio is not None and rules.mamba_slots == "forced-off":
        raise ShardsimError(f"--mamba-full-memory-ratio is not an option of SGLang {v} (added in 0.5.4)")
    for name in ("mamba_scheduler_strategy", "mamba_radix_cache_strategy"):
        if name in given and flag[name] != rules.mamba_strategy_flag:
            takes = f"takes {rules.mamba_strategy_flag}" if rules.mamba_strategy_flag else "has no strategy flag (0.5.7+)"
            raise ShardsimError(f"{flag[name]} is not an option of SGLang {v}, which {takes}")


def ssm_dtype(spec: ModelSpec, rules: SglangRules, knobs: "SglangKnobs") -> tuple[str, str]:
    """(dtype, why) of the delta-rule memory: --mamba-ssm-dtype, else float32 (server_args.py@v0.5.2), from 0.5.9
    the config's mamba_ssm_dtype, else float32 (configs/mamba_utils.py@v0.5.9 mamba2_state_dtype)."""
    if knobs.mamba_ssm_dtype is not None:
        return SSM_DTYPES[knobs.mamba_ssm_dtype], "--mamba-ssm-dtype"
    if rules.mamba_ssm_default == "config" and spec.state_dtype is not None:
        return spec.state_dtype, "the config's mamba_ssm_dtype (configs/mamba_utils.py@v0.5.9 mamba2_state_dtype)"
    return "fp32", "float32 by default (server_args.py@v0.5.2 mamba_ssm_dtype; configs/mamba_utils.py@v0.5.9)"


def state_per_request(spec: ModelSpec, tp: int, first: int, last: int, ssm_bytes: int) -> int:
    """``mamba_cache_per_req`` on one rank: every linear-attention layer's bf16 conv state and delta-rule memory."""
    return linear_layers_in(spec, first, last) * state_bytes_per_sequence_per_layer(spec, tp, CONV_STATE_BYTES,
                                                                                   ssm_bytes)


def radix_on(rules: SglangRules, knobs: "SglangKnobs") -> bool:
    """The radix cache: forced off for GDN up to 0.5.3 (model_runner.py@v0.5.2 "Hybrid GDN model detected, disable
    radix cache"), on by default from 0.5.4 (MambaRadixCache) unless --disable-radix-cache."""
    return rules.mamba_slots != "forced-off" and not knobs.disable_radix_cache


def strategy_and_ratio(rules: SglangRules, knobs: "SglangKnobs") -> tuple[str, int]:
    """The mamba strategy and the slots per running request: 1 without the radix cache; 3 with it, + 2 for
    extra_buffer with the overlap schedule (model_runner_kv_cache_mixin.py@v0.5.10 _calculate_mamba_ratio); auto is
    no_buffer up to 0.5.13, extra_buffer from 0.5.14 (server_args.py@v0.5.14 _handle_mamba_radix_cache)."""
    if not radix_on(rules, knobs):
        return "radix cache off", 1
    if rules.mamba_strategy_flag is None:
        return "no_buffer", MAMBA_RATIO_RADIX
    given = knobs.mamba_scheduler_strategy or knobs.mamba_radix_cache_strategy or "auto"
    strategy = rules.mamba_auto_strategy if given == "auto" else given
    return strategy, MAMBA_RATIO_RADIX + (MAMBA_RATIO_EXTRA_BUFFER if strategy == "extra_buffer" else 0)


def state_slots(rules: SglangRules, knobs: "SglangKnobs", rest_gib: float, per_request: int) -> tuple[int, str]:
    """max_mamba_cache_size and how it was chosen (``SglangRules.mamba_slots``, sources there)."""
    size, running, rule, radix = knobs.max_mamba_cache_size, knobs.max_running_requests, rules.mamba_slots, \
        radix_on(rules, knobs)
    if rule == "forced-off" or (not radix and rule in ("ratio-radix", "ratio-size")):
        if size or running:
            return size or running, "--max-mamba-cache-size" if size else "--max-running-requests"
        return MAMBA_FIXED_SLOTS, f"{MAMBA_FIXED_SLOTS} (radix cache off)"
    if size is not None and rule != "ratio-radix":
        return size, "--max-mamba-cache-size"
    if rule == "ratio-fallback" and not radix and running is not None:
        return running, "--max-running-requests (radix cache off)"
    r = knobs.mamba_full_memory_ratio or MAMBA_FULL_MEMORY_RATIO
    budget = rest_gib * r / (1 + r) * (1 << 30)
    why = f"rest {rest_gib:.2f} GiB × {r:g}/(1 + {r:g}) = {budget / GiB:.2f} GiB"
    if rules.mamba_padding_counted:
        return int((budget - per_request) // per_request), f"({why} − 1 padding slot) // {per_request:,} B"
    return int(budget // per_request), f"{why} // {per_request:,} B"


def size_pools(rules: SglangRules, knobs: "SglangKnobs", rest_gib: float, per_request: int, cell: int,
               context: int) -> PoolSizes:
    """Both pools of one rank from the memory left after the weights (``rest_gib``, SGLang's GiB figure)."""
    slots, slot_rule = state_slots(rules, knobs, rest_gib, per_request)
    counted = slots + 1 if rules.mamba_padding_counted else slots
    rest = rest_gib - counted * per_request / (1 << 30)
    tokens = int(rest * (1 << 30) // cell) if rest > 0 else 0
    if knobs.max_total_tokens:
        tokens = min(tokens, knobs.max_total_tokens)
    default = knobs.max_running_requests or min(max(int(tokens / context * 512), SGLANG_MIN_REQS), SGLANG_MAX_REQS)
    if rules.reqs_capped_by_tokens:
        default = min(default, tokens // 2)
    strategy, ratio = strategy_and_ratio(rules, knobs)
    return PoolSizes(per_request, slots, slot_rule, (max(slots, 0) + 1) * per_request, tokens, cell, strategy, ratio,
                     default, max(min(default, slots // ratio), 0))


def _notes(spec: ModelSpec, rules: SglangRules, pools: PoolSizes, ssm: tuple[str, str], layers: int) -> list[str]:
    """Each step of the hybrid sizing with its source."""
    src = rules.mamba_source
    linear = spec.num_layers - spec.attention_layers
    notes = [
        f"state per request {pools.per_request:,} B: {linear} linear layers × (bf16 conv + {ssm[0]} delta-rule "
        f"memory, {ssm[0]} from {ssm[1]}) (configs/qwen3_next.py@v0.5.2 mamba_cache_per_req; "
        "configs/mamba_utils.py@v0.5.9 Mamba2CacheParams)",
        f"state slots (max_mamba_cache_size) {pools.slots:,} = {pools.slot_rule} ({src} handle_max_mamba_cache)",
        f"state pool {pools.state_pool_bytes / GiB:.2f} GiB = ({pools.slots:,} + 1 padding slot) × "
        f"{pools.per_request:,} B (mem_cache/memory_pool.py@v0.5.4 MambaPool, size + 1)",
        f"#tokens {pools.kv_tokens:,} = (rest − state) // {pools.cell:,} B per token over the {layers} full-attention "
        f"layers (model_runner.py@v0.5.2 profile_max_num_token, len(full_attention_layer_ids); {src})",
        f"max_running_requests {pools.max_running:,} = min({pools.default_requests:,}, {pools.slots:,} // "
        f"{pools.ratio}), {pools.ratio} slots per request ({pools.strategy}; model_runner.py@v0.5.4 "
        "MAMBA_CACHE_SIZE_MAX_RUNNING_REQUESTS_RATIO, model_runner_kv_cache_mixin.py@v0.5.10 _calculate_mamba_ratio)",
    ]
    if rules.mamba_slots == "forced-off":
        notes.append("radix cache forced off for GDN models (model_runner.py@v0.5.2: \"Hybrid GDN model detected, "
                     "disable radix cache\")")
    if pools.strategy == "no_buffer" and rules.mamba_strategy_flag:
        notes.append("no_buffer with the radix cache turns the overlap schedule off (server_args.py@v0.5.7)")
    return notes


def predict_sglang_hybrid(spec: ModelSpec, layout: Layout, capacity_bytes: int, release: Resolved,
                          knobs: "SglangKnobs", fraction: float, context: int, kv_bytes: int, dtype: str,
                          quant: QuantConfig) -> EngineReport:
    """``engines.sglang.predict_sglang`` for a hybrid (its release, fraction, context and KV dtype): the weights
    and rest as for any model, then the state and KV pools."""
    rules = release.rules
    ssm = ssm_dtype(spec, rules, knobs)
    free_before = capacity_bytes - CUDA_CONTEXT_BYTES
    rotary = spec.max_position_embeddings * spec.head_dim * 4  # fp32 cos/sin cache, as engines.sglang
    ranks, refusal, sizes = [], None, []
    for held in rank_weights(spec, layout, dtype, quant):
        usage = held.weight_bytes + rotary + SGLANG_LOAD_OVERHEAD_BYTES
        rest_gib = (free_before - usage) / GiB - free_before / GiB * (1 - fraction)
        full = held.layers - linear_layers_in(spec, held.first_layer, held.last_layer)
        per_request = state_per_request(spec, layout.tp, held.first_layer, held.last_layer, DTYPE_BYTES[ssm[0]])
        pools = size_pools(rules, knobs, rest_gib, per_request, kv_bytes_per_token(spec, kv_bytes, layout.tp, full),
                           context)
        kv_pool = (pools.kv_tokens + 1) * pools.cell
        req_table = pools.max_running * (context + 4) * 4
        ranks.append(EngineRankReport(
            rank=held.rank, layers=held.layers, model_loading_bytes=usage,
            available_kv_cache_bytes=int(rest_gib * GiB), kv_cache_bytes=kv_pool, kv_cache_tokens=pools.kv_tokens,
            used_bytes=CUDA_CONTEXT_BYTES + usage + kv_pool + pools.state_pool_bytes + req_table))
        sizes.append((pools, full))
        state = sglang_hybrid_refusal(pools.slots, pools.ratio, pools.max_running, rest_gib, per_request,
                                      rules.mamba_oom_error)  # raised inside the pool sizing from 0.5.13
        refusal = (refusal or sglang_loading_refusal(held.rank, usage, free_before)
                   or (state if rules.mamba_oom_error else None) or sglang_pool_refusal(pools.kv_tokens) or state)
    pools, full = min(sizes, key=lambda s: (s[0].max_running, s[0].kv_tokens))
    return EngineReport(
        engine="sglang", version=release.version, rules=rules.to_dict(),
        knobs={**knobs.model_dump(), "mem_fraction_static": fraction, "context_length": context},
        ranks=ranks, starts=refusal is None, refusal=refusal, kv_cache_tokens=pools.kv_tokens,
        max_concurrency=pools.kv_tokens / context if context else None,
        error_bands=error_bands("sglang", rules.label),
        notes=[n for n in (release.note, release.warning) if n]
        + ["mem usage includes device-level loading overhead (~0.12 GiB, from one published log)"]
        + _notes(spec, rules, pools, ssm, full),
        kv_bytes_per_token=pools.cell, state_bytes_per_sequence=pools.per_request, state_blocks=pools.slots,
        state_pool_bytes=pools.state_pool_bytes, max_running_requests=pools.max_running,
    )
