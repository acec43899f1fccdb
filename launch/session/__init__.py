"""The Ray session both validations share: the request and its checks, SIGINT/SIGTERM capture, one actor per rank
placed on the cluster joined, meeting on rank 0's node and torn down afterwards, phases run on every actor with
timeouts and fault handling, how a run begins and ends (``lifecycle``: its records and exit codes), and the run's
folder and results file.

Nothing here knows inference or training: ``shardsim.launch.serve`` and ``shardsim.launch.train`` give the worker
class and the phases' calls.

May import: shardsim.core, shardsim.errors.
"""
