"""Data: example workload files for ``shardsim review --workload NAME``, installed as ``shardsim.workloads``.

May import: nothing (the files are read by the capacity workload loader).
"""
