"""Memory terms per rank: weights, KV cache, activations, runtime — pure functions with their sources.

May import: shardsim.core, shardsim.constants, shardsim.units, shardsim.errors.
"""
