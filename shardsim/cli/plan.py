"""``shardsim plan``: the memory of every GPU serving one model on one layout, and optionally the engine's own
figures (``--engine``). Training is ``shardsim train`` (``plan --train`` is its alias)."""

from __future__ import annotations

from shardsim.cli import build, common
from shardsim.cli.options import (
    AllowOffloadOpt,
    BatchedTokensOpt,
    BatchOpt,
    BlockOpt,
    ChunkedPrefillOpt,
    ClusterOpt,
    ConfigOpt,
    ContextLengthOpt,
    ContextOpt,
    DeviceMapOpt,
    DpOpt,
    DtypeOpt,
    EagerOpt,
    EngineOpt,
    EngineVersionOpt,
    EntrypointOpt,
    EpOpt,
    GenerateTokensOpt,
    GpuMemOpt,
    GpuOpt,
    GpuUtilOpt,
    GroupOpt,
    InstallOpt,
    InterconnectOpt,
    JsonOpt,
    KvCacheDtypeOpt,
    KvCacheMemOpt,
    KvDtypeOpt,
    MambaCacheDtypeOpt,
    MambaCacheModeOpt,
    MambaRadixOpt,
    MambaRatioOpt,
    MambaSchedOpt,
    MambaSsmCacheDtypeOpt,
    MambaSsmDtypeOpt,
    MaxMambaCacheOpt,
    MaxRunningOpt,
    LoadDtypeOpt,
    MaxMemoryOpt,
    MaxModelLenOpt,
    MaxSeqsOpt,
    MaxTotalTokensOpt,
    MemFracOpt,
    ModelArg,
    NoRadixOpt,
    PpOpt,
    PrefixCachingOpt,
    PpSplitOpt,
    PromptTokensOpt,
    QuantOpt,
    SamplerOpt,
    SpecTokensOpt,
    TextOnlyOpt,
    TpOpt,
    VllmVersionOpt,
    ZeroOpt,
)

EXAMPLES = """Memory of every GPU serving MODEL on a TP × PP × DP × EP layout, the verdict, the largest context
and batch; with --engine, the engine's own start-up figures and whether it starts.

\b
Examples:
  shardsim plan 235b --tp 8 --pp 2
  shardsim plan 32b --tp 2 --context 32768 --batch 8 --gpu a100-80gb
  shardsim plan 32b --engine vllm --gpu h100 --max-model-len 32768
  shardsim plan 30b-a3b --engine sglang --tp 2 --ep 2 --json
Training: shardsim train MODEL … (plan --train is the same)."""


