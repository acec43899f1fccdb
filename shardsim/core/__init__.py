"""The planner core: model spec, tensor inventory and shard rules, quantization, layout, memory terms, plan.

Pure: no I/O, no torch, no globals but memo tables.

May import: shardsim.core, shardsim.constants, shardsim.units, shardsim.errors (and pydantic).
"""
