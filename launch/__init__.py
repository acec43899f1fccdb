"""Validation runs: Ray starts one worker per rank; each loads its real shard, runs inference and measures.

Installed as ``shardsim.launch``. torch, Ray, safetensors, transformers and DeepSpeed are imported only inside the
functions that run them, so that ``request`` checks a request without the validation stack.

May import: shardsim.core, shardsim.presets, shardsim.files, shardsim.constants, shardsim.units, shardsim.errors.
"""
