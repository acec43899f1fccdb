"""Serving (inference) validation: the flow of one run, the inference worker, the registry of inference backends,
shardsim's own torch backend (``shard_model``), the unsharded reference and the prediction each rank is held to.

May import: shardsim.launch.session, shardsim.launch.checkpoints, shardsim.launch.measure, shardsim.launch.backends,
shardsim.core, shardsim.units, shardsim.errors.
"""
