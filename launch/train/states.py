"""What a rank holds for training, measured: weights, master weights, gradients, optimizer state, activation peak.

Sizes are the bytes of distinct storages (``untyped_storage().nbytes()``, shared storages once), the way
``launch/measure.py`` (``storage_bytes``) counts parameters; a storage counted under one term is not counted again
under a later one (``StorageLedger``). Sources: torch@2.13.0 ``torch/storage.py`` (``UntypedStorage.nbytes``),
the backends ``launch/backends/train_ds.py`` and ``launch/backends/train_fsdp.py`` that fill a ``TrainStates``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field


@dataclass
class TrainStates:
    """Bytes one rank holds after a few training steps (see the backends for when each term is sampled)."""

    weights: int = 0
    master_weights: int = 0
    grads: int = 0
    optimizer: int = 0
    activations_peak: int = 0
    activations_saved: int = 0   # bytes autograd keeps for backward at the end of the last forward
    details: dict = field(default_factory=dict)

    def as_dict(self) -> dict:
        return asdict(self)


def _key(t) -> tuple[int, int]:
    st = t.untyped_storage()
    return st.data_ptr(), st.nbytes()


def flat_tensors(tensors):
    """Tensors from an iterable that may hold ``None``, DTensors (their local shard) and nested lists."""
    import torch

    for t in tensors:
        if t is None:
            continue
        if isinstance(t, (list, tuple)):
            yield from flat_tensors(t)
            continue
        if hasattr(t, "to_local"):
            t = t.to_local()
        if isinstance(t, torch.Tensor) and t.numel() > 0:
            yield t


def storage_bytes(tensors) -> int:
    """Bytes of the distinct storages behind ``tensors`` (``None`` and empty placeholders skipped)."""
    seen: dict = {}
    for t in flat_tensors(tensors):
        k = _key(t)
        seen[k] = k[1]
    return sum(seen.values())


def view_bytes(tensors) -> int:
    """``numel × element_size`` of each distinct tensor view (what the tensors show, padding excluded)."""
    seen: dict = {}
    for t in flat_tensors(tensors):
        seen[(t.data_ptr(), t.numel(), t.dtype)] = t.numel() * t.element_size()
    return sum(seen.values())


class StorageLedger:
    """Books each storage under the first term it is claimed by, so no byte is counted twice across terms."""

    def __init__(self):
        self.owner: dict = {}

    def claim(self, term: str, tensors) -> int:
        total = 0
        for t in flat_tensors(tensors):
            k = _key(t)
            if k not in self.owner:
                self.owner[k] = term
                total += k[1]
        return total

    def tensors(self, term: str | None = None):
        return [k for k, v in self.owner.items() if term is None or v == term]


def optimizer_state_tensors(state) -> list:
    """The tensors of a torch optimizer's ``state`` dict (exp_avg, exp_avg_sq, and ``step`` when a tensor)."""
    import torch

    out = []
    for per_param in state.values():
        for value in per_param.values():
            if isinstance(value, torch.Tensor) or hasattr(value, "to_local"):
                out.append(value)
    return out


def activation_tracker(baseline):
    """A ``LiveTensorTracker`` (``launch/measure.py``) that ignores the storages in ``baseline``."""
    from shardsim.launch.measure import LiveTensorTracker

    return LiveTensorTracker(baseline=list(flat_tensors(baseline)))


def random_batch(vocab_size: int, micro_batch: int, seq_len: int, seed: int, step: int, replica: int | None = None):
    """Token ids for one step, different per rank (or per ``replica``: the ranks of one pipeline, which must see the
    same batch) for a given (seed, step)."""
    import torch
    import torch.distributed as dist

    rank = replica if replica is not None else dist.get_rank() if dist.is_initialized() else 0
    gen = torch.Generator().manual_seed(seed * 7919 + step * 104_729 + rank)
    return torch.randint(0, vocab_size, (micro_batch, seq_len), generator=gen)


def _storage_ptr(t) -> int | None:
    """The data pointer of ``t``'s storage, or None for a freed one (FSDP2 resizes unsharded storages to 0)."""
    try:
        return t.untyped_storage().data_ptr()
    except RuntimeError:
        return None


