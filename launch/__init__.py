"""Validation runs: Ray starts one worker per rank; each loads its real shard, runs inference and measures.

Installed as ``shardsim.launch``. May import: shardsim.core, shardsim.presets, shardsim.constants, shardsim.units,
shardsim.errors; torch, Ray, safetensors, transformers and DeepSpeed only inside the functions that run them, so
that ``shardsim.launch.request`` can check a request without the validation stack.
"""
