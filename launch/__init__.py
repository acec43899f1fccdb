"""Validation runs: Ray starts one worker per rank; each loads its real shard, runs inference or training and
measures.

Installed as ``shardsim.launch``. By concern: ``session`` the Ray scaffold both validations share (the request,
signals, one actor per rank and its placement, phases with timeouts, the results file); ``serve`` inference
validation; ``train`` training validation; ``checkpoints`` the seeded checkpoint, its reader and its check;
``backends`` the per-framework code; ``measure`` what a rank holds. torch, Ray, safetensors, transformers and
DeepSpeed are imported only inside the functions that run them, so that ``session.request`` checks a request
without the validation stack.

May import: shardsim.core, shardsim.presets, shardsim.files, shardsim.constants, shardsim.units, shardsim.errors.
"""
