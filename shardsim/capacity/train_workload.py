"""A training workload file (``task: train``): per model, the step's sequence length and micro-batch, the strategies
to consider and the recompute policy; validated once (``capacity.workload.load_workload`` reads it)."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, field_validator

STRATEGY = re.compile(r"^(ddp|zero[0-3]|zero3-offload|fsdp|fsdp-hybrid|megatron-tp(1|2|4|8)|lora|qlora)$")


class TrainLoad(BaseModel):
    """One model to train: sequence length, micro-batch, strategies to consider, recompute."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    model: str = Field(min_length=1)
    seq_len: StrictInt = Field(default=4096, ge=1, le=1 << 24)
    micro_batch: StrictInt = Field(default=1, ge=1, le=1 << 20)
    strategies: tuple[str, ...] = ("zero2", "zero3", "fsdp")
    recompute: Literal["none", "selective", "full"] = "full"

    @field_validator("strategies")
    @classmethod
    def _known(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [s for s in value if not STRATEGY.match(s)]
        if bad or not value:
            raise ValueError(f"strategies {bad or '[]'} not known; accepted: ddp, zero0…zero3, zero3-offload, fsdp, "
                             "fsdp-hybrid, megatron-tp1|2|4|8, lora, qlora")
        return value


class TrainWorkload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    task: Literal["train"]
    models: tuple[TrainLoad, ...] = Field(min_length=1)
