"""What a rank holds, measured: tensor bytes, the live-tensor peak of a forward, process RSS by kind.

- Parameter and KV bytes: the sum of ``untyped_storage().nbytes()`` over distinct storages — exact.
- Activation peak on CPU: ``LiveTensorTracker``, a ``TorchDispatchMode`` that sees every aten op's outputs, counts
  each new storage (not the weights or the KV cache, registered as a baseline) while it lives (a weakref callback
  on the storage fires when it is freed) and records the peak of the live sum. The same idea as
  ``torch.distributed._tools.mem_tracker`` (PyTorch), written for this single purpose.
- On CUDA: ``torch.cuda.max_memory_allocated`` / ``memory_reserved`` around the forward.
- RSS: /proc/self/status ``RssAnon`` (heap: tensors) and ``RssFile`` (mapped files: the mmap'd safetensors pages).
"""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


def storage_bytes(tensors) -> int:
    """Bytes of the distinct storages behind ``tensors`` (shared storages, e.g. tied weights, once)."""
    seen, total = set(), 0
    for t in tensors:
        st = t.untyped_storage()
        key = (st.data_ptr(), st.nbytes())
        if key not in seen:
            seen.add(key)
            total += st.nbytes()
    return total


class LiveTensorTracker(TorchDispatchMode):
    """Peak bytes of tensors created inside the ``with`` block and alive at the same time."""

    def __init__(self, baseline=(), detail: bool = False):
        super().__init__()
        self.baseline = {t.untyped_storage().data_ptr() for t in baseline}
        self.live = 0
        self.peak = 0
        self.detail = detail
        self.peak_detail: list[tuple[int, str]] = []
        self.peak_members: dict[int, int] = {}
        self._tracked: dict[int, tuple[int, weakref.ref, str]] = {}

    def _freed(self, key: int) -> None:
        entry = self._tracked.pop(key, None)
        if entry is not None:
            self.live -= entry[0]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_leaves(out):
            if not isinstance(t, torch.Tensor):
                continue
            try:
                st = t.untyped_storage()
                key = st.data_ptr()
            except (RuntimeError, NotImplementedError):  # wrapper subclasses (DTensor): their local tensors count
                continue
            if key in self.baseline or self._seen(key) or st.nbytes() == 0:
                continue
            self._record(st, key, func, t)
        return out

    def _seen(self, key: int) -> bool:
        return key in self._tracked

    def _record(self, st, key: int, func, t: torch.Tensor) -> None:
        """Count a new storage as live until its weakref fires."""
        ref = weakref.ref(st, lambda _r, k=key: self._freed(k))
        label = f"{func.__name__}{tuple(t.shape)}" if self.detail else ""
        self._tracked[key] = (st.nbytes(), ref, label)
        self.live += st.nbytes()
        if self.live > self.peak:
            self.peak = self.live
            self.peak_members = {k: v[0] for k, v in self._tracked.items()}
            if self.detail:
                self.peak_detail = sorted(((n, lab) for n, _, lab in self._tracked.values()), reverse=True)[:16]


def peak_without(tracker: LiveTensorTracker, tensors) -> int:
    """The tracker's peak less the tensors among ``tensors`` that were part of it (a cache grown in the pass)."""
    keys = set()
    for t in tensors:
        try:
            keys.add(t.untyped_storage().data_ptr())
        except (RuntimeError, NotImplementedError):
            continue
    return tracker.peak - sum(n for k, n in tracker.peak_members.items() if k in keys)


def rss_bytes() -> dict[str, int]:
    """RssAnon and RssFile of this process from /proc/self/status (Linux), in bytes."""
    out = {"rss_anon": 0, "rss_file": 0}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    out["rss_anon"] = int(line.split()[1]) * 1024
                elif line.startswith("RssFile:"):
                    out["rss_file"] = int(line.split()[1]) * 1024
    except OSError:
        pass
    return out
