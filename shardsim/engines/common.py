"""What every engine profile returns: per-rank figures in the engine's own terms, and a start verdict."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from shardsim.constants import CUBLAS_WORKSPACE_BYTES, CUBLAS_WORKSPACE_PRE_HOPPER_BYTES
from shardsim.core.layout import Layout, rank_coords, shard_of, stage_ranges
from shardsim.core.memory.weights import weight_model
from shardsim.core.model import ModelSpec, QuantConfig


@dataclass(slots=True)
class EngineRankReport:
    """One rank as the engine sees it; byte figures are ints, absent ones None."""

    rank: int
    layers: int
    model_loading_bytes: int
    activation_peak_bytes: int | None = None
    non_torch_bytes: int | None = None
    cuda_graph_bytes: int | None = None
    available_kv_cache_bytes: int | None = None
    kv_cache_bytes: int | None = None
    kv_cache_tokens: int | None = None
    peak_allocated_bytes: int | None = None
    used_bytes: int | None = None


@dataclass(slots=True)
class EngineReport:
    engine: str
    version: str
    knobs: dict
    ranks: list[EngineRankReport]
    starts: bool
    refusal: str | None = None
    kv_cache_tokens: int | None = None
    max_concurrency: float | None = None
    peak_allocated_bytes: int | None = None
    error_bands: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    rules: dict | None = None  # the release's rule set (engines/releases.py)
    suggestion: str | None = None  # when it will not start: one line of flags that would (engines/suggest.py)
    # when it starts at the estimate but an estimated term at the edge of its held-out band would stop it: why
    start_risk: str | None = None
    # Hybrid models (None otherwise, and then left out of to_dict): per rank, the most loaded rank's figures
    kv_bytes_per_token: int | None = None  # K + V of one token over the full-attention layers
    state_bytes_per_sequence: int | None = None  # conv + delta-rule state of one request over the linear layers
    state_blocks: int | None = None  # state slots (SGLang: max_mamba_cache_size)
    state_pool_bytes: int | None = None  # SGLang: the MambaPool, slots + 1 padding slot
    max_running_requests: int | None = None  # SGLang: min(default, slots // ratio)
    attention_block_size: int | None = None  # vLLM: tokens per block of the shared K/V + state pool
    state_page_bytes: int | None = None  # vLLM: one sequence's state in one linear layer, before padding
    state_page_padding: float | None = None  # vLLM: the state page's padding to the attention page, a fraction
    state_blocks_per_request: int | None = None  # vLLM: blocks of the pool one request holds in the state groups

    def to_dict(self) -> dict:
        d = asdict(self)
        d["ranks"] = [asdict(r) for r in self.ranks]
        if d.get("start_risk") is None:
            d.pop("start_risk", None)
        for key in HYBRID_FIELDS:
            if d.get(key) is None:
                d.pop(key, None)
        return d


HYBRID_FIELDS = ("kv_bytes_per_token", "state_bytes_per_sequence", "state_blocks", "state_pool_bytes",
                 "max_running_requests", "attention_block_size", "state_page_bytes", "state_page_padding",
                 "state_blocks_per_request")
"""EngineReport fields only hybrids fill; absent from the JSON of other models."""


def cublas_workspace_bytes(compute_capability: str | None) -> int:
    """PyTorch's cuBLAS workspace (allocated through the caching allocator, so engines' profiles see it):
    32 MiB + 1 MiB cuBLASLt on Hopper (sm90) and newer, 8.125 MiB + 1 MiB before
    (aten/src/ATen/cuda/CublasHandlePool.cpp, getChosenWorkspaceSize)."""
    try:
        major = int(str(compute_capability).split(".")[0])
    except (TypeError, ValueError):
        major = 9
    return CUBLAS_WORKSPACE_BYTES if major >= 9 else CUBLAS_WORKSPACE_PRE_HOPPER_BYTES


@dataclass(frozen=True, slots=True)
class RankWeights:
    """One rank's pipeline position and exact weight bytes, by the planner's shard rules."""

    rank: int
    pp_rank: int
    first_layer: int
    last_layer: int
    weight_bytes: int

    @property
    def layers(self) -> int:
        return self.last_layer - self.first_layer + 1


def rank_weights(spec: ModelSpec, layout: Layout, dtype: str, quant: QuantConfig) -> tuple[RankWeights, ...]:
    """Every rank's layers and exact weight bytes (``memory.weights``, ``tensors.stage_edge_tensors``), kept on the
    weight model per layout (a review meets a layout again on every cluster)."""
    wm = weight_model(spec, dtype, quant)
    key = ("rank_weights", layout)
    if key not in wm.cache:
        wm.cache[key] = _rank_weights(wm, layout)
    return wm.cache[key]


def _rank_weights(wm, layout: Layout) -> tuple[RankWeights, ...]:
    ranges = stage_ranges(layout)
    per_stage = layout.world_size // layout.pp
    # a rank's tp, cp and dp ranks (so its ep and etp ranks: its shard) are those of its place in its stage
    # (``layout.rank_coords``): the shards' size classes of one stage serve every stage
    classes = [wm.size_class(shard_of(rank_coords(place, layout), layout)) for place in range(per_stage)]
    out, held = [], {}  # ranks of one stage whose shards have the same shapes hold the same bytes
    for pp_rank, (first, last) in enumerate(ranges):
        for place, size_class in enumerate(classes):
            key = (pp_rank, size_class)
            if key not in held:
                held[key] = wm.stage_tally(first, last, pp_rank == 0, pp_rank == layout.pp - 1, size_class).bytes
            out.append(RankWeights(pp_rank * per_stage + place, pp_rank, first, last, held[key]))
    return tuple(out)
