"""Every command-line option of shardsim, defined once: a flag means the same in every command that takes it.

Flags several commands share (``--engine``, ``--quant``, ``--cluster``, ``--gpu``, ``--context``, ``--batch``,
``--kv-dtype`` …) have one definition here. Options a review may repeat (``--quant``, ``--kv-dtype``, ``--cluster``)
are repeatable everywhere; a command that takes one value refuses a second (``common.single``). Defaults that
differ by command are ``None`` here and resolved in one place (``common.resolve_context``).
"""

from __future__ import annotations

from typing import Annotated, Optional

import typer


def whole_number(text: str | int) -> int:
    """An integer option as people write them: digits, an optional minus, an optional k/K/Ki or m/M/Mi suffix
    (8k = 8,192; ``units.parse_count``); no '1_000', '+8', ' 8' or '08' (Python's int() would take them)."""
    from shardsim.units import parse_count

    value = parse_count(text)
    if value is None:
        raise typer.BadParameter(f"{str(text)[:40]!r} is not a whole number (digits, optionally k or M: 8, 8k = 8192)")
    return value

def length_or_auto(text: str | int) -> int:
    """--max-model-len: a whole number, or ``auto`` / -1 (vLLM 0.14+: the longest that fits), returned as -1."""
    if str(text).strip().lower() in ("auto", "-1"):
        return -1
    return whole_number(text)


# ---------------------------------------------------------------- model and layout
ModelArg = Annotated[Optional[str], typer.Argument(
    help="preset: 0.6b 1.7b 4b 8b 14b 32b 30b-a3b 235b, full names or Hugging Face ids (Qwen/Qwen3-8B, any case; "
         "list: shardsim models), or a downloaded checkpoint folder (its safetensors headers are checked)",
    metavar="MODEL", show_default=False)]
ConfigOpt = Annotated[Optional[str], typer.Option("--config", metavar="PATH", show_default=False, help="a config.json (or its folder) instead of a preset")]
SpecTokensOpt = Annotated[int, typer.Option(
    "--speculative-tokens", parser=whole_number, metavar="N", show_default=False,
    help="MTP drafting: tokens per step, loads the MTP head [0]")]
TextOnlyOpt = Annotated[bool, typer.Option("--language-model-only", show_default=False,
                                           help="text only: the vision tower is not loaded")]
RopeScalingOpt = Annotated[Optional[str], typer.Option("--rope-scaling", metavar="yarn:F[:ORIG]", show_default=False, help="YaRN: a window of ORIG (max_position_embeddings) × F tokens")]
TpOpt = Annotated[int, typer.Option("--tp", parser=whole_number, metavar="N", show_default=False, help="tensor-parallel degree [1]")]
PpOpt = Annotated[int, typer.Option("--pp", parser=whole_number, metavar="N", show_default=False, help="pipeline-parallel degree [1]")]
DpOpt = Annotated[int, typer.Option("--dp", parser=whole_number, metavar="N", show_default=False, help="data-parallel replicas [1]")]
EpOpt = Annotated[int, typer.Option("--ep", parser=whole_number, metavar="N", show_default=False, help="expert-parallel degree (MoE), divides tp × dp [1]")]
ZeroOpt = Annotated[int, typer.Option("--zero", parser=whole_number, metavar="N", show_default=False, help="3: weights sharded over dp (ZeRO-3) [0]")]
PpSplitOpt = Annotated[Optional[str], typer.Option("--pp-split", metavar="N,N", show_default=False, help="layers per stage by hand, e.g. 48,46")]

