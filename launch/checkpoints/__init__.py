"""Checkpoints of a validation run, shared by inference and training: the seeded real-format checkpoint and the
reader of a rank's slices (``files``), the check before any worker starts (``verify``), and the one a run loads
(``prepare``), each cache file written whole, one writer at a time (``temps``).

May import: shardsim.core, shardsim.constants, shardsim.files, shardsim.errors.
"""
