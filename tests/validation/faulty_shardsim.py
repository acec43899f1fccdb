"""``shardsim`` with one fault placed at an exact point of a run, for the fault tests (not a test module).

    python tests/validation/faulty_shardsim.py HOOK validate …

A real signal or a real full disk, at a moment a test could not hit by timing alone:

- ``sigterm-at-checkpoint-write``: SIGTERM to itself right after a checkpoint shard is written to its temp name
  (before the rename);
- ``sigkill-at-checkpoint-write``: SIGKILL there instead (no cleanup can run: the next run must remove the temp);
- ``sigterm-at-reference``: SIGTERM to itself as the reference check starts;
- ``disk-full-at-result``: the file-size limit (RLIMIT_FSIZE, SIGXFSZ ignored) set to the results file's size
  plus 100 bytes just before the result record is appended, as a disk that fills after the run passed.
"""

from __future__ import annotations

import os
import resource
import signal
import sys


def _after_save(sig: int) -> None:
    import safetensors.torch

    real = safetensors.torch.save_file

    def save_then_signal(tensors, filename, metadata=None):
        real(tensors, filename, metadata=metadata)
        os.kill(os.getpid(), sig)

    safetensors.torch.save_file = save_then_signal


def _at_reference() -> None:
    import shardsim.launch.serve.run as serve_run

    real = serve_run.check_logits

    def signal_then_check(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        return real(*args, **kwargs)

    serve_run.check_logits = signal_then_check


def _disk_full_at_result() -> None:
    from shardsim.launch.session.results import KeptResults

    real = KeptResults.append

    def append(self, record):
        if record.get("event") == "result":
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            limit = self.path.stat().st_size + 100
            resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        return real(self, record)

    KeptResults.append = append


HOOKS = {
    "sigterm-at-checkpoint-write": lambda: _after_save(signal.SIGTERM),
    "sigkill-at-checkpoint-write": lambda: _after_save(signal.SIGKILL),
    "sigterm-at-reference": _at_reference,
    "disk-full-at-result": _disk_full_at_result,
}


if __name__ == "__main__":
    HOOKS[sys.argv[1]]()
    from shardsim.cli import main

    sys.exit(main(sys.argv[2:]))
