"""The record of a training run's choices beyond the model and the layout (``TrainSetup``): framework, sharding
strategy, degrees, batch shape, recompute, optimizer, adapters and offload. Refused once, in ``setup.check_setup``;
the frameworks (``frameworks/``) read it.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class TrainSetup(BaseModel):
    """A training run's choices beyond the model and the TP × PP × DP × EP layout."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    framework: str = "deepspeed"
    zero: int = 0
    fsdp: str = "full"
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

    def tokens(self, cp: int = 1) -> int:
        """Tokens of one micro-batch on one rank: context parallel (the layout's ``cp``) splits the sequence."""
        return self.micro_batch * self.seq_len // cp