# ---------------------------------------------------------------- workload and formats
ContextOpt = Annotated[Optional[int], typer.Option("--context", parser=whole_number, metavar="N", show_default=False, help="tokens per sequence [8192; validate: 128]")]
BatchOpt = Annotated[int, typer.Option("--batch", parser=whole_number, metavar="N", show_default=False, help="sequences in flight per replica [1]")]
DtypeOpt = Annotated[str, typer.Option("--dtype", metavar="DTYPE", show_default=False, help="weights: bf16 fp16 fp32 [bf16]")]
QuantOpt = Annotated[Optional[list[str]], typer.Option("--quant", metavar="FMT", show_default=False, help="none fp8 int8 int4 awq nvfp4 [checkpoint's]; fp8 on a base model = its published -FP8 checkpoint (e4m3, 128×128 block scales)")]
GroupOpt = Annotated[Optional[int], typer.Option("--group-size", parser=whole_number, metavar="N", show_default=False, help="int8/int4/awq group size [128]")]
KvDtypeOpt = Annotated[Optional[list[str]], typer.Option("--kv-dtype", metavar="DTYPE", show_default=False, help="KV cache: bf16 fp16 fp8 [bf16]")]
BlockOpt = Annotated[Optional[int], typer.Option("--block-size", parser=whole_number, metavar="N", show_default=False, help="KV cache page, tokens [16]")]

# ---------------------------------------------------------------- hardware
ClusterOpt = Annotated[Optional[list[str]], typer.Option("--cluster", metavar="NAME|YAML", show_default=False, help="a cluster spec (see: shardsim clusters)")]
GpuOpt = Annotated[Optional[str], typer.Option("--gpu", metavar="NAME", show_default=False, help="GPU type, 8 per node [h100] (shardsim gpus)")]
GpuMemOpt = Annotated[Optional[str], typer.Option("--gpu-memory", metavar="SIZE", show_default=False, help="a card of this capacity, e.g. 95.01GiB")]
InterconnectOpt = Annotated[Optional[str], typer.Option("--interconnect", metavar="KIND", show_default=False, help="nvswitch | nvlink | pcie [the cluster's]")]
JsonOpt = Annotated[bool, typer.Option("--json", show_default=False, help="one JSON object instead of tables")]
HtmlOpt = Annotated[Optional[str], typer.Option("--html", metavar="FILE", show_default=False, help="also write a one-file HTML report (offline, printable)")]

# ---------------------------------------------------------------- engines
EngineOpt = Annotated[Optional[str], typer.Option("--engine", metavar="NAME", show_default=False, help="the engine's own figures and start verdict")]
GpuUtilOpt = Annotated[Optional[float], typer.Option("--gpu-memory-utilization", metavar="F", show_default=False, help="vLLM: fraction of the GPU it takes [0.9]")]
MaxModelLenOpt = Annotated[Optional[int], typer.Option("--max-model-len", parser=length_or_auto, metavar="N|auto", show_default=False, help="vLLM: longest request, or auto [model's]")]
EngineVersionOpt = Annotated[Optional[str], typer.Option("--engine-version", metavar="X.Y.Z", show_default=False, help="engine / transformers release [newest]")]
KvCacheMemOpt = Annotated[Optional[str], typer.Option("--kv-cache-memory-bytes", metavar="SIZE", show_default=False, help="vLLM: KV cache size (0.10.2+), e.g. 40GiB")]
BatchedTokensOpt = Annotated[Optional[int], typer.Option("--max-num-batched-tokens", parser=whole_number,
    metavar="N", show_default=False, help="step budget, planner and vLLM [8192]")]
ChunkedPrefillOpt = Annotated[Optional[int], typer.Option("--chunked-prefill-size", parser=whole_number,
    metavar="N", show_default=False, help="step budget, SGLang's name [8192]")]
