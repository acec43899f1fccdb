"""The training frameworks, one module each, and their registry: ``FRAMEWORKS[setup.framework]`` is the
``Framework`` record (``base.py``) every training rule dispatches through — its states, its own refusals, its
strategy's name and the facts the generic rules ask. Adding a framework is one module defining its record plus one
line below; the order of the lines is the order ``--framework`` lists them in.

- ``deepspeed``: ZeRO stage 0–3 over the data-parallel ranks, with offload (``deepspeed.py``);
- ``fsdp``: FSDP2 through accelerate, full / grad-op / hybrid sharding (``fsdp.py``);
- ``megatron``: Megatron-LM TP / PP / SP / CP / EP, the distributed optimizer (``megatron.py``);
- ``ddp``: plain PyTorch DDP with AMP (``ddp.py``);
- ``torch``: torch-native TP (DTensor) and pipelining of the transformers model (``torch_native.py``).

May import: shardsim.core, shardsim.units, shardsim.errors.
"""

from __future__ import annotations

from shardsim.core.train.frameworks.base import Framework
from shardsim.core.train.frameworks.ddp import DDP
from shardsim.core.train.frameworks.deepspeed import DEEPSPEED
from shardsim.core.train.frameworks.fsdp import FSDP
from shardsim.core.train.frameworks.megatron import MEGATRON
from shardsim.core.train.frameworks.torch_native import TORCH

FRAMEWORKS: dict[str, Framework] = {
    DEEPSPEED.name: DEEPSPEED,
    FSDP.name: FSDP,
    MEGATRON.name: MEGATRON,
    DDP.name: DDP,
    TORCH.name: TORCH,
}

__all__ = ["FRAMEWORKS", "Framework"]
