"""Data: example workload files for ``shardsim review --workload NAME``, installed as ``shardsim.workloads``.

May import: nothing (read by ``shardsim.capacity.workload``).
"""
