"""What a training run is (``choices.TrainSetup``: framework, sharding strategy, degrees beyond the layout, batch
shape, recompute, optimizer, adapters and offload), validated once: every refusal is raised from here
(``check_setup``), the generic ones written below, each framework's own in its module (``frameworks/``), asked at
the same place in the order they have always been checked.

The frameworks and their conventions: ``frameworks/__init__.py`` (sources cited where each term is priced).
"""

from __future__ import annotations

from shardsim.core.layout import Layout
from shardsim.core.model import ModelSpec
from shardsim.core.train.choices import TrainSetup
from shardsim.core.train.frameworks import FRAMEWORKS as REGISTRY
from shardsim.errors import ShardsimError

FRAMEWORKS = tuple(REGISTRY)   # the --framework names, in the registry's order (check_setup reads it live)
FSDP_MODES = ("full", "grad-op", "hybrid")
RECOMPUTE = ("none", "selective", "full")
OPTIMIZERS = ("adamw", "adamw-8bit", "adamw-bf16", "sgd")
SCHEDULES = ("1f1b", "interleaved")


def check_setup(spec: ModelSpec, layout: Layout, setup: TrainSetup) -> TrainSetup:
    """Every refusal of a training setup, with what is accepted."""
    s = setup
    for name, value, accepted in (("--framework", s.framework, tuple(REGISTRY)), ("--fsdp", s.fsdp, FSDP_MODES),
                                  ("--recompute", s.recompute, RECOMPUTE), ("--optimizer", s.optimizer, OPTIMIZERS),
                                  ("--schedule", s.schedule, SCHEDULES)):
        if value not in accepted:
            raise ShardsimError(f"{name} {value!r:.40} is not known; accepted: {', '.join(accepted)}")
    if not 0 <= s.zero <= 3:
        raise ShardsimError(f"--zero {s.zero} is not a ZeRO stage; accepted: 0, 1, 2, 3")
    framework = REGISTRY[s.framework]
    framework.check(spec, layout, s)   # its degrees, and the options of other frameworks
    if spec.linear is not None:
        _check_hybrid(spec, layout, s)
    if layout.ep > 1 and not spec.is_moe:
        raise ShardsimError(f"--ep {layout.ep} needs experts; {spec.name} is a dense model (accepted: --ep 1)")
    if s.sequence_parallel and layout.tp == 1:
        raise ShardsimError("--sequence-parallel splits activations over the TP ranks; it needs --tp 2 or more")
    if s.schedule == "interleaved" and (not framework.interleaved_schedule or layout.pp == 1 or s.virtual_stages < 2):
        raise ShardsimError("--schedule interleaved needs --framework megatron, --pp 2+ and --virtual-stages 2+")
    if s.virtual_stages > 1 and spec.num_layers % (layout.pp * s.virtual_stages):
        raise ShardsimError(f"--virtual-stages {s.virtual_stages} × --pp {layout.pp} must divide the "
                            f"{spec.num_layers} layers")
    _check_sizes(spec, layout, s)
    _check_adapters(spec, s)
    return s


def _check_hybrid(spec: ModelSpec, layout: Layout, s: TrainSetup) -> None:
    """A hybrid (Gated-DeltaNet layers) is priced as the transformers model trains it, whole on each rank
    (``core.train.deltanet_activations``): not Megatron's own layers, not transformers' tensor-parallel plan, not
    a selective recompute of an attention core it does not have."""
    if not REGISTRY[s.framework].runs_transformers_model:
        raise ShardsimError(f"{spec.name} is a hybrid (Gated-DeltaNet layers): --framework {s.framework} is not "
                            "modelled for it; accepted: deepspeed, fsdp, ddp, torch (--pp only)")
    if layout.tp > 1:
        raise ShardsimError(f"{spec.name} is a hybrid: transformers' tensor-parallel plan of its Gated-DeltaNet "
                            f"layers is not modelled for training; accepted: --tp 1 (got --tp {layout.tp})")
    if s.recompute == "selective":
        raise ShardsimError("--recompute selective drops the attention core (Korthikanti et al. 2022, §5); a "
                            "Gated-DeltaNet layer's is not modelled: use --recompute none or full")


def _check_sizes(spec: ModelSpec, layout: Layout, s: TrainSetup) -> None:
    for name, value, top in (("--micro-batch", s.micro_batch, 1 << 20), ("--seq-len", s.seq_len, 1 << 24),
                             ("--cp", layout.cp, 1024), ("--grad-accum", s.grad_accum, 1 << 20),
                             ("--virtual-stages", s.virtual_stages, 64)):
        if not 1 <= value <= top:
            raise ShardsimError(f"{name} {value} is out of range; accepted: 1 … {top:,}")
    if s.seq_len % layout.cp:
        raise ShardsimError(f"--cp {layout.cp} must divide --seq-len {s.seq_len}")
    framework = REGISTRY[s.framework]
    if layout.cp > 1 and not framework.context_parallel:
        raise ShardsimError("--cp is Megatron's context parallelism; use --framework megatron")
    if s.capacity_factor is not None and not 0 < s.capacity_factor <= 64:
        raise ShardsimError(f"--capacity-factor {s.capacity_factor} is out of range; accepted: (0, 64]")
    if s.offload_params and not framework.offloads_params:
        raise ShardsimError("--offload-params is DeepSpeed ZeRO-3's (offload_param); Megatron offloads the optimizer "
                            "only (--offload-optimizer)")
    if s.offload_optimizer and not framework.offloads_optimizer:
        raise ShardsimError("--offload-optimizer is modelled for DeepSpeed ZeRO (offload_optimizer) and Megatron "
                            "(--optimizer-cpu-offload)")
    framework.check_offload(s)   # its own offload rules (DeepSpeed: the ZeRO stages that offload)
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
    if s.lora and not REGISTRY[s.framework].trains_lora:
        raise ShardsimError("LoRA is modelled with PEFT on DeepSpeed, FSDP or DDP; use one of those frameworks")
