"""One checkpoint tensor as the shard rules see it: its name, shape, rule and where it lives (the records
``core.tensors`` and the architecture modules of ``core.arch`` build the inventory from)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum
from typing import Iterator

COLUMN, ROW, VOCAB, REPLICATED, EXPERT = "column", "row", "vocab", "replicated", "expert"


class Part(str, Enum):
    """Where a tensor lives in the model; decides the pipeline stage that holds it."""

    EMBED = "embed"
    LAYER = "layer"
    FINAL_NORM = "final_norm"
    LM_HEAD = "lm_head"
    VISION = "vision"  # the vision tower and its mergers: with the embedding, on the first stage
    MTP = "mtp"  # the multi-token-prediction head: loaded only for speculative decoding


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One weight of the checkpoint (unsharded).

    ``name`` is the HF tensor name; expert tensors of one projection are a single entry whose name holds
    ``{e}`` and whose ``experts`` says how many there are (``expand`` gives the per-expert names).
    ``split_dim`` is the dim the rule splits (None for replicated). ``kv_heads`` is set on k/v projections.
    ``linear`` marks the weights of Linear modules that quantization converts.
    """

    name: str
    shape: tuple[int, ...]
    rule: str
    part: Part
    layer: int | None = None
    split_dim: int | None = None
    experts: int = 0
    kv_heads: int = 0
    linear: bool = False
    source: str | None = None  # the checkpoint tensor it is read from when not its own name (a tied lm_head)
    checkpoint_dtype: str | None = None  # the dtype the checkpoint stores it in when not the model's (fp32 A_log)

    @property
    def module(self) -> str:
        """The module path (accelerate style): the name without its ``.weight`` suffix."""
        return self.name.rsplit(".", 1)[0]

    @property
    def numel(self) -> int:
        return numel_of(self.shape) * max(1, self.experts)

    def expand(self) -> Iterator[tuple[str, tuple[int, ...]]]:
        """Concrete (name, shape) pairs: one per expert for expert entries, else the tensor itself."""
        if self.experts:
            for e in range(self.experts):
                yield self.name.format(e=e), self.shape
        else:
            yield self.name, self.shape


def numel_of(shape: tuple[int, ...]) -> int:
    """Elements of a tensor of ``shape`` (the product of its dims; 1 for a 0-dim tensor). The one definition."""
    return math.prod(shape)