class SavedTensorBytes:
    """Bytes of the distinct storages autograd saves for backward while active (``torch.autograd.graph.
    saved_tensors_hooks``), counted at the end of the forward: a storage freed by then (FSDP2 resizes its gathered
    parameters to 0 after each unit's forward) counts 0, and parameters are left out (a Linear saves its weight;
    ZeRO-1/2 parameters are views into one flat buffer, FSDP2's tail unit stays gathered): the activations a
    forward keeps, as ``core.train.activations`` predicts them."""

    def __init__(self, model=None):
        self.model = model
        self.saved: list = []
        self._ctx = None
        self.total = 0

    def _param_ptrs(self) -> set:
        if self.model is None:
            return set()
        out = set()
        for p in self.model.parameters():
            out.add(_storage_ptr(p))
            if hasattr(p, "to_local"):
                out.add(_storage_ptr(p.to_local()))
        return out

    def __enter__(self):
        import torch

        before = self._param_ptrs()

        def pack(t):
            if not isinstance(t, torch.nn.Parameter) and t.numel() > 0:
                local = t.to_local() if hasattr(t, "to_local") else t   # a DTensor: its local shard
                if _storage_ptr(local) not in before:
                    self.saved.append(local)
            return t

        self._ctx = torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)
        params = self._param_ptrs()
        storages: dict[int, int] = {}
        for t in self.saved:
            ptr = _storage_ptr(t)
            if ptr is not None and ptr not in params:
                storages[ptr] = t.untyped_storage().nbytes()
        self.total = sum(storages.values())
        self.saved = []


class _SavedRef:
    """What the pack hook hands autograd in place of a saved tensor; when autograd lets go of it (the node's
    backward has run and freed its saved variables) its storage leaves the live count."""

    __slots__ = ("tensor", "owner", "key")

    def __init__(self, tensor, owner: "LiveSavedBytes", key: int):
        self.tensor, self.owner, self.key = tensor, owner, key

    def __del__(self):
        self.owner.release(self.key)


class LiveSavedBytes:
    """The peak of the bytes autograd holds for backward at once, across several forwards and backwards: what a
    pipeline schedule keeps for its micro-batches in flight (1F1B: pp − stage of them on a stage). Distinct
    storages, parameters left out, as ``SavedTensorBytes``; a storage is live from the first forward op that saves
    it until the last saver's node is freed (``torch.autograd.graph.saved_tensors_hooks``)."""

    def __init__(self, model=None):
        self.model = model
        self.counts: dict[int, int] = {}
        self.sizes: dict[int, int] = {}
        self.live = 0
        self.peak = 0
        self._ctx = None

    def release(self, key: int) -> None:
        n = self.counts.get(key, 0) - 1
        if n > 0:
            self.counts[key] = n
        elif n == 0:
            del self.counts[key]
            self.live -= self.sizes.pop(key)

    def __enter__(self):
        import torch

        params = set()
        for p in (self.model.parameters() if self.model is not None else ()):
            params.add(_storage_ptr(p.to_local() if hasattr(p, "to_local") else p))

        def pack(t):
            if isinstance(t, torch.nn.Parameter) or t.numel() == 0:
                return t
            local = t.to_local() if hasattr(t, "to_local") else t
            key = _storage_ptr(local)
            if key is None or key in params:
                return t
            if key not in self.counts:
                self.sizes[key] = local.untyped_storage().nbytes()
                self.live += self.sizes[key]
                self.peak = max(self.peak, self.live)
            self.counts[key] = self.counts.get(key, 0) + 1
            return _SavedRef(t, self, key)

        def unpack(x):
            return x.tensor if isinstance(x, _SavedRef) else x

        self._ctx = torch.autograd.graph.saved_tensors_hooks(pack, unpack)
        self._ctx.__enter__()
        return self

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)


def load_for_training(checkpoint_dir: str):
    """The seeded checkpoint as transformers loads it for training: bf16, SDPA attention, train mode."""
    import os

    import torch
    from transformers import AutoModelForCausalLM

    if not os.path.isdir(checkpoint_dir):
        raise FileNotFoundError(f"not a local checkpoint directory: {checkpoint_dir}")
    model = AutoModelForCausalLM.from_pretrained(checkpoint_dir, dtype=torch.bfloat16, local_files_only=True,
                                                 attn_implementation="sdpa")
    model.train()
    return model
