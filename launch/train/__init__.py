"""Training validation: the flow of one run, the training worker, the registry of training frameworks, what a rank
holds for training (``states``) and ranks spawned without Ray for the backends' own tests (``spawn``).

May import: shardsim.launch.session, shardsim.launch.checkpoints, shardsim.launch.measure, shardsim.launch.backends,
shardsim.core, shardsim.units, shardsim.errors.
"""