MaxSeqsOpt = Annotated[Optional[int], typer.Option("--max-num-seqs", parser=whole_number, metavar="N", show_default=False, help="vLLM: requests per step [by GPU]")]
InstallOpt = Annotated[Optional[str], typer.Option("--vllm-install", metavar="pip|docker", show_default=False, help="vLLM: docker has FlashInfer [pip]")]
CompileCacheOpt = Annotated[Optional[str], typer.Option("--compile-cache", metavar="cold|warm", show_default=False, help="vLLM: torch.compile cache, cold (first start) or warm (restart) [cold]")]
EntrypointOpt = Annotated[Optional[str], typer.Option("--vllm-entrypoint", metavar="serve|llm", show_default=False, help="vLLM: llm = vllm.LLM's defaults [serve]")]
LoadDtypeOpt = Annotated[Optional[str], typer.Option("--load-dtype", metavar="given|unset", show_default=False, help="hf: from_pretrained(dtype=…) or not [given]")]
DeviceMapOpt = Annotated[Optional[str], typer.Option("--device-map", metavar="MODE", show_default=False, help="accelerate: auto balanced balanced_low_0 …")]
MaxMemoryOpt = Annotated[Optional[str], typer.Option("--max-memory", metavar="SIZES", show_default=False, help="accelerate: per GPU, cpu=SIZE: 70GiB,cpu=1TiB")]
AllowOffloadOpt = Annotated[bool, typer.Option("--allow-offload", show_default=False, help="accelerate: accept modules on cpu / disk")]
EagerOpt = Annotated[bool, typer.Option("--enforce-eager", show_default=False, help="vLLM: no CUDA graphs")]
KvCacheDtypeOpt = Annotated[Optional[str], typer.Option("--kv-cache-dtype", metavar="auto|fp8", show_default=False, help="the engine's KV cache dtype [auto]")]
SamplerOpt = Annotated[Optional[str], typer.Option("--sampler", metavar="NAME", show_default=False, help="vLLM: native | triton (0.17+) | flashinfer")]
VllmVersionOpt = Annotated[Optional[str], typer.Option("--vllm-version", metavar="v1|v0", show_default=False, help="vLLM: engine core [v1]")]
MemFracOpt = Annotated[Optional[float], typer.Option("--mem-fraction-static", metavar="F", show_default=False, help="SGLang: static memory fraction [by GPU]")]
ContextLengthOpt = Annotated[Optional[int], typer.Option("--context-length", parser=whole_number, metavar="N", show_default=False, help="SGLang: longest request [model's]")]
MaxTotalTokensOpt = Annotated[Optional[int], typer.Option("--max-total-tokens", parser=whole_number, metavar="N", show_default=False, help="SGLang: cap on the KV pool's tokens")]
MambaRatioOpt = Annotated[Optional[float], typer.Option("--mamba-full-memory-ratio", metavar="F", show_default=False, help="SGLang hybrids (0.5.4+): state / KV memory [0.9]")]
MambaSsmDtypeOpt = Annotated[Optional[str], typer.Option("--mamba-ssm-dtype", metavar="float32|bfloat16", show_default=False, help="SGLang hybrids: delta-rule state dtype [float32; 0.5.9+: config's]")]
MaxMambaCacheOpt = Annotated[Optional[int], typer.Option("--max-mamba-cache-size", parser=whole_number, metavar="N", show_default=False, help="SGLang hybrids: state slots")]
MaxRunningOpt = Annotated[Optional[int], typer.Option("--max-running-requests", parser=whole_number, metavar="N", show_default=False, help="SGLang: running requests cap")]
NoRadixOpt = Annotated[bool, typer.Option("--disable-radix-cache", show_default=False, help="SGLang hybrids: no prefix cache (1 state slot per request)")]
MambaSchedOpt = Annotated[Optional[str], typer.Option("--mamba-scheduler-strategy", metavar="NAME", show_default=False, help="SGLang hybrids 0.5.7–0.5.13: auto no_buffer extra_buffer")]
MambaRadixOpt = Annotated[Optional[str], typer.Option("--mamba-radix-cache-strategy", metavar="NAME", show_default=False, help="SGLang hybrids 0.5.14+: auto no_buffer extra_buffer")]
MambaCacheDtypeOpt = Annotated[Optional[str], typer.Option("--mamba-cache-dtype", metavar="auto|bf16|fp16|fp32", show_default=False, help="vLLM hybrids: conv state (before 0.17 both states) [auto]")]
MambaSsmCacheDtypeOpt = Annotated[Optional[str], typer.Option("--mamba-ssm-cache-dtype", metavar="auto|bf16|fp16|fp32", show_default=False, help="vLLM hybrids 0.17+: delta-rule state [auto; Qwen3.5: config's]")]
MambaCacheModeOpt = Annotated[Optional[str], typer.Option("--mamba-cache-mode", metavar="none|align|all", show_default=False, help="vLLM hybrids 0.15+: state blocks with prefix caching [none]")]
PrefixCachingOpt = Annotated[Optional[bool], typer.Option("--enable-prefix-caching/--no-enable-prefix-caching", show_default=False, help="vLLM hybrids: prefix caching [release's: on from 0.26]")]
LimitMmOpt = Annotated[Optional[str], typer.Option("--limit-mm-per-prompt", metavar="image=N,video=N", show_default=False, help="vLLM vision models: items per prompt [999 each]; both 0: no vision tower")]
MmEncoderTpOpt = Annotated[Optional[str], typer.Option("--mm-encoder-tp-mode", metavar="weights|data", show_default=False, help="vLLM vision models: shard the encoder or replicate it per TP rank [weights]")]
SkipMmProfilingOpt = Annotated[bool, typer.Option("--skip-mm-profiling", show_default=False, help="vLLM vision models: the profile skips the encoder run")]
MmMaxPixelsOpt = Annotated[Optional[int], typer.Option("--mm-max-pixels", parser=whole_number, metavar="N", show_default=False, help="vLLM vision models: largest image in pixels [16,777,216 = 4096²]")]
PromptTokensOpt = Annotated[Optional[int], typer.Option("--prompt-tokens", parser=whole_number, metavar="N", show_default=False, help="hf: generate() prompt length [1]")]
GenerateTokensOpt = Annotated[Optional[int], typer.Option("--generate-tokens", parser=whole_number, metavar="N", show_default=False, help="hf: generate() new tokens [2048]")]

