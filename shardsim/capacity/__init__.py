"""Capacity planning over many plans: workloads, the priced-cluster review, sweeps, the family report.

May import: shardsim.core, shardsim.engines, shardsim.speed (a review by speed and cost), shardsim.hardware,
shardsim.presets, shardsim.workloads (data), shardsim.files, shardsim.constants, shardsim.units, shardsim.errors.
"""
