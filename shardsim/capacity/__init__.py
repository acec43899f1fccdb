"""Capacity planning over many plans: workloads, the priced-cluster review, sweeps, the family report.

May import: shardsim.core, shardsim.engines, shardsim.hardware, shardsim.presets, shardsim.workloads (data),
shardsim.files, shardsim.constants, shardsim.units, shardsim.errors.
"""