# ---------------------------------------------------------------- review
ModelsOpt = Annotated[Optional[list[str]], typer.Option(
    "--model", help="preset (0.6b … 235b, or 'all' for the eight) or a config.json path; repeatable")]
WorkloadOpt = Annotated[Optional[str], typer.Option(
    "--workload", help="a workload YAML file, or the name of a shipped one (e.g. example)")]
ConcurrencyOpt = Annotated[Optional[int], typer.Option("--concurrency", parser=whole_number, help="simultaneous requests \\[default: 1]")]
ByOpt = Annotated[str, typer.Option("--by", help="rank by the purchase price or the hourly price of the GPUs used")]
CatalogOpt = Annotated[Optional[str], typer.Option("--catalog", help="a directory of cluster YAML files \\[default: cluster_specs/]")]
MaxGpusOpt = Annotated[Optional[int], typer.Option("--max-gpus", parser=whole_number, help="only layouts on at most this many GPUs")]
TopOpt = Annotated[int, typer.Option("--top", parser=whole_number, help="fitting options shown per model (0: all)")]
MissesOpt = Annotated[int, typer.Option("--misses", parser=whole_number, help="nearest misses shown per model")]

# ---------------------------------------------------------------- sweep
ContextsOpt = Annotated[str, typer.Option("--contexts", help="contexts to sweep, e.g. 4096,8192,32768 (8k = 8192)")]
BatchesOpt = Annotated[str, typer.Option("--batches", help="batches to sweep, e.g. 1,8,32")]
GpuCountsOpt = Annotated[Optional[str], typer.Option("--gpus", help="sweep every layout on each of these GPU counts, e.g. 1,2,4,8")]
CsvOpt = Annotated[Optional[str], typer.Option("--csv", help="write the rows as CSV to this file ('-': stdout)")]
ChartOpt = Annotated[Optional[str], typer.Option("--chart", help="write PNG charts into this directory (needs matplotlib)")]

