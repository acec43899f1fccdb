"""Training memory per rank: the run's setup and its refusals, the parameters a rank holds, the states each
framework keeps (weights, fp32 master, gradients, optimizer, buffers), the activations of a micro-batch, and the
plan with its verdict.

May import: shardsim.core, shardsim.constants, shardsim.units, shardsim.errors.
"""
