"""Write a real-format Qwen3 checkpoint with seeded random values (no model hub here).

The files are what a Hugging Face checkpoint is: ``config.json``, ``model-0000k-of-0000n.safetensors`` shards and
``model.safetensors.index.json`` (``metadata.total_size`` + ``weight_map``), with the model's exact tensor names,
shapes and dtypes (``checkpoints.layout``: experts one by one, or fused where Qwen publishes them fused: Qwen3.5 / 3.6
MoE).
``--layers K`` keeps the full width and the first K decoder layers. Values: weights N(0, 0.02) as the configs'
``initializer_range``; norms 1 + N(0, 0.02); each tensor seeded from its name, so any subset is reproducible.
A checkpoint is reused when its ``shardsim-checkpoint.json`` stamp matches. Every file is written under a temp
name and renamed, one writer at a time (``temps``): a signal or a full disk mid-write leaves no partial shard and
no temp file, and the stamp, written last, is missing until the checkpoint is whole.
"""

from __future__ import annotations

import errno
import json
import os
import re
import zlib
from pathlib import Path

from shardsim.core.config import NESTED_TEXT
from shardsim.core.model import ModelSpec
from shardsim.core.tensors import numel_of
from shardsim.errors import ShardsimError
from shardsim.launch.checkpoints.layout import FUSED_EXPERTS, stored_entries
from shardsim.launch.checkpoints.temps import locked, write_whole, written

STAMP = "shardsim-checkpoint.json"
SHARD_BYTES = 2 * 1024**3
STORED_BYTES = {"bf16": 2, "fp32": 4}


def _config_dict(spec: ModelSpec, source_config: dict | None) -> dict:
    if spec.linear is not None:
        return _hybrid_config(spec, source_config or {})
    config = dict(source_config or {})
    config.update({
        "architectures": [spec.architecture],
        "model_type": "qwen3_moe" if spec.architecture == "Qwen3MoeForCausalLM" else "qwen3",
        "hidden_size": spec.hidden_size, "intermediate_size": spec.intermediate_size,
        "num_hidden_layers": spec.num_layers, "num_attention_heads": spec.num_heads,
        "num_key_value_heads": spec.num_kv_heads, "head_dim": spec.head_dim, "vocab_size": spec.vocab_size,
        "tie_word_embeddings": spec.tie_word_embeddings, "max_position_embeddings": spec.max_position_embeddings,
        "torch_dtype": "bfloat16", "rms_norm_eps": config.get("rms_norm_eps", 1e-6),
        "rope_theta": config.get("rope_theta", 1000000.0), "hidden_act": "silu", "attention_bias": spec.attention_bias,
        "max_window_layers": spec.num_layers, "use_sliding_window": False, "sliding_window": None,
    })
    config.pop("quantization_config", None)
    if spec.architecture == "Qwen3MoeForCausalLM":
        config.update({"num_experts": spec.num_experts, "num_experts_per_tok": spec.num_experts_per_tok,
                       "moe_intermediate_size": spec.moe_intermediate_size,
                       "decoder_sparse_step": spec.decoder_sparse_step, "mlp_only_layers": list(spec.mlp_only_layers),
                       "norm_topk_prob": config.get("norm_topk_prob", True)})
    return config


def _hybrid_config(spec: ModelSpec, source: dict) -> dict:
    """A hybrid's (Qwen3-Next, Qwen3.5 / 3.6) own config.json, its language model (under ``text_config`` for the
    nested architectures) cut to the spec's layers: ``num_hidden_layers`` and ``layer_types`` truncated, every other
    field as the model publishes it (transformers v5.25.0 ``Qwen3NextConfig`` / ``Qwen3_5TextConfig`` read them)."""
    config = json.loads(json.dumps(source))
    config.pop("quantization_config", None)
    text = config.setdefault("text_config", {}) if spec.architecture in NESTED_TEXT else config
    text.pop("quantization_config", None)
    text.update({"num_hidden_layers": spec.num_layers, "layer_types": list(spec.layer_types)})
    return config


def checkpoint_entries(spec: ModelSpec) -> list[tuple[str, tuple[int, ...], str]]:
    """Every tensor of the checkpoint as it is stored: name, shape and dtype (``layout.stored_entries``)."""
    return stored_entries(spec)


def tensor_values(name: str, shape: tuple[int, ...], seed: int, dtype: str = "bf16"):
    """The seeded values of one tensor (the same on every call), bf16 unless ``dtype`` is fp32."""
    import torch

    gen = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
    values = torch.randn(shape, generator=gen, dtype=torch.float32).mul_(0.02)
    if name.endswith("norm.weight"):
        values.add_(1.0)
    return values if dtype == "fp32" else values.to(torch.bfloat16)


