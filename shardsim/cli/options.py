"""Every command-line option of shardsim, defined once: a flag means the same in every command that takes it.

Flags several commands share (``--engine``, ``--quant``, ``--cluster``, ``--gpu``, ``--context``, ``--batch``,
``--kv-dtype`` …) have one definition here. Options a review may repeat (``--quant``, ``--kv-dtype``, ``--cluster``)
are repeatable everywhere; a command that takes one value refuses a second (``common.single``). Defaults that
differ by command are ``None`` here and resolved in one place (``common.resolve_context``).
"""

from __future__ import annotations

import re
from typing import Annotated, Optional

import typer


def whole_number(text: str | int) -> int:
    """An integer option as people write them: digits, an optional minus; no '1_000', '+8', ' 8' or '08'
    (Python's int() would take them)."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    if not re.fullmatch(r"-?(0|[1-9][0-9]{0,17})", str(text)):
        raise typer.BadParameter(f"{str(text)[:40]!r} is not a whole number (digits only, e.g. 8)")
    return int(text)

def length_or_auto(text: str | int) -> int:
    """--max-model-len: a whole number, or ``auto`` / -1 (vLLM 0.14+: the longest that fits), returned as -1."""
    if str(text).strip().lower() in ("auto", "-1"):
        return -1
    return whole_number(text)


# ---------------------------------------------------------------- model and layout
ModelArg = Annotated[Optional[str], typer.Argument(
    help="preset: 0.6b 1.7b 4b 8b 14b 32b 30b-a3b 235b (or full names)", show_default=False)]
ConfigOpt = Annotated[Optional[str], typer.Option("--config", help="a Hugging Face config.json (or its directory) instead of a preset")]
TpOpt = Annotated[int, typer.Option("--tp", parser=whole_number, help="tensor-parallel degree")]
PpOpt = Annotated[int, typer.Option("--pp", parser=whole_number, help="pipeline-parallel degree")]
DpOpt = Annotated[int, typer.Option("--dp", parser=whole_number, help="data-parallel replicas")]
EpOpt = Annotated[int, typer.Option("--ep", parser=whole_number, help="expert-parallel degree (MoE); divides tp × dp")]
ZeroOpt = Annotated[int, typer.Option("--zero", parser=whole_number, help="3: shard weights over dp (ZeRO-3 / FSDP)")]
PpSplitOpt = Annotated[Optional[str], typer.Option("--pp-split", help="layers per stage by hand, e.g. 48,46")]

# ---------------------------------------------------------------- workload and formats
ContextOpt = Annotated[Optional[int], typer.Option(
    "--context", parser=whole_number, help="tokens per sequence, prompt + generated \\[default: 8192; validate: 128]")]
BatchOpt = Annotated[int, typer.Option("--batch", parser=whole_number, help="sequences in flight per model replica")]
DtypeOpt = Annotated[str, typer.Option("--dtype", help="weight dtype: bf16 fp16 fp32")]
QuantOpt = Annotated[Optional[list[str]], typer.Option(
    "--quant", help="weight format: none fp8 int8 int4 awq nvfp4 (review: repeatable) \\[default: the checkpoint's own]")]
GroupOpt = Annotated[Optional[int], typer.Option("--group-size", parser=whole_number, help="int8/int4/awq group size \\[128]")]
KvDtypeOpt = Annotated[Optional[list[str]], typer.Option(
    "--kv-dtype", help="KV cache dtype: bf16 fp16 fp8 (review: repeatable) \\[default: bf16]")]
BlockOpt = Annotated[Optional[int], typer.Option("--block-size", parser=whole_number, help="KV cache page size in tokens \\[default: 16]")]

# ---------------------------------------------------------------- hardware
ClusterOpt = Annotated[Optional[list[str]], typer.Option(
    "--cluster", help="a cluster spec: name in cluster_specs/ or a YAML path (review: repeatable)")]
GpuOpt = Annotated[Optional[str], typer.Option(
    "--gpu", help="GPU type: plan/sweep use as many as the layout needs, 8 per node \\[h100]; review keeps its clusters")]
GpuMemOpt = Annotated[Optional[str], typer.Option("--gpu-memory", help="plan for a card of this capacity, e.g. 95.01GiB")]
InterconnectOpt = Annotated[Optional[str], typer.Option(
    "--interconnect", help="how a node's GPUs are wired: nvswitch | nvlink | pcie \\[the cluster's; --gpu: from the card]")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print one JSON object instead of tables")]

# ---------------------------------------------------------------- engines
EngineOpt = Annotated[Optional[str], typer.Option(
    "--engine", help="vllm | sglang | hf | accelerate: the engine's own figures and start verdict (review: vllm); none: the planner")]
GpuUtilOpt = Annotated[Optional[float], typer.Option(
    "--gpu-memory-utilization", help="vLLM: fraction of the GPU it may take \\[0.9]")]
MaxModelLenOpt = Annotated[Optional[int], typer.Option(
    "--max-model-len", parser=length_or_auto, help="vLLM: longest request, or auto (0.14+) \\[model's max]")]
EngineVersionOpt = Annotated[Optional[str], typer.Option(
    "--engine-version", help="the vLLM, SGLang or (hf) transformers release, e.g. 0.11.0 \\[newest: vLLM 0.33.0, SGLang 0.5.23, transformers 5.24.0]")]
KvCacheMemOpt = Annotated[Optional[str], typer.Option(
    "--kv-cache-memory-bytes", help="vLLM 0.10.2+: the KV cache size, e.g. 40GiB (gpu_memory_utilization then ignored)")]
BatchedTokensOpt = Annotated[Optional[int], typer.Option(
    "--max-num-batched-tokens", parser=whole_number,
    help="tokens per forward step (the step budget), planner and vLLM \\[planner 8192; vLLM: by release and GPU]")]
ChunkedPrefillOpt = Annotated[Optional[int], typer.Option(
    "--chunked-prefill-size", parser=whole_number,
    help="SGLang's step budget (also the planner's) \\[planner 8192; SGLang: by release and GPU]")]
MaxSeqsOpt = Annotated[Optional[int], typer.Option("--max-num-seqs", parser=whole_number, help="vLLM: requests per step \\[by GPU]")]
InstallOpt = Annotated[Optional[str], typer.Option(
    "--vllm-install", help="vLLM: pip (PyPI wheel) or docker (vllm/vllm-openai image, FlashInfer installed) \\[pip]")]
EntrypointOpt = Annotated[Optional[str], typer.Option(
    "--vllm-entrypoint", help="vLLM: serve (OpenAI server) or llm (offline vllm.LLM: its own batch defaults) \\[serve]")]
LoadDtypeOpt = Annotated[Optional[str], typer.Option(
    "--load-dtype", help="hf: given (from_pretrained(dtype=…)) or unset (no dtype: float32 before transformers 5) \\[given]")]
DeviceMapOpt = Annotated[Optional[str], typer.Option(
    "--device-map", help="accelerate: auto | balanced | balanced_low_0 | sequential \\[auto]")]
MaxMemoryOpt = Annotated[Optional[str], typer.Option(
    "--max-memory", help="accelerate: max_memory, one SIZE for every GPU or one per GPU, and cpu=SIZE, e.g. 70GiB,cpu=200GiB")]
AllowOffloadOpt = Annotated[bool, typer.Option("--allow-offload", help="accelerate: accept modules on cpu/disk")]
EagerOpt = Annotated[bool, typer.Option("--enforce-eager", help="vLLM: no CUDA graphs")]
KvCacheDtypeOpt = Annotated[Optional[str], typer.Option("--kv-cache-dtype", help="vLLM/SGLang: auto or fp8")]
SamplerOpt = Annotated[Optional[str], typer.Option(
    "--sampler", help="vLLM: native (PyTorch sort), triton (0.17+) or flashinfer \\[the release's default]")]
VllmVersionOpt = Annotated[Optional[str], typer.Option("--vllm-version", help="vLLM engine: v1 (0.10+) or v0")]
MemFracOpt = Annotated[Optional[float], typer.Option("--mem-fraction-static", help="SGLang: static memory fraction \\[by GPU]")]
ContextLengthOpt = Annotated[Optional[int], typer.Option("--context-length", parser=whole_number, help="SGLang: longest request \\[model's max]")]
MaxTotalTokensOpt = Annotated[Optional[int], typer.Option("--max-total-tokens", parser=whole_number, help="SGLang: cap on KV pool tokens")]
PromptTokensOpt = Annotated[Optional[int], typer.Option("--prompt-tokens", parser=whole_number, help="HF generate: prompt length \\[1]")]
GenerateTokensOpt = Annotated[Optional[int], typer.Option("--generate-tokens", parser=whole_number, help="HF generate: new tokens \\[2048]")]

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

# ---------------------------------------------------------------- calibrate
MeasurementsArg = Annotated[str, typer.Argument(help="measurements, one JSON object per line (see ../shared/calibration)")]
CheckOpt = Annotated[bool, typer.Option("--check", help="exit 1 when a row falls outside its bounds (for CI)")]

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
TrainOpt = Annotated[bool, typer.Option("--train", help="training memory instead of serving")]
FrameworkOpt = Annotated[Optional[str], typer.Option("--framework", help="train: deepspeed | fsdp | megatron | ddp \\[deepspeed]")]
FsdpOpt = Annotated[Optional[str], typer.Option("--fsdp", help="train, FSDP2: full | grad-op | hybrid \\[full]")]
CpOpt = Annotated[Optional[int], typer.Option("--cp", parser=whole_number, help="train, Megatron: context-parallel degree")]
EtpOpt = Annotated[Optional[int], typer.Option("--etp", parser=whole_number, help="train, Megatron: expert tensor-parallel degree (tp / ep)")]
SeqParOpt = Annotated[bool, typer.Option("--sequence-parallel", help="train, Megatron: split activations over TP")]
DistOptOpt = Annotated[bool, typer.Option("--distributed-optimizer", help="train, Megatron: shard optimizer and master over DP")]
MicroBatchOpt = Annotated[Optional[int], typer.Option("--micro-batch", parser=whole_number, help="train: sequences per micro-batch \\[1]")]
SeqLenOpt = Annotated[Optional[int], typer.Option("--seq-len", parser=whole_number, help="train: tokens per sequence \\[4096]")]
GradAccumOpt = Annotated[Optional[int], typer.Option("--grad-accum", parser=whole_number, help="train: micro-batches per step \\[1; PP: pp]")]
RecomputeOpt = Annotated[Optional[str], typer.Option("--recompute", help="train: none | selective | full \\[none]")]
OptimizerOpt = Annotated[Optional[str], typer.Option("--optimizer", help="train: adamw | adamw-8bit | adamw-bf16 (bf16 moments) | sgd \\[adamw]")]
LoraRankOpt = Annotated[Optional[int], typer.Option("--lora-rank", parser=whole_number, help="train: LoRA rank (adapters on every linear)")]
QloraOpt = Annotated[bool, typer.Option("--qlora", help="train: LoRA on an NF4 (4-bit, double-quantized) base")]
OffloadOptOpt = Annotated[bool, typer.Option("--offload-optimizer", help="train, DeepSpeed ZeRO 1-3: optimizer on CPU")]
OffloadParamsOpt = Annotated[bool, typer.Option("--offload-params", help="train, DeepSpeed ZeRO-3: parameters on CPU")]
HostMemOpt = Annotated[Optional[str], typer.Option("--host-memory", help="train: CPU memory per node for offloading, e.g. 1TiB")]
ScheduleOpt = Annotated[Optional[str], typer.Option("--schedule", help="train, Megatron PP: 1f1b | interleaved \\[1f1b]")]
VirtualOpt = Annotated[Optional[int], typer.Option("--virtual-stages", parser=whole_number, help="train: interleaved chunks per stage")]
CapacityOpt = Annotated[Optional[float], typer.Option("--capacity-factor", help="train, MoE: expert capacity factor \\[dropless]")]
EagerAttnOpt = Annotated[bool, typer.Option("--eager-attention", help="train: eager attention (s² scores kept) instead of flash")]
