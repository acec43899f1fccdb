"""HF ``from_pretrained(device_map="auto")`` on several GPUs: the device map transformers computes, each GPU's weights.

Sources, read at the versions shardsim targets:

- ``transformers/modeling_utils.py@v5.24.0`` (``from_pretrained``, ``get_init_context``): the model is built on the
  meta device in the load dtype with weights *not yet tied*, then ``_get_device_map`` runs.
- ``transformers/integrations/accelerate.py@v5.24.0`` (``_get_device_map``, ``get_balanced_memory``,
  ``get_max_memory``, ``compute_module_sizes``, ``infer_auto_device_map``, ``get_module_size_with_ties``): since
  v5 transformers carries its *own* copies of accelerate's balancing and placement; "auto" and "balanced" call
  ``get_balanced_memory`` then ``infer_auto_device_map``; "sequential" skips the balancing.
- ``accelerate/utils/modeling.py@v1.15.0`` (``get_max_memory``, ``get_max_layer_size``, ``clean_device_map``),
  which those copies still call.

What they do, restated (the code below is shardsim's own):

1. Sizes (``compute_module_sizes``): every parameter *and buffer* (non-persistent ones too) as numel × element size,
   summed into each module prefix; the tied ``lm_head.weight`` is skipped (``all_tied_weights_keys``), so with
   ``tie_word_embeddings`` the lm_head weighs 0. Buffers: the rotary embedding holds ``inv_freq`` and
   ``original_inv_freq``, ``head_dim/2`` fp32 each (``Qwen3RotaryEmbedding.__init__``).
2. ``max_memory``: given → used as is (ints first in id order, then cpu, disk). Not given → each GPU's free
   memory (``torch.cuda.mem_get_info``) and 90 % of the available RAM; with one GPU, "auto" keeps 90 % of it too.
3. Balancing (several GPUs): ``per_gpu = total // n + int(1.25 × max(largest decoder layer, largest leaf))``
   caps every GPU but the last (``balanced_low_0``: GPU 0 gets only what GPUs 1… cannot take).
4. Placement, modules in order (``lm_head`` after ``model``; ``model`` splits into embed_tokens, layers, norm,
   rotary_emb; ``layers`` into decoder layers, which never split): a module goes to the current device if it fits
   under its max_memory, less — on the first GPU and on cpu — the largest layer still to come (room to bring an
   offloaded layer back); else a splittable module is split, an unsplittable one moves on to the next device
   (GPUs, cpu, then disk, which takes everything). A tied lm_head goes wherever embed_tokens goes.
5. ``clean_device_map`` folds modules whose children all share a device into one entry.

Weight bytes come from ``shardsim.core.tensors`` and ``memory.weights.stored_tensors`` (quantized formats as
transformers holds them, ``hf.hf_quant``); only unquantized loads are checked against transformers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shardsim.constants import CUDA_CONTEXT_BYTES, MAX_WORLD_SIZE
from shardsim.core.memory.weights import stored_tensors
from shardsim.core.model import ModelSpec, QuantConfig
from shardsim.core.tensors import (
    Shard,
    TensorSpec,
    embed_tensor,
    final_norm_tensor,
    layer_tensors,
    lm_head_tensor,
)
from shardsim.engines.common import EngineRankReport, EngineReport
from shardsim.engines.hf import hf_quant
from shardsim.engines.releases import NEWEST_RELEASE
from shardsim.errors import ShardsimError
from shardsim.units import GiB

TRANSFORMERS_VERSION = NEWEST_RELEASE["transformers"]
ACCELERATE_VERSION = "1.15.0"
MODES = ("auto", "balanced", "balanced_low_0", "sequential")
ROTARY_BUFFERS = 2            # inv_freq and original_inv_freq (Qwen3RotaryEmbedding.__init__)
ROTARY_BUFFER_ELEM_BYTES = 4  # both fp32 whatever the load dtype
UNSET_MEMORY_FRACTION = 0.9   # get_max_memory (cpu) and get_balanced_memory (single GPU) without max_memory
BALANCE_BUFFER_FACTOR = 1.25  # get_balanced_memory: per_gpu += int(1.25 × largest layer or leaf)
OFF_GPU = ("cpu", "disk")

Device = int | str


@dataclass(frozen=True, slots=True)
class _Node:
    """One module as the placement sees it: ``kind`` is ``leaf`` (no child modules), ``block`` (a no-split decoder
    layer) or ``container`` (split into ``children`` when it does not fit)."""

    name: str
    size: int
    kind: str
    children: tuple[_Node, ...] = ()


@dataclass(frozen=True, slots=True)
class DevicePlacement:
    """One entry of the uncompressed device map: a module, where it goes, and its bytes as accelerate counts them."""

    module: str
    device: Device
    bytes: int


@dataclass(frozen=True, slots=True)
class AccelerateReport:
    """The device map (accelerate's compressed form), the max_memory it was computed under, and bytes per device."""

    device_map: dict[str, Device]
    placements: tuple[DevicePlacement, ...]
    device_bytes: dict[Device, int]
    device_layers: dict[Device, tuple[int, ...]]
    max_memory: dict[Device, int | float]
    notes: list[str] = field(default_factory=list)

    @property
    def offloaded(self) -> tuple[DevicePlacement, ...]:
        return tuple(p for p in self.placements if p.device in OFF_GPU)


# ---------------------------------------------------------------- the model as a module tree


def _bytes(t: TensorSpec, spec: ModelSpec, dtype: str, quant: QuantConfig) -> int:
    return sum(st.bytes() for st in stored_tensors(t, Shard(), spec, dtype, quant))


def module_tree(spec: ModelSpec, dtype: str = "bf16", quant: QuantConfig | None = None) -> _Node:
    """``Qwen3ForCausalLM`` / ``Qwen3MoeForCausalLM`` as ``named_children`` lists it, sized like
    ``compute_module_sizes`` (transformers/integrations/accelerate.py@v5.24.0): ``model`` (embed_tokens, layers,
    norm, rotary_emb) then ``lm_head``, which weighs 0 when tied. Leaves inside a decoder layer never matter (a
    layer is never split and outweighs its leaves), so layers are sized whole."""
    quant = hf_quant(quant if quant is not None else spec.quant)
    layers = tuple(
        _Node(f"model.layers.{i}", sum(_bytes(t, spec, dtype, quant) for t in layer_tensors(spec, i)), "block")
        for i in range(spec.num_layers)
    )
    rotary = ROTARY_BUFFERS * ((spec.head_dim + 1) // 2) * ROTARY_BUFFER_ELEM_BYTES
    model_children = (
        _Node("model.embed_tokens", _bytes(embed_tensor(spec), spec, dtype, quant), "leaf"),
        _Node("model.layers", sum(n.size for n in layers), "container", layers),
        _Node("model.norm", _bytes(final_norm_tensor(spec), spec, dtype, quant), "leaf"),
        _Node("model.rotary_emb", rotary, "leaf"),
    )
    lm_head = 0 if spec.tie_word_embeddings else _bytes(lm_head_tensor(spec), spec, dtype, quant)
    model = _Node("model", sum(n.size for n in model_children), "container", model_children)
    return _Node("", model.size + lm_head, "container", (model, _Node("lm_head", lm_head, "leaf")))


def _units(nodes: list[_Node]) -> list[_Node]:
    """Leaves and blocks under ``nodes``, in order (``get_max_layer_size``'s notion of a layer)."""
    out: list[_Node] = []
    for n in nodes:
        out += [n] if n.kind != "container" else _units(list(n.children))
    return out


def _max_layer(nodes: list[_Node]) -> tuple[int, list[str]]:
    """accelerate/utils/modeling.py@v1.15.0 (get_max_layer_size): the largest layer and every layer of that size."""
    size, names = 0, []
    for n in _units(nodes):
        if n.size > size:
            size, names = n.size, [n.name]
        elif n.size == size:
            names.append(n.name)
    return size, names


# ---------------------------------------------------------------- max_memory


def ordered_max_memory(max_memory: dict) -> dict[Device, int | float]:
    """GPU ids ascending, then cpu, then disk (accelerate/utils/modeling.py@v1.15.0, get_max_memory); a size must be
    a number ≥ 0."""
    for key, value in max_memory.items():
        if not (isinstance(key, int) and not isinstance(key, bool) and key >= 0) and key not in OFF_GPU:
            raise ShardsimError(f"max_memory key {key!r:.40} is not a GPU id (0, 1, …), 'cpu' or 'disk'")
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
            raise ShardsimError(f"max_memory[{key!r:.40}] = {value!r:.40}: expected a byte count ≥ 0")
    gpus = sorted(k for k in max_memory if isinstance(k, int))
    return {k: max_memory[k] for k in gpus + [k for k in OFF_GPU if k in max_memory]}


def balanced_max_memory(root: _Node, max_memory: dict, given: bool = True, low_zero: bool = False) -> dict:
    """transformers/integrations/accelerate.py@v5.24.0 (get_balanced_memory): cap every GPU but the last at an even
    share plus 1.25 × the largest layer (decoder layer or leaf such as the embedding)."""
    mem = dict(max_memory)
    gpus = sorted(k for k, v in mem.items() if isinstance(k, int) and v > 0)
    if not gpus:
        return mem
    if len(gpus) == 1:
        low_zero = False
        if not given:
            mem[gpus[0]] *= UNSET_MEMORY_FRACTION
    per_gpu = root.size // (len(gpus) - 1 if low_zero else len(gpus))
    per_gpu += int(BALANCE_BUFFER_FACTOR * _max_layer([root])[0])
    for idx in gpus[:-1]:
        mem[idx] = min(mem[0] if low_zero and idx == 0 else per_gpu, mem[idx])
    if low_zero:
        mem[0] = min(max(0, root.size - sum(mem[i] for i in range(1, len(gpus)))), mem[0])
    return mem


# ---------------------------------------------------------------- placement


def infer_placements(root: _Node, max_memory: dict, tied: bool) -> list[DevicePlacement]:
    """transformers/integrations/accelerate.py@v5.24.0 (infer_auto_device_map), for this module tree: modules in
    order onto the first device with room, the largest remaining layer held back on the first GPU and on cpu."""
    devices: list[Device] = list(max_memory) + ([] if "disk" in max_memory else ["disk"])
    gpus = [d for d in devices if d not in OFF_GPU]
    main = [gpus[0], "cpu"] if gpus else ["cpu"]
    queue = list(root.children)
    used = dict.fromkeys(devices, 0)
    out: list[DevicePlacement] = []
    current = 0
    reserve, reserve_names = _max_layer(queue)
    while queue:
        node = queue.pop(0)
        reserve_names = [n for n in reserve_names if n != node.name and not n.startswith(node.name + ".")]
        if not reserve_names:
            reserve, reserve_names = _max_layer(queue)
        device = devices[current]
        held = reserve if device in main else 0
        limit = None if device == "disk" else max_memory[device] - held
        # A tied lm_head weighs 0 (compute_module_sizes skips it) and follows the module holding embed_tokens.
        holds_embed = tied and node.name in ("model", "model.embed_tokens")
        if limit is None or used[device] + node.size <= limit:
            used[device] += node.size
            out.append(DevicePlacement(node.name, device, node.size))
            if holds_embed:
                queue = [n for n in queue if n.name != "lm_head"]
                out.append(DevicePlacement("lm_head", device, 0))
            continue
        if node.kind == "container":
            queue = list(node.children) + queue
            reserve, reserve_names = _max_layer(queue)
            continue
        used[device] += held
        current += 1
        queue.insert(0, node)
    return out


def clean_device_map(device_map: dict[str, Device], module: str = "") -> dict[str, Device]:
    """accelerate/utils/modeling.py@v1.15.0 (clean_device_map): a module whose entries all share one device
    becomes one entry; then each child, recursively. Mutates and returns ``device_map``."""
    prefix = f"{module}." if module else ""
    keys = [k for k in device_map if k.startswith(prefix)]
    values = {device_map[k] for k in keys}
    if len(values) == 1 and len(keys) > 1:
        for k in keys:
            del device_map[k]
        device_map[module] = values.pop()
    depth = len(module.split(".")) + 1 if module else 1
    children = {".".join(k.split(".")[:depth]) for k in device_map if k.startswith(prefix) and len(k) > len(module)}
    for child in children:
        clean_device_map(device_map, child)
    return device_map


def _layers_of(placements: list[DevicePlacement], spec: ModelSpec) -> dict[Device, tuple[int, ...]]:
    out: dict[Device, list[int]] = {}
    for p in placements:
        if p.module in ("model", "model.layers"):
            held = list(range(spec.num_layers))
        elif p.module.startswith("model.layers."):
            held = [int(p.module.split(".")[2])]
        else:
            continue
        out.setdefault(p.device, []).extend(held)
    return {d: tuple(v) for d, v in out.items()}


def predict_device_map(spec: ModelSpec, dtype: str = "bf16", quant: QuantConfig | None = None,
                       max_memory: dict | None = None, mode: str = "auto", given: bool = True) -> AccelerateReport:
    """The device map of ``from_pretrained(device_map=mode, max_memory=max_memory, dtype=dtype)``.

    ``given=False`` means the user passed no max_memory and ``max_memory`` holds what transformers would find
    instead (each GPU's free memory, the available RAM): the 90 % rules of ``get_max_memory`` (cpu) and
    ``get_balanced_memory`` (a single GPU) then apply.
    """
    if mode not in MODES:
        raise ShardsimError(f"device_map {mode!r:.40} is not supported; accepted: {', '.join(MODES)}")
    if not max_memory:
        raise ShardsimError("max_memory is empty; give at least one GPU's bytes, e.g. {0: 80 GiB}")
    mem = ordered_max_memory(max_memory)
    if not given and "cpu" in mem:
        mem["cpu"] *= UNSET_MEMORY_FRACTION
    root = module_tree(spec, dtype, quant)
    if mode != "sequential":
        mem = balanced_max_memory(root, mem, given, low_zero=mode == "balanced_low_0")
    placements = infer_placements(root, mem, spec.tie_word_embeddings)
    device_bytes: dict[Device, int] = {d: 0 for d in mem if d not in OFF_GPU}
    for p in placements:
        device_bytes[p.device] = device_bytes.get(p.device, 0) + p.bytes
    device_map = clean_device_map({p.module: p.device for p in placements})
    return AccelerateReport(device_map, tuple(placements), device_bytes, _layers_of(placements, spec), mem)


# ---------------------------------------------------------------- the engine report


def default_max_memory(gpus: int, capacity_bytes: int, cpu_bytes: int | None) -> dict[Device, int]:
    """What transformers finds when no max_memory is given: each GPU's free memory after the CUDA context
    (``mem_get_info``; the context size is ``constants.CUDA_CONTEXT_BYTES``, an estimate) and the host RAM
    (unbounded when not known)."""
    free = max(0, capacity_bytes - CUDA_CONTEXT_BYTES)
    mem: dict[Device, int] = {i: free for i in range(gpus)}
    mem["cpu"] = cpu_bytes if cpu_bytes is not None else 1 << 62
    return mem


def predict_accelerate(spec: ModelSpec, gpus: int, capacity_bytes: int, dtype: str = "bf16",
                       quant: QuantConfig | None = None, max_memory: dict | None = None, mode: str = "auto",
                       cpu_bytes: int | None = None, allow_offload: bool = False) -> EngineReport:
    """One EngineRankReport per GPU with the weights ``device_map=mode`` puts there (``model_loading_bytes``).

    A demanding user wants the model on the GPUs: when any module lands on cpu or disk (accelerate then streams it
    to GPU 0 for every forward, orders of magnitude slower) the load is refused unless ``allow_offload``; allowed,
    the offload is recorded in the notes.
    """
    if not 1 <= gpus <= MAX_WORLD_SIZE:
        raise ShardsimError(f"--gpus {gpus} is out of range; accepted: 1 … {MAX_WORLD_SIZE}")
    given = max_memory is not None
    mem = max_memory if given else default_max_memory(gpus, capacity_bytes, cpu_bytes)
    report = predict_device_map(spec, dtype, quant, mem, mode, given)
    ranks = [
        EngineRankReport(rank=d, layers=len(report.device_layers.get(d, ())),
                         model_loading_bytes=report.device_bytes[d])
        for d in report.device_bytes if d not in OFF_GPU
    ]
    notes = [f"device_map: {_describe(report, d)}" for d in report.device_bytes] + report.notes
    off = report.offloaded
    refusal = None
    if off:
        where = ", ".join(f"{d}: {report.device_bytes[d] / GiB:.2f} GiB" for d in OFF_GPU if d in report.device_bytes)
        text = (f"device_map={mode!r} offloads {len(off)} module(s) ({where}) off the GPUs; "
                f"they would be copied to GPU {ranks[0].rank if ranks else 0} for every forward pass")
        if allow_offload:
            notes.append(text)
        else:
            refusal = text + "; give the GPUs more max_memory, add GPUs, or allow offload"
    if quant is not None and quant.method != "none":
        notes.append("quantized sizes follow shardsim's weight formats; checked against transformers for bf16 only")
    knobs = {"device_map": mode, "max_memory": {str(k): v for k, v in report.max_memory.items()},
             "max_memory_given": given, "allow_offload": allow_offload}
    return EngineReport(engine="accelerate", version=f"transformers {TRANSFORMERS_VERSION} / accelerate "
                        f"{ACCELERATE_VERSION}", knobs=knobs, ranks=ranks, starts=refusal is None, refusal=refusal,
                        notes=notes)


def _describe(report: AccelerateReport, device: Device) -> str:
    layers = report.device_layers.get(device, ())
    span = f"layers {layers[0]}–{layers[-1]}" if layers else "no decoder layers"
    others = [p.module for p in report.placements if p.device == device and not p.module.startswith("model.layers")
              and p.module != "model"]
    extra = f" + {', '.join(others)}" if others else ""
    return f"{device}: {span}{extra}, {report.device_bytes[device] / GiB:.3f} GiB"


__all__ = [
    "AccelerateReport",
    "DevicePlacement",
    "balanced_max_memory",
    "clean_device_map",
    "default_max_memory",
    "infer_placements",
    "module_tree",
    "predict_accelerate",
    "predict_device_map",
]
