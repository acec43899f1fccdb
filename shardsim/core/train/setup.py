"""What a training run is: framework, sharding strategy, degrees beyond the layout, batch shape, recompute,
optimizer, adapters and offload; validated once, with every refusal in one place (``check_setup``).

Frameworks and their conventions (sources cited where each term is priced, ``states.py``):
- ``deepspeed``: ZeRO stage 0–3 over the data-parallel ranks, bf16 parameters with fp32 master copies;
- ``fsdp``: FSDP2 through accelerate, fp32 sharded parameters computed in bf16 (``full``: shard everything,
  ``grad-op``: keep parameters whole between forward and backward, ``hybrid``: shard inside a node, replicate
  across nodes);
- ``megatron``: Megatron-LM style TP / PP / SP / CP / EP with fp32 master weights and, with
  ``--distributed-optimizer``, optimizer state and master weights sharded over data parallel;
- ``ddp``: plain PyTorch DDP with AMP (fp32 parameters, fp32 gradients, bf16 compute);
- ``torch``: torch-native tensor parallel (DTensor ``parallelize_module``) and pipeline parallel
  (``torch.distributed.pipelining``, 1F1B) of the transformers model, bf16 parameters, gradients and AdamW states
  (what ``validate --train --backend torch`` runs).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from shardsim.core.layout import Layout
from shardsim.core.model import ModelSpec
from shardsim.errors import ShardsimError

FRAMEWORKS = ("deepspeed", "fsdp", "megatron", "ddp", "torch")
FSDP_MODES = ("full", "grad-op", "hybrid")
RECOMPUTE = ("none", "selective", "full")
OPTIMIZERS = ("adamw", "adamw-8bit", "adamw-bf16", "sgd")
SCHEDULES = ("1f1b", "interleaved")


class TrainSetup(BaseModel):
    """A training run's choices beyond the model and the TP × PP × DP × EP layout."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    framework: str = "deepspeed"
    zero: int = 0
    fsdp: str = "full"
    cp: int = 1
    sequence_parallel: bool = False
    distributed_optimizer: bool = False
    schedule: str = "1f1b"
    virtual_stages: int = 1
    micro_batch: int = 1
    seq_len: int = 4096
    grad_accum: int = 1
    recompute: str = "none"
    optimizer: str = "adamw"
    lora_rank: int = 0
    lora_alpha: int = 16
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    qlora: bool = False
    offload_optimizer: bool = False
    offload_params: bool = False
    host_memory_bytes: int | None = None
    capacity_factor: float | None = None  # MoE: None = dropless
    flash_attention: bool = True

    @property
    def lora(self) -> bool:
        return self.lora_rank > 0 or self.qlora

    @property
    def tokens(self) -> int:
        """Tokens of one micro-batch on one rank (context parallel splits the sequence)."""
        return self.micro_batch * self.seq_len // self.cp


def check_setup(spec: ModelSpec, layout: Layout, setup: TrainSetup) -> TrainSetup:
    """Every refusal of a training setup, with what is accepted."""
    s = setup
    for name, value, accepted in (("--framework", s.framework, FRAMEWORKS), ("--fsdp", s.fsdp, FSDP_MODES),
                                  ("--recompute", s.recompute, RECOMPUTE), ("--optimizer", s.optimizer, OPTIMIZERS),
                                  ("--schedule", s.schedule, SCHEDULES)):
        if value not in accepted:
            raise ShardsimError(f"{name} {value!r:.40} is not known; accepted: {', '.join(accepted)}")
    if not 0 <= s.zero <= 3:
        raise ShardsimError(f"--zero {s.zero} is not a ZeRO stage; accepted: 0, 1, 2, 3")
    if s.zero and s.framework != "deepspeed":
        raise ShardsimError(f"--zero is DeepSpeed's; with --framework {s.framework} use "
                            + ("--fsdp full|grad-op|hybrid" if s.framework == "fsdp" else "--distributed-optimizer"
                               if s.framework == "megatron" else "--framework deepspeed"))
    if s.framework == "deepspeed" and s.zero >= 2 and layout.pp > 1:
        raise ShardsimError(f"DeepSpeed's pipeline engine runs with ZeRO stage 0 or 1 only, not --zero {s.zero} with "
                            f"--pp {layout.pp} (deepspeed/runtime/pipe/engine.py asserts zero_stage < 2)")
    if s.framework == "torch" and (s.cp > 1 or s.sequence_parallel or layout.ep > 1):
        raise ShardsimError("--framework torch runs tensor parallel (DTensor) and pipeline parallel "
                            "(torch.distributed.pipelining); use --framework megatron for "
                            "--cp/--ep/--sequence-parallel")
    if s.framework == "torch" and layout.tp > spec.num_kv_heads:
        raise ShardsimError(f"--framework torch splits k/v_proj by rows: --tp {layout.tp} is above the "
                            f"{spec.num_kv_heads} KV heads of {spec.name}")
    if s.framework in ("deepspeed", "fsdp", "ddp") and (layout.tp > 1 or s.cp > 1 or s.sequence_parallel):
        raise ShardsimError(f"--framework {s.framework} has no tensor, context or sequence parallelism here; "
                            "use --framework megatron for --tp/--cp/--sequence-parallel")
    if s.framework in ("fsdp", "ddp") and layout.pp > 1:
        raise ShardsimError(f"--framework {s.framework} has no pipeline parallelism; use --framework megatron or "
                            "deepspeed (ZeRO 0/1) for --pp")
    if s.distributed_optimizer and s.framework != "megatron":
        raise ShardsimError("--distributed-optimizer is Megatron's; DeepSpeed shards the optimizer with --zero 1")
    if layout.ep > 1 and not spec.is_moe:
        raise ShardsimError(f"--ep {layout.ep} needs experts; {spec.name} is a dense model (accepted: --ep 1)")
    if s.sequence_parallel and layout.tp == 1:
        raise ShardsimError("--sequence-parallel splits activations over the TP ranks; it needs --tp 2 or more")
    if s.schedule == "interleaved" and (s.framework != "megatron" or layout.pp == 1 or s.virtual_stages < 2):
        raise ShardsimError("--schedule interleaved needs --framework megatron, --pp 2+ and --virtual-stages 2+")
    if s.virtual_stages > 1 and spec.num_layers % (layout.pp * s.virtual_stages):
        raise ShardsimError(f"--virtual-stages {s.virtual_stages} × --pp {layout.pp} must divide the "
                            f"{spec.num_layers} layers")
    _check_sizes(spec, layout, s)
    _check_adapters(spec, s)
    return s


