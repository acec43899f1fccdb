"""shardsim: per-GPU memory of Qwen3 models sharded over tensor / pipeline / data / expert parallel layouts.

The planner core (models, tensors, layout, memory, plan) is pure: no I/O, no torch.
"""

__version__ = "0.1.0"
