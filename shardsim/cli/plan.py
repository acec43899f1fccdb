"""``shardsim plan``: the memory of every GPU for one model on one layout, and optionally the engine's own figures."""

from __future__ import annotations

from shardsim.cli import common
from shardsim.cli.options import (
    AllowOffloadOpt,
    BatchedTokensOpt,
    BatchOpt,
    BlockOpt,
    CapacityOpt,
    ChunkedPrefillOpt,
    ClusterOpt,
    ConfigOpt,
    ContextLengthOpt,
    ContextOpt,
    CpOpt,
    DeviceMapOpt,
    DistOptOpt,
    DpOpt,
    DtypeOpt,
    EagerAttnOpt,
    EagerOpt,
    EngineOpt,
    EngineVersionOpt,
    EntrypointOpt,
    EpOpt,
    EtpOpt,
    FrameworkOpt,
    FsdpOpt,
    GenerateTokensOpt,
    GpuMemOpt,
    GpuOpt,
    GpuUtilOpt,
    GradAccumOpt,
    GroupOpt,
    HostMemOpt,
    InstallOpt,
    InterconnectOpt,
    JsonOpt,
    KvCacheDtypeOpt,
    KvCacheMemOpt,
    KvDtypeOpt,
    LoadDtypeOpt,
    LoraRankOpt,
    MaxMemoryOpt,
    MaxModelLenOpt,
    MaxSeqsOpt,
    MaxTotalTokensOpt,
    MemFracOpt,
    MicroBatchOpt,
    ModelArg,
    OffloadOptOpt,
    OffloadParamsOpt,
    OptimizerOpt,
    PpOpt,
    PpSplitOpt,
    PromptTokensOpt,
    QloraOpt,
    QuantOpt,
    RecomputeOpt,
    SamplerOpt,
    ScheduleOpt,
    SeqLenOpt,
    SeqParOpt,
    TpOpt,
    TrainOpt,
    VirtualOpt,
    VllmVersionOpt,
    ZeroOpt,
)


