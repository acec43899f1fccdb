"""SGLang's and transformers' release rule rows (``engines/releases.py`` holds vLLM's, the tables and ``resolve``):
one ``RuleRow`` shape, rows by first release, each rule cited."""

from __future__ import annotations

from dataclasses import dataclass, replace

from shardsim.engines.rule_row import RuleRow, Version


@dataclass(frozen=True, slots=True)
class SglangRules(RuleRow):
    """How one range of SGLang releases picks ``mem_fraction_static`` and sizes its pools."""

    first: Version
    label: str
    # "tp-table" (server_args.py@v0.4.6: ≤ 80 GiB by tp: 0.88/0.87/0.85/0.81/0.79; else (gpu − 13 GiB)/gpu);
    # "reserve-table" (server_args.py@v0.4.7.post1 … @v0.5.2: reserved (9.5 + tp·pp/2) GiB on < 90 GiB GPUs, …);
    # "reserve-formula" (server_args.py@v0.5.3 _handle_gpu_memory_settings: 512 MiB + 1.5 × max(chunked prefill,
    # 2048) + 2 × cuda_graph_max_bs + tp·pp/8 GiB, at least 10 GiB above 60 GiB GPUs).
    reserve: str
    # Piecewise CUDA graphs on by default, reserving 8 MiB per prefill capture size (server_args.py@v0.5.10).
    piecewise_graphs: bool
    # max running requests also capped at tokens // 2 (model_runner_kv_cache_mixin.py@v0.5.10 _resolve_max_num_reqs).
    reqs_capped_by_tokens: bool
    # The < 35 GiB tier: chunked prefill 4096 and 48/160 graph batch (arg_groups/memory_hook.py@v0.5.20) instead of
    # 2048 and 24/80.
    small_gpu_tier_2026: bool = False
    # Hybrid GDN models (Qwen3-Next, Qwen3.5 / 3.6; engines/sglang_hybrid.py). The architectures served:
    # Qwen3NextForCausalLM from configs/qwen3_next.py@v0.5.2; Qwen3_5ForConditionalGeneration and
    # Qwen3_5MoeForConditionalGeneration from configs/qwen3_5.py@v0.5.9. Empty: no hybrid is served.
    hybrid_archs: tuple[str, ...] = ()
    # The file@release that sizes the state pool, cited in the report (``handle_max_mamba_cache``).
    mamba_source: str = ""
    # How the state slots (max_mamba_cache_size) are chosen:
    # "forced-off": the radix cache is forced off ("Hybrid GDN model detected, disable radix cache"), slots =
    #   --max-mamba-cache-size or --max-running-requests or 512 (model_executor/model_runner.py@v0.5.2 and @v0.5.3);
    # "ratio-radix": radix cache on (MambaRadixCache); slots = rest·r/(1+r) // per request with
    #   r = --mamba-full-memory-ratio; with --disable-radix-cache: size or running requests or 512, an explicit
    #   --max-mamba-cache-size counting only then (model_executor/model_runner.py@v0.5.4 handle_max_mamba_cache);
    # "ratio-size": --max-mamba-cache-size always honoured, radix off: running requests or 512
    #   (model_executor/model_runner_kv_cache_mixin.py@v0.5.7 handle_max_mamba_cache);
    # "ratio-fallback": size, else (radix off with --max-running-requests) that, else the ratio split
    #   (model_executor/model_runner_kv_cache_mixin.py@v0.5.9 handle_max_mamba_cache).
    mamba_slots: str = "forced-off"
    # The strategy flag: None; "--mamba-scheduler-strategy" (server_args.py@v0.5.7); "--mamba-radix-cache-strategy"
    # (server_args.py@v0.5.14).
    mamba_strategy_flag: str | None = None
    # What "auto" resolves to: "no_buffer" (server_args.py@v0.5.7); "extra_buffer" with the overlap schedule, on by
    # default, for Qwen3-Next and Qwen3.5 (server_args.py@v0.5.14 _handle_mamba_radix_cache).
    mamba_auto_strategy: str = "no_buffer"
    # The delta-rule memory's dtype when --mamba-ssm-dtype is not given: "float32" (server_args.py@v0.5.2
    # ``mamba_ssm_dtype: str = "float32"``); "config": the config's mamba_ssm_dtype, else float32 (server_args.py@v0.5.9
    # default None; configs/mamba_utils.py@v0.5.9 mamba2_state_dtype).
    mamba_ssm_default: str = "float32"
    # "Not enough GPU memory for hybrid (mamba/linear-attention) state cache. …" when no slot fits
    # (model_executor/model_runner_kv_cache_mixin.py@v0.5.13 handle_max_mamba_cache).
    mamba_oom_error: bool = False
    # The pool's padding slot is counted: state = (slots + 1) · per request, slots = (budget − per request) //
    # per request (mem_cache/kv_cache_configurator.py@v0.5.17 _handle_max_mamba_cache).
    mamba_padding_counted: bool = False