# ---------------------------------------------------------------- speed
InputTokensOpt = Annotated[int, typer.Option("--input-tokens", parser=whole_number, metavar="N", show_default=False, help="prompt tokens per request [1024]")]
OutputTokensOpt = Annotated[int, typer.Option("--output-tokens", parser=whole_number, metavar="N", show_default=False, help="output tokens per request [256]")]
RequestRateOpt = Annotated[Optional[float], typer.Option("--request-rate", metavar="R", show_default=False, help="requests per second, open loop (instead of --concurrency)")]
NumPromptsOpt = Annotated[Optional[int], typer.Option("--num-prompts", parser=whole_number, metavar="N", show_default=False, help="N requests sent at once, an offline batch (instead of --concurrency)")]
TtftTargetOpt = Annotated[Optional[float], typer.Option("--ttft-ms", metavar="X", show_default=False, help="TTFT target: the largest concurrency within it")]
TpotTargetOpt = Annotated[Optional[float], typer.Option("--tpot-ms", metavar="Y", show_default=False, help="TPOT target: the largest concurrency within it")]
MinHeadroomOpt = Annotated[Optional[float], typer.Option("--min-headroom", metavar="FRACTION", show_default=False, help="review: rank only options with this share of the GPU's budget free [0.05]")]
ExplainOpt = Annotated[bool, typer.Option("--explain", show_default=False, help="the arithmetic behind every figure")]
SpeedOpt = Annotated[bool, typer.Option("--speed", help="serving speed: TTFT, TPOT, throughput per row (default file: the shipped serving benchmarks)")]

# ---------------------------------------------------------------- calibrate
MeasurementsArg = Annotated[Optional[str], typer.Argument(help="measurements, one JSON object per line (see ../shared/calibration); with --speed: serving benchmarks, or a vllm bench serve result .json", show_default=False)]
CheckOpt = Annotated[bool, typer.Option("--check", help="exit 1 when a row falls outside its bounds (for CI)")]
PlanCheckOpt = Annotated[bool, typer.Option("--check", help="exit 0 FITS, 1 DOES NOT FIT / WILL NOT START, 3 BORDERLINE (2: bad input)")]

# ---------------------------------------------------------------- validate
BackendOpt = Annotated[str, typer.Option("--backend", help="torch | deepspeed | transformers; --train: deepspeed | fsdp")]
StepsOpt = Annotated[int, typer.Option("--steps", parser=whole_number, help="validate --train: optimizer steps \\[2]")]
AddressOpt = Annotated[Optional[str], typer.Option("--address", help="Ray cluster: auto or HOST:PORT \\[default: a local one]")]
DeviceOpt = Annotated[str, typer.Option("--device", help="cpu (gloo) or cuda (nccl)")]
DecodeStepsOpt = Annotated[int, typer.Option("--decode-steps", parser=whole_number, help="greedy decode steps after the prefill")]
LayersOpt = Annotated[Optional[int], typer.Option("--layers", parser=whole_number, help="keep the full width and the first K decoder layers")]
CheckpointOpt = Annotated[Optional[str], typer.Option(
    "--checkpoint", help="a real HF checkpoint directory \\[default: write a seeded one]")]
TimeoutOpt = Annotated[float, typer.Option("--timeout", help="seconds allowed per phase")]
RunDirOpt = Annotated[Optional[str], typer.Option(
    "--run-dir", help="where results.jsonl goes \\[default: <build>/runs/<time>-<model>-<layout>]")]
FaultOpt = Annotated[Optional[str], typer.Option("--inject-fault", hidden=True, help="RANK:PHASE kills that rank's worker")]


