"""One rank of an inference validation: joins the process group, loads its shard, runs inference, measures.

The flow (``serve.run``) wraps ``ServeWorker`` in a Ray actor (one per rank) and calls its phases in order:
``setup`` (``session.worker.RankWorker``), ``load``, ``forward``, ``measure``. ``load`` and ``forward`` run the
backend's runner module named in ``registry.SERVE_BACKENDS``.
"""

from __future__ import annotations

import time
from importlib import import_module

from shardsim.launch.serve.registry import SERVE_BACKENDS
from shardsim.launch.session.worker import RankWorker


class ServeWorker(RankWorker):
    """A rank of an inference run: the setup of every rank, then the backend's load and forward."""

    def load(self, checkpoint, backend: str = "torch") -> dict:
        """Read this rank's slices of ``checkpoint`` (a ``CheckpointFacts``) with ``backend``'s runner and count
        the bytes held."""
        from shardsim.launch.measure import rss_bytes

        self.inject_fault("load")
        self.find_checkpoint(checkpoint.path)
        t0 = time.time()
        self.backend = backend
        self.runner = import_module(SERVE_BACKENDS[backend].runner)
        self.result["weights"] = self.runner.load_rank(self, checkpoint)
        self.result["load_s"] = time.time() - t0
        self.result.update({f"after_load_{k}": v for k, v in rss_bytes().items()})
        return {"rank": self.rank, "weights": self.result["weights"], "load_s": self.result["load_s"]}

    def forward(self, prompt: list[list[int]], context: int, decode_steps: int, block_size: int) -> dict:
        """Prefill the prompt, then greedy decode steps, with the loaded backend's runner; the activation peak is
        tracked over the prefill."""
        self.inject_fault("forward")
        return self.runner.forward_rank(self, prompt, context, decode_steps, block_size)
