"""Rendering for people: rich text tables and PNG charts of the records the other packages return.

May import: shardsim.core, shardsim.engines, shardsim.capacity, shardsim.hardware, shardsim.speed, shardsim.units,
shardsim.errors; rich and matplotlib inside the functions that draw.
"""