# ---------------------------------------------------------------- training (plan --train)
TrainOpt = Annotated[bool, typer.Option("--train", show_default=False, help="training memory (the same as: shardsim train)")]
FrameworkOpt = Annotated[Optional[str], typer.Option("--framework", metavar="NAME", show_default=False, help="deepspeed fsdp megatron ddp torch [deepspeed]")]
FsdpOpt = Annotated[Optional[str], typer.Option("--fsdp", metavar="MODE", show_default=False, help="FSDP2: full | grad-op | hybrid [full]")]
CpOpt = Annotated[Optional[int], typer.Option("--cp", parser=whole_number, metavar="N", show_default=False, help="context-parallel degree (Megatron) [1]")]
EtpOpt = Annotated[Optional[int], typer.Option("--etp", parser=whole_number, metavar="N", show_default=False, help="expert tensor-parallel degree [tp / ep]")]
SeqParOpt = Annotated[bool, typer.Option("--sequence-parallel", show_default=False, help="Megatron: activations split over TP")]
DistOptOpt = Annotated[bool, typer.Option("--distributed-optimizer", show_default=False, help="Megatron: optimizer and master over DP")]
MicroBatchOpt = Annotated[Optional[int], typer.Option("--micro-batch", parser=whole_number, metavar="N", show_default=False, help="sequences per micro-batch [1]")]
SeqLenOpt = Annotated[Optional[int], typer.Option("--seq-len", parser=whole_number, metavar="N", show_default=False, help="tokens per sequence [4096]")]
GradAccumOpt = Annotated[Optional[int], typer.Option("--grad-accum", parser=whole_number, metavar="N", show_default=False, help="micro-batches per step [1; with PP: pp]")]
RecomputeOpt = Annotated[Optional[str], typer.Option("--recompute", metavar="MODE", show_default=False, help="none | selective | full [none]")]
OptimizerOpt = Annotated[Optional[str], typer.Option("--optimizer", metavar="NAME", show_default=False, help="adamw adamw-8bit adamw-bf16 sgd [adamw]")]
LoraRankOpt = Annotated[Optional[int], typer.Option("--lora-rank", parser=whole_number, metavar="N", show_default=False, help="LoRA rank, adapters on every linear")]
QloraOpt = Annotated[bool, typer.Option("--qlora", show_default=False, help="LoRA on an NF4 (4-bit) base")]
OffloadOptOpt = Annotated[bool, typer.Option("--offload-optimizer", show_default=False, help="optimizer states on the CPU")]
OffloadParamsOpt = Annotated[bool, typer.Option("--offload-params", show_default=False, help="DeepSpeed ZeRO-3: parameters on the CPU")]
HostMemOpt = Annotated[Optional[str], typer.Option("--host-memory", metavar="SIZE", show_default=False, help="CPU memory per node for offload, e.g. 1TiB")]
ScheduleOpt = Annotated[Optional[str], typer.Option("--schedule", metavar="NAME", show_default=False, help="Megatron PP: 1f1b | interleaved [1f1b]")]
VirtualOpt = Annotated[Optional[int], typer.Option("--virtual-stages", parser=whole_number, metavar="N", show_default=False, help="interleaved chunks per stage [1]")]
CapacityOpt = Annotated[Optional[float], typer.Option("--capacity-factor", metavar="F", show_default=False, help="MoE expert capacity factor [dropless]")]
EagerAttnOpt = Annotated[bool, typer.Option("--eager-attention", show_default=False, help="eager attention (s² scores) instead of flash")]