def _reusable(spec: ModelSpec, out_dir: Path, stamp: dict, notify) -> bool:
    """Whether the checkpoint already in ``out_dir`` is this one and undamaged (``verify``: headers against sizes,
    every tensor's shape, the stored checksum); a damaged one is reported through ``notify``."""
    from shardsim.launch.checkpoints.verify import check_checkpoint, checksum

    try:
        stored = json.loads((out_dir / STAMP).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(stored, dict) or {k: stored.get(k) for k in stamp} != stamp:
        return False
    try:
        check_checkpoint(spec, out_dir)
        if checksum(out_dir) != stored.get("checksum"):
            raise ShardsimError("its checksum differs from the one stored when it was written")
    except (ShardsimError, OSError) as exc:
        notify(f"checkpoint {out_dir} is damaged ({exc}); writing it again")
        return False
    return True


REFUSED_FOLDER = (errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST, errno.ENAMETOOLONG)
"""Errors that mean the cache folder itself is unusable (the user points SHARDSIM_CACHE elsewhere: exit 2); any
other (a full disk, an I/O error) fails the run (``session.lifecycle``: exit 1)."""


def write_checkpoint(spec: ModelSpec, out_dir: Path, seed: int = 0, source_config: dict | None = None,
                     progress=None, notify=lambda message: None) -> Path:
    """Write (or reuse, once verified) the checkpoint of ``spec`` under ``out_dir``; returns the directory. One
    writer at a time (``temps.locked``), each file whole or not at all (``temps.written``)."""
    out_dir = Path(out_dir)
    try:
        with locked(out_dir):
            return _write_checkpoint(spec, out_dir, seed, source_config, progress, notify)
    except OSError as exc:
        if exc.errno not in REFUSED_FOLDER:
            raise
        raise ShardsimError(f"cannot write the checkpoint under {out_dir}: {exc.strerror or exc}; set "
                            "SHARDSIM_CACHE to a writable folder") from None


def _shard_plan(spec: ModelSpec) -> list[list[tuple[str, tuple[int, ...], str]]]:
    """The tensors of each shard file, in order, each shard up to ``SHARD_BYTES``."""
    shards: list[list[tuple[str, tuple[int, ...], str]]] = [[]]
    size = 0
    for name, shape, dtype in checkpoint_entries(spec):
        nbytes = STORED_BYTES[dtype] * numel_of(shape)
        if shards[-1] and size + nbytes > SHARD_BYTES:
            shards.append([])
            size = 0
        shards[-1].append((name, shape, dtype))
        size += nbytes
    return shards


def _save(save_file, data: dict, tmp: Path, final: Path) -> None:
    """safetensors' ``save_file`` into ``tmp``; its I/O errors (a ``SafetensorError`` "… (os error 28)") raised as
    the ``OSError`` they are, naming ``final``."""
    try:
        save_file(data, str(tmp), metadata={"format": "pt"})
    except Exception as exc:  # noqa: BLE001 - only safetensors' own error type is translated
        if type(exc).__name__ != "SafetensorError":
            raise
        code = re.search(r"os error (\d+)", str(exc))
        number = int(code.group(1)) if code else errno.EIO
        raise OSError(number, os.strerror(number), str(final)) from None


def _write_checkpoint(spec: ModelSpec, out_dir: Path, seed: int, source_config: dict | None, progress,
                      notify) -> Path:
    from safetensors.torch import save_file

    # format 2: hybrids' own config.json and fp32 tensors (format 1 checkpoints of plain Qwen3 stay valid);
    # format 3: Qwen3.5 / 3.6 MoE experts fused as published
    fmt = 3 if spec.architecture in FUSED_EXPERTS else 2 if spec.linear is not None else 1
    stamp = {"model": spec.model_dump(mode="json"), "seed": seed, "format": fmt}
    stamp_path = out_dir / STAMP
    if stamp_path.exists() and _reusable(spec, out_dir, stamp, notify):
        return out_dir
    stamp_path.unlink(missing_ok=True)
    for old in out_dir.glob("*.safetensors"):
        old.unlink()
    shards = _shard_plan(spec)
    weight_map, total = {}, 0
    for i, shard in enumerate(shards, 1):
        fname = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        data = {}
        for name, shape, dtype in shard:
            data[name] = tensor_values(name, shape, seed, dtype)
            weight_map[name] = fname
            total += data[name].numel() * data[name].element_size()
        with written(out_dir / fname) as tmp:
            _save(save_file, data, tmp, out_dir / fname)
        del data
        if progress:
            progress(i, len(shards))
    write_whole(out_dir / "model.safetensors.index.json",
                json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2))
    write_whole(out_dir / "config.json", json.dumps(_config_dict(spec, source_config), indent=2))
    from shardsim.launch.checkpoints.verify import checksum

    write_whole(stamp_path, json.dumps({**stamp, "checksum": checksum(out_dir)}))
    return out_dir


class CheckpointReader:  # noqa: D101 (documented below)
    """Reads slices of a checkpoint's tensors through ``safe_open(...).get_slice`` (only the pages it needs)."""

    def __init__(self, directory: Path):
        from safetensors import safe_open

        self.directory = Path(directory)
        index = self.directory / "model.safetensors.index.json"
        if index.exists():
            self.weight_map = json.loads(index.read_text())["weight_map"]
        else:
            single = self.directory / "model.safetensors"
            with safe_open(str(single), framework="pt") as f:
                self.weight_map = {k: single.name for k in f.keys()}
        self._open = {}
        self._safe_open = safe_open

    def _file(self, name: str):
        fname = self.weight_map.get(name)
        if fname is None:
            raise KeyError(f"tensor {name} not in checkpoint {self.directory}")
        handle = self._open.get(fname)
        if handle is None:
            handle = self._open[fname] = self._safe_open(str(self.directory / fname), framework="pt")
        return handle

    def read(self, name: str, slices: tuple[slice, ...] | None = None):
        """The tensor (or the given slices of it) as a fresh, contiguous tensor owned by the caller."""
        import torch

        f = self._file(name)
        view = f.get_tensor(name) if slices is None else f.get_slice(name)[slices]
        # get_slice hands back a view into the whole tensor's (mmap'd) buffer: copy out exactly the slice.
        return view.clone(memory_format=torch.contiguous_format)

    def close(self) -> None:
        self._open.clear()