def _check_sizes(spec: ModelSpec, layout: Layout, s: TrainSetup) -> None:
    for name, value, top in (("--micro-batch", s.micro_batch, 1 << 20), ("--seq-len", s.seq_len, 1 << 24),
                             ("--cp", s.cp, 1024), ("--grad-accum", s.grad_accum, 1 << 20),
                             ("--virtual-stages", s.virtual_stages, 64)):
        if not 1 <= value <= top:
            raise ShardsimError(f"{name} {value} is out of range; accepted: 1 … {top:,}")
    if s.seq_len % s.cp:
        raise ShardsimError(f"--cp {s.cp} must divide --seq-len {s.seq_len}")
    if s.cp > 1 and s.framework != "megatron":
        raise ShardsimError("--cp is Megatron's context parallelism; use --framework megatron")
    if s.capacity_factor is not None and not 0 < s.capacity_factor <= 64:
        raise ShardsimError(f"--capacity-factor {s.capacity_factor} is out of range; accepted: (0, 64]")
    if s.offload_params and s.framework != "deepspeed":
        raise ShardsimError("--offload-params is DeepSpeed ZeRO-3's (offload_param); Megatron offloads the optimizer "
                            "only (--offload-optimizer)")
    if s.offload_optimizer and s.framework not in ("deepspeed", "megatron"):
        raise ShardsimError("--offload-optimizer is modelled for DeepSpeed ZeRO (offload_optimizer) and Megatron "
                            "(--optimizer-cpu-offload)")
    if s.offload_params and s.zero != 3:
        raise ShardsimError("--offload-params needs --zero 3 (DeepSpeed offloads parameters only in stage 3)")
    if s.offload_optimizer and s.zero == 0 and s.framework == "deepspeed":
        raise ShardsimError("--offload-optimizer needs --zero 1, 2 or 3")
    if (s.offload_optimizer or s.offload_params) and s.host_memory_bytes is None:
        raise ShardsimError("offloading needs a CPU budget: give --host-memory SIZE (per node), e.g. 1TiB")
    if s.host_memory_bytes is not None and not (s.offload_optimizer or s.offload_params):
        raise ShardsimError("--host-memory is the CPU budget of offloading; give --offload-optimizer or "
                            "--offload-params")
    _ = layout


def _check_adapters(spec: ModelSpec, s: TrainSetup) -> None:
    if s.lora_rank < 0:
        raise ShardsimError(f"--lora-rank {s.lora_rank} must be ≥ 1")
    if s.qlora and s.lora_rank == 0:
        raise ShardsimError("--qlora trains LoRA adapters on a 4-bit base: give --lora-rank too, e.g. 16")
    if s.lora_rank > spec.hidden_size:
        raise ShardsimError(f"--lora-rank {s.lora_rank} is above the hidden size {spec.hidden_size} of {spec.name}; "
                            f"accepted: 1 … {spec.hidden_size}")
    if s.qlora and spec.quant.method != "none":
        raise ShardsimError(f"--qlora quantizes a bf16 base to NF4; {spec.name} is already {spec.quant.method} "
                            "(QLoRA with fp8 / int4 weights is not a thing): use the bf16 checkpoint")
    unknown = set(s.lora_targets) - {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    if unknown:
        raise ShardsimError(f"LoRA target(s) {', '.join(sorted(unknown))} are not linears of Qwen3; accepted: "
                            "q_proj k_proj v_proj o_proj gate_proj up_proj down_proj")
    if s.lora and s.framework == "megatron":
        raise ShardsimError("LoRA is modelled with PEFT on DeepSpeed, FSDP or DDP; use one of those frameworks")