ENGINE_KNOBS = {
    "gpu_memory_utilization": GpuUtilOpt, "max_model_len": MaxModelLenOpt, "max_num_seqs": MaxSeqsOpt,
    "enforce_eager": EagerOpt, "sampler": SamplerOpt, "version": VllmVersionOpt, "kv_cache_memory_bytes": KvCacheMemOpt,
    "install": InstallOpt, "compile_cache": CompileCacheOpt, "entrypoint": EntrypointOpt, "mamba_cache_dtype": MambaCacheDtypeOpt,
    "mamba_ssm_cache_dtype": MambaSsmCacheDtypeOpt, "mamba_cache_mode": MambaCacheModeOpt,
    "enable_prefix_caching": PrefixCachingOpt, "limit_mm_per_prompt": LimitMmOpt, "mm_encoder_tp_mode": MmEncoderTpOpt,
    "skip_mm_profiling": SkipMmProfilingOpt, "mm_max_pixels": MmMaxPixelsOpt,
    "mem_fraction_static": MemFracOpt, "context_length": ContextLengthOpt, "max_total_tokens": MaxTotalTokensOpt,
    "mamba_full_memory_ratio": MambaRatioOpt, "mamba_ssm_dtype": MambaSsmDtypeOpt,
    "max_mamba_cache_size": MaxMambaCacheOpt, "max_running_requests": MaxRunningOpt, "disable_radix_cache": NoRadixOpt,
    "mamba_scheduler_strategy": MambaSchedOpt, "mamba_radix_cache_strategy": MambaRadixOpt,
    "prompt_tokens": PromptTokensOpt, "generate_tokens": GenerateTokensOpt, "load_dtype": LoadDtypeOpt,
    "device_map": DeviceMapOpt, "max_memory": MaxMemoryOpt, "allow_offload": AllowOffloadOpt,
}
"""Each engine's own knobs by their field name in the engine's knobs model (``engines.registry``): ``plan`` reads
them from its extra arguments (``cli.engine_flags``) instead of declaring each, and ``plan --engine NAME --help``
lists the named engine's."""


# ---------------------------------------------------------------- help headings (cli.help.GroupedCommand)
PANELS = {
    "Model and layout": (ModelArg, ConfigOpt, SpecTokensOpt, TextOnlyOpt, RopeScalingOpt, TpOpt, PpOpt, DpOpt, EpOpt, ZeroOpt, PpSplitOpt, CpOpt, EtpOpt),
    "Workload and formats": (ContextOpt, BatchOpt, DtypeOpt, QuantOpt, GroupOpt, KvDtypeOpt, BlockOpt,
                             BatchedTokensOpt, ChunkedPrefillOpt),
    "Hardware and output": (ClusterOpt, GpuOpt, GpuMemOpt, InterconnectOpt, JsonOpt, HtmlOpt, PlanCheckOpt),
    "Engine: --engine vllm | sglang | hf | accelerate, and its knobs": (
        EngineOpt, EngineVersionOpt, KvCacheDtypeOpt, GpuUtilOpt, MaxModelLenOpt, MaxSeqsOpt, EagerOpt, SamplerOpt,
        VllmVersionOpt, KvCacheMemOpt, InstallOpt, CompileCacheOpt, EntrypointOpt, MemFracOpt, ContextLengthOpt, MaxTotalTokensOpt,
        MambaCacheDtypeOpt, MambaSsmCacheDtypeOpt, MambaCacheModeOpt, PrefixCachingOpt, LimitMmOpt, MmEncoderTpOpt,
        SkipMmProfilingOpt, MmMaxPixelsOpt, MambaRatioOpt, MambaSsmDtypeOpt, MaxMambaCacheOpt, MaxRunningOpt, NoRadixOpt, MambaSchedOpt, MambaRadixOpt,
        PromptTokensOpt, GenerateTokensOpt, LoadDtypeOpt, DeviceMapOpt, MaxMemoryOpt, AllowOffloadOpt),
    "Speed: workload and targets": (InputTokensOpt, OutputTokensOpt, RequestRateOpt, NumPromptsOpt, TtftTargetOpt,
                                    TpotTargetOpt,
                                    ExplainOpt),
    "Strategy": (FrameworkOpt, FsdpOpt, SeqParOpt, DistOptOpt, ScheduleOpt, VirtualOpt, CapacityOpt),
    "Batch and memory savers": (MicroBatchOpt, SeqLenOpt, GradAccumOpt, RecomputeOpt, OptimizerOpt, EagerAttnOpt,
                                LoraRankOpt, QloraOpt, OffloadOptOpt, OffloadParamsOpt, HostMemOpt),
}
"""The heading each option is listed under in a command's help."""

for _panel, _options in PANELS.items():
    for _option in _options:
        _option.__metadata__[0].rich_help_panel = _panel