def plan(
    model: ModelArg = None, config: ConfigOpt = None,
    tp: TpOpt = 1, pp: PpOpt = 1, dp: DpOpt = 1, ep: EpOpt = 1, zero: ZeroOpt = 0, pp_split: PpSplitOpt = None,
    context: ContextOpt = None, batch: BatchOpt = 1,
    dtype: DtypeOpt = "bf16", quant: QuantOpt = None, group_size: GroupOpt = None, kv_dtype: KvDtypeOpt = None,
    block_size: BlockOpt = None,
    cluster: ClusterOpt = None, gpu: GpuOpt = None, gpu_memory: GpuMemOpt = None, interconnect: InterconnectOpt = None, as_json: JsonOpt = False,
    engine: EngineOpt = None, gpu_memory_utilization: GpuUtilOpt = None, max_model_len: MaxModelLenOpt = None,
    max_num_batched_tokens: BatchedTokensOpt = None, max_num_seqs: MaxSeqsOpt = None, enforce_eager: EagerOpt = False,
    kv_cache_dtype: KvCacheDtypeOpt = None, sampler: SamplerOpt = None, vllm_version: VllmVersionOpt = None,
    mem_fraction_static: MemFracOpt = None, context_length: ContextLengthOpt = None,
    max_total_tokens: MaxTotalTokensOpt = None, chunked_prefill_size: ChunkedPrefillOpt = None,
    prompt_tokens: PromptTokensOpt = None, generate_tokens: GenerateTokensOpt = None,
    engine_version: EngineVersionOpt = None, kv_cache_memory_bytes: KvCacheMemOpt = None,
    vllm_install: InstallOpt = None, vllm_entrypoint: EntrypointOpt = None, load_dtype: LoadDtypeOpt = None,
    device_map: DeviceMapOpt = None, max_memory: MaxMemoryOpt = None, allow_offload: AllowOffloadOpt = False,
    train: TrainOpt = False, framework: FrameworkOpt = None, fsdp: FsdpOpt = None, cp: CpOpt = None, etp: EtpOpt = None,
    sequence_parallel: SeqParOpt = False, distributed_optimizer: DistOptOpt = False, micro_batch: MicroBatchOpt = None,
    seq_len: SeqLenOpt = None, grad_accum: GradAccumOpt = None, recompute: RecomputeOpt = None,
    optimizer: OptimizerOpt = None, lora_rank: LoraRankOpt = None, qlora: QloraOpt = False,
    offload_optimizer: OffloadOptOpt = False, offload_params: OffloadParamsOpt = False, host_memory: HostMemOpt = None,
    schedule: ScheduleOpt = None, virtual_stages: VirtualOpt = None, capacity_factor: CapacityOpt = None,
    eager_attention: EagerAttnOpt = False,
) -> None:
    """Memory of every GPU for MODEL on a TP × PP × DP × EP layout (serving, or training with --train), the fit
    verdict and the largest context/batch (or micro-batch/sequence)."""
    from shardsim.cli.train import dispatch_train

    if dispatch_train(dict(locals())):
        return None
    from shardsim.core.layout import Layout, validate_layout
    from shardsim.core.plan import plan as make_plan
    from shardsim.engines import ENGINES
    from shardsim.engines.refusals import fp8_block_refusal
    from shardsim.presets import resolve_model

    engine = common.check_engine(engine, ENGINES, "plan")
    from shardsim.units import parse_size

    auto_len = max_model_len == -1
    knobs = common.engine_knobs(engine, dict(
        engine_version=engine_version, max_model_len_auto=auto_len or None,
        kv_cache_memory_bytes=parse_size(kv_cache_memory_bytes) if kv_cache_memory_bytes is not None else None,
        gpu_memory_utilization=gpu_memory_utilization, max_model_len=None if auto_len else max_model_len,
        max_num_batched_tokens=max_num_batched_tokens, max_num_seqs=max_num_seqs, enforce_eager=enforce_eager or None,
        kv_cache_dtype=kv_cache_dtype, block_size=block_size, sampler=sampler, version=vllm_version,
        mem_fraction_static=mem_fraction_static, context_length=context_length, max_total_tokens=max_total_tokens,
        chunked_prefill_size=chunked_prefill_size, prompt_tokens=prompt_tokens, generate_tokens=generate_tokens, batch=batch,
        install=vllm_install, entrypoint=vllm_entrypoint, load_dtype=load_dtype, device_map=device_map, max_memory=max_memory, allow_offload=allow_offload or None))
    spec = resolve_model(model, config)
    layout = validate_layout(spec, Layout(tp=tp, pp=pp, dp=dp, ep=ep, zero=zero, pp_split=common.parse_split(pp_split)))
    workload = common.workload(common.resolve_context(context), batch,
                               common.step_budget(max_num_batched_tokens, chunked_prefill_size), dtype,
                               common.single(quant, "--quant"), group_size, common.single(kv_dtype, "--kv-dtype"),
                               block_size)
    hw = common.hardware(cluster, gpu, gpu_memory, layout.world_size, layout, interconnect)
    quant_format = workload.quant if workload.quant is not None else spec.quant
    refusal = fp8_block_refusal(spec, layout, quant_format)
    warnings = list(hw.warnings) + ([f"vLLM refuses this layout: {refusal}"] if refusal else [])
    report = make_plan(spec, layout, workload, hw.capacity_bytes, fabric=hw.fabric,
                       cluster_name=hw.cluster.name, gpu_name=hw.cluster.gpu.name, warnings=warnings)
    engine_rep = None
    if engine:
        from shardsim.engines.run import engine_report

        gpu_spec = hw.cluster.gpu
        engine_rep = engine_report(engine, spec, layout, hw.capacity_bytes, gpu_spec.name, gpu_spec.compute_capability,
                                   gpu_spec.nvidia_smi_total_bytes, workload.dtype, report.quant, knobs, hw.fabric)
    if as_json:
        out = report.to_dict()
        if engine_rep is not None:
            out["engine"] = engine_rep.to_dict()
        return common.print_json(out)
    from shardsim.render.plan_text import render_engine, render_plan

    out_console = common.console()
    render_plan(report, out_console)
    if engine_rep is not None:
        render_engine(engine_rep, out_console)


def register(app) -> None:
    app.command()(plan)