def _sglang_rows() -> tuple[SglangRules, ...]:
    """SGLang's rows. From 0.5.2 rows also start where the hybrid rules change; ``label`` names the dense rule set
    (engines/bands.py and the calibration group by it), ``mamba_source`` the hybrid file@release."""
    mixin, conf = "model_executor/model_runner_kv_cache_mixin.py", "mem_cache/kv_cache_configurator.py"
    next_only = ("Qwen3NextForCausalLM",)
    qwen35 = next_only + ("Qwen3_5ForConditionalGeneration", "Qwen3_5MoeForConditionalGeneration")
    r046 = SglangRules((0, 4, 6), "SGLang 0.4.6 rules", "tp-table", False, False)
    r047 = SglangRules((0, 4, 7), "SGLang 0.4.7–0.5.2 rules", "reserve-table", False, False)
    r052 = replace(r047, first=(0, 5, 2), hybrid_archs=next_only, mamba_source="model_executor/model_runner.py@v0.5.2")
    r053 = replace(r052, first=(0, 5, 3), label="SGLang 0.5.3–0.5.9 rules", reserve="reserve-formula",
                   mamba_source="model_executor/model_runner.py@v0.5.3")
    r054 = replace(r053, first=(0, 5, 4), mamba_slots="ratio-radix", mamba_source="model_executor/model_runner.py@v0.5.4")
    r057 = replace(r054, first=(0, 5, 7), mamba_slots="ratio-size", mamba_strategy_flag="--mamba-scheduler-strategy",
                   mamba_source=f"{mixin}@v0.5.7")
    r059 = replace(r057, first=(0, 5, 9), hybrid_archs=qwen35, mamba_slots="ratio-fallback", mamba_ssm_default="config",
                   mamba_source=f"{mixin}@v0.5.9")
    r0510 = replace(r059, first=(0, 5, 10), label="SGLang 0.5.10–0.5.19 rules", piecewise_graphs=True,
                    reqs_capped_by_tokens=True, mamba_source=f"{mixin}@v0.5.10")
    r0513 = replace(r0510, first=(0, 5, 13), mamba_oom_error=True, mamba_source=f"{mixin}@v0.5.13")
    r0514 = replace(r0513, first=(0, 5, 14), mamba_strategy_flag="--mamba-radix-cache-strategy",
                    mamba_auto_strategy="extra_buffer", mamba_source=f"{mixin}@v0.5.14")
    r0516 = replace(r0514, first=(0, 5, 16), mamba_source=f"{conf}@v0.5.16")
    r0517 = replace(r0516, first=(0, 5, 17), mamba_padding_counted=True, mamba_source=f"{conf}@v0.5.17")
    r0520 = replace(r0517, first=(0, 5, 20), label="SGLang 0.5.20+ rules", small_gpu_tier_2026=True,
                    mamba_source=f"{conf}@v0.5.20")
    return r046, r047, r052, r053, r054, r057, r059, r0510, r0513, r0514, r0516, r0517, r0520


SGLANG_RULES: tuple[SglangRules, ...] = _sglang_rows()

@dataclass(frozen=True, slots=True)
class TransformersRules(RuleRow):
    """How one range of transformers releases loads a checkpoint (``--engine hf``)."""

    first: Version
    label: str
    # ``from_pretrained`` without a dtype: float32 before 5.0, the checkpoint's dtype ("auto") from 5.0
    # (huggingface/transformers#42805, merged 2025-12-11 for v5; modeling_utils.py@v5.24.0 from_pretrained:
    # ``if dtype is None: dtype = "auto"``).
    default_load_dtype: str



TRANSFORMERS_RULES: tuple[TransformersRules, ...] = (
    # Qwen3 (models/qwen3, models/qwen3_moe) first shipped in transformers v4.51.0 (release notes, 2025-04-29).
    TransformersRules((4, 51, 0), "transformers 4.51–4.57 rules", "float32"),
    TransformersRules((5, 0, 0), "transformers 5.x rules", "auto"),
)
