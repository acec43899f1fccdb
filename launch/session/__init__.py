"""The Ray session both validations share: the request and its checks, SIGINT/SIGTERM capture, one actor per rank
placed on the cluster joined and torn down afterwards, phases run on every actor with timeouts and fault handling,
and the run's results file.

Nothing here knows inference or training: ``shardsim.launch.serve`` and ``shardsim.launch.train`` give the worker
class and the phases' calls.

May import: shardsim.core, shardsim.errors.
"""