def plan(
    model: ModelArg = None, config: ConfigOpt = None, speculative_tokens: SpecTokensOpt = 0,
    language_model_only: TextOnlyOpt = False,
    tp: TpOpt = 1, pp: PpOpt = 1, dp: DpOpt = 1, ep: EpOpt = 1, zero: ZeroOpt = 0, pp_split: PpSplitOpt = None,
    context: ContextOpt = None, batch: BatchOpt = 1,
    dtype: DtypeOpt = "bf16", quant: QuantOpt = None, group_size: GroupOpt = None, kv_dtype: KvDtypeOpt = None,
    block_size: BlockOpt = None,
    cluster: ClusterOpt = None, gpu: GpuOpt = None, gpu_memory: GpuMemOpt = None, interconnect: InterconnectOpt = None,
    as_json: JsonOpt = False,
    engine: EngineOpt = None, gpu_memory_utilization: GpuUtilOpt = None, max_model_len: MaxModelLenOpt = None,
    max_num_batched_tokens: BatchedTokensOpt = None, max_num_seqs: MaxSeqsOpt = None, enforce_eager: EagerOpt = False,
    kv_cache_dtype: KvCacheDtypeOpt = None, sampler: SamplerOpt = None, vllm_version: VllmVersionOpt = None,
    mem_fraction_static: MemFracOpt = None, context_length: ContextLengthOpt = None,
    max_total_tokens: MaxTotalTokensOpt = None, chunked_prefill_size: ChunkedPrefillOpt = None,
    prompt_tokens: PromptTokensOpt = None, generate_tokens: GenerateTokensOpt = None,
    engine_version: EngineVersionOpt = None, kv_cache_memory_bytes: KvCacheMemOpt = None,
    vllm_install: InstallOpt = None, vllm_entrypoint: EntrypointOpt = None, load_dtype: LoadDtypeOpt = None,
    device_map: DeviceMapOpt = None, max_memory: MaxMemoryOpt = None, allow_offload: AllowOffloadOpt = False,
    mamba_full_memory_ratio: MambaRatioOpt = None, mamba_ssm_dtype: MambaSsmDtypeOpt = None,
    max_mamba_cache_size: MaxMambaCacheOpt = None, max_running_requests: MaxRunningOpt = None,
    disable_radix_cache: NoRadixOpt = False, mamba_scheduler_strategy: MambaSchedOpt = None,
    mamba_radix_cache_strategy: MambaRadixOpt = None, mamba_cache_dtype: MambaCacheDtypeOpt = None,
    mamba_ssm_cache_dtype: MambaSsmCacheDtypeOpt = None, mamba_cache_mode: MambaCacheModeOpt = None,
    enable_prefix_caching: PrefixCachingOpt = None,
) -> None:
    request = build.serve_request(
        build.ModelOptions(model, config, speculative_tokens, language_model_only),
        build.LayoutOptions(tp, pp, dp, ep, zero, pp_split),
        build.WorkloadOptions(context, batch, max_num_batched_tokens, chunked_prefill_size, dtype, quant, group_size,
                              kv_dtype, block_size),
        build.HardwareOptions(cluster, gpu, gpu_memory, interconnect),
        build.EngineOptions(engine, build.engine_knob_options(
            engine_version=engine_version, max_model_len=max_model_len,
            kv_cache_memory_bytes=kv_cache_memory_bytes, gpu_memory_utilization=gpu_memory_utilization,
            max_num_batched_tokens=max_num_batched_tokens, max_num_seqs=max_num_seqs, enforce_eager=enforce_eager,
            kv_cache_dtype=kv_cache_dtype, block_size=block_size, sampler=sampler, version=vllm_version,
            mem_fraction_static=mem_fraction_static, context_length=context_length,
            max_total_tokens=max_total_tokens, chunked_prefill_size=chunked_prefill_size,
            prompt_tokens=prompt_tokens, generate_tokens=generate_tokens, batch=batch, install=vllm_install,
            entrypoint=vllm_entrypoint, load_dtype=load_dtype, device_map=device_map, max_memory=max_memory,
            allow_offload=allow_offload, mamba_full_memory_ratio=mamba_full_memory_ratio,
            mamba_ssm_dtype=mamba_ssm_dtype, max_mamba_cache_size=max_mamba_cache_size,
            max_running_requests=max_running_requests, disable_radix_cache=disable_radix_cache or None,
            mamba_scheduler_strategy=mamba_scheduler_strategy,
            mamba_radix_cache_strategy=mamba_radix_cache_strategy, mamba_cache_dtype=mamba_cache_dtype,
            mamba_ssm_cache_dtype=mamba_ssm_cache_dtype, mamba_cache_mode=mamba_cache_mode,
            enable_prefix_caching=enable_prefix_caching)),
    )
    run_plan(request, as_json, build.ModelOptions(model, config).checkpoint())


plan.__doc__ = EXAMPLES


def run_plan(request, as_json: bool, checkpoint=None) -> None:
    """Plan a ServeRequest and print it (tables, or one JSON object); ``checkpoint`` (``CheckpointFacts`` of a
    checkpoint folder) is held against the planned weight total."""
    from shardsim.core.plan import plan_request
    from shardsim.presets.checkpoints import CheckpointCheck

    report = plan_request(request)
    check = CheckpointCheck(checkpoint, report.weight_bytes) if checkpoint is not None else None
    engine_rep = None
    if request.engine is not None:
        from shardsim.engines.run import engine_report

        engine_rep = engine_report(request)
    if as_json:
        out = report.to_dict()
        if check is not None:
            out["checkpoint"] = check.to_dict()
            out["warnings"] = out.get("warnings", []) + ([check.warning()] if check.warning() else [])
        if engine_rep is not None:
            out["engine"] = engine_rep.to_dict()
        return common.print_json(out)
    from shardsim.render.plan_text import render_engine, render_plan

    out_console = common.console()
    render_plan(report, out_console, check)
    if engine_rep is not None:
        render_engine(engine_rep, out_console)


def register(app) -> None:
    from shardsim.cli.help import GroupedCommand

    app.command(help=EXAMPLES, cls=GroupedCommand)(plan)
