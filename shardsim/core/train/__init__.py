"""Training memory per rank: the run's choices (``choices.py``) and their refusals (``setup.py``), the parameters a
rank holds, the states each framework keeps (weights, fp32 master, gradients, optimizer, buffers: ``frameworks/``,
one module per framework, reached through its registry), the activations of a micro-batch, and the plan with its
verdict.

May import: shardsim.core, shardsim.constants, shardsim.units, shardsim.errors.
"""
