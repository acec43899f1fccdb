"""vLLM and a vision tower (Qwen3-VL, Qwen3.5 / 3.6): the encoder's weights under ``--mm-encoder-tp-mode``, the
deepstack buffers, and what the start-up profile charges for images (``--limit-mm-per-prompt``).

Sources (vLLM v0.33.0; the same rules in v0.11.0, the first release with Qwen3-VL, unless noted):
- ``--mm-encoder-tp-mode`` (config/multimodal.py, added in 0.10.1): ``weights`` (default) shards the encoder like
  the language model (``core.arch.vision``); ``data`` keeps the whole encoder on every TP rank and splits the
  images of a batch over them (models/qwen3_vl.py ``use_data_parallel``, ``run_dp_sharded_mrope_vision_model``).
- Deepstack buffers (models/qwen3_vl.py ``Qwen3VLForConditionalGeneration.__init__``): one
  ``torch.zeros(max_num_batched_tokens, text hidden)`` per deepstack level, allocated with the model (in its dtype, on
  the device), so "Model loading took" includes them; from 0.33 only where the stage holds the vision tower
  (``StageMissingLayer``). Qwen3.5 / 3.6 have no deepstack levels.
- The profile (v1/worker/gpu_model_runner.py ``profile_run``): unless ``--skip-mm-profiling`` (0.10.2+), it runs the
  encoder on a dummy batch of the modality with the most tokens per item, keeps the outputs in ``encoder_cache``
  through the language model's dummy forward and sampler, then clears them. The batch
  (multimodal/encoder_budget.py ``MultiModalBudget._get_max_items``, v1/core/encoder_cache_manager.py
  ``compute_mm_encoder_budget``): encoder budget = max(max_num_batched_tokens, tokens per item); items =
  max(1, min(budget // tokens per item, max_num_seqs × max(1, min(limit per prompt, max_model_len // tokens per
  item)))); a modality whose ``--limit-mm-per-prompt`` is 0 is not profiled (default limit 999).
- Tokens per item (models/qwen2_vl.py ``get_image_size_with_most_features``, qwen3_vl.py ``get_max_video_tokens``):
  the largest n ≤ max_pixels // (patch · merge)² whose closest factor pair has an aspect ratio ≤ 200; a video item is
  two frames (one temporal patch) within video max_pixels // temporal_patch_size. The processors' defaults are the
  published ``preprocessor_config.json`` / ``video_preprocessor_config.json`` (``constants``).
- The encoder output per token (qwen3_vl.py ``embed_multimodal``): out_hidden × (1 + deepstack levels), model dtype.

The encoder's own transient peak (``encoder_forward_peak_bytes``) is an estimate from the block's tensors, not a
measurement; it is reported separately so a reader can see when it, not the language model, sets the profile peak.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from shardsim.constants import QWEN_VL_IMAGE_MAX_PIXELS, QWEN_VL_VIDEO_MAX_PIXELS, VLLM_MM_DEFAULT_LIMIT
from shardsim.core.arch.vision import vision_tensors
from shardsim.core.layout import Layout, rank_coords
from shardsim.core.model import ModelSpec, QuantConfig
from shardsim.core.tensors import Shard
from shardsim.errors import ShardsimError
from shardsim.units import DTYPE_BYTES

MODALITIES = ("image", "video")
VISION_KNOBS = ("limit_mm_per_prompt", "mm_encoder_tp_mode", "skip_mm_profiling", "mm_max_pixels")
ENCODER_TP_MODES = ("weights", "data")
MAX_ASPECT_RATIO = 200  # models/qwen2_vl.py get_image_size_with_most_features: "avoid extreme aspect ratios (>200)"


def parse_limits(text: str | None) -> dict[str, int]:
    """``--limit-mm-per-prompt`` as vLLM spells it (``image=2,video=0`` or ``{"image": 2, "video": 0}``) → counts;
    an unnamed modality keeps the default (999, config/multimodal.py ``get_limit_per_prompt``)."""
    limits = dict.fromkeys(MODALITIES, VLLM_MM_DEFAULT_LIMIT)
    if not text:
        return limits
    body = text.strip().strip("{}")
    for part in filter(None, (p.strip() for p in body.split(","))):
        name, sep, value = part.replace(":", "=").partition("=")
        name, value = name.strip().strip("'\""), value.strip()
        if not sep or name not in MODALITIES or not value.isdigit() or int(value) > 1_000_000:
            raise ShardsimError(f"--limit-mm-per-prompt {text!r:.60} is not understood; accepted: image=N,video=N "
                                "(N a whole number) or {\"image\": N, \"video\": N}")
        limits[name] = int(value)
    return limits


def tokens_per_item(spec: ModelSpec, max_pixels: int, frames: int = 1) -> int:
    """Merged vision tokens of the item with the most features under ``max_pixels`` (module docstring)."""
    v = spec.vision
    unit = v.patch_size * v.spatial_merge_size
    most = max_pixels // (unit * unit)
    for n in range(most, 0, -1):
        short = next(d for d in range(math.isqrt(n), 0, -1) if n % d == 0)
        if n // short / short <= MAX_ASPECT_RATIO:
            return max(-(-frames // v.temporal_patch_size), 1) * n   # frames padded to whole temporal patches
    return 0


@dataclass(frozen=True, slots=True)
class EncoderProfile:
    """What the profile's encoder run holds on a rank of the first stage."""

    modality: str
    tokens_per_item: int
    items: int
    output_bytes: int            # the dummy batch's encoder outputs, kept in encoder_cache through the LM's run
    forward_peak_bytes: int      # the encoder's own transient during that run (estimate)

    def describe(self) -> str:
        return (f"profile: {self.items} {self.modality} item(s) of {self.tokens_per_item:,} tokens through the vision "
                f"encoder; outputs held {self.output_bytes / 2**20:,.0f} MiB, encoder peak "
                f"{self.forward_peak_bytes / 2**20:,.0f} MiB (estimate) — --limit-mm-per-prompt image=0,video=0 or "
                "--skip-mm-profiling skips it")


def encoder_profile(spec: ModelSpec, tp: int, dtype: str, limits: dict[str, int], tp_mode: str,
                    max_len: int, max_num_seqs: int, max_num_batched_tokens: int,
                    image_max_pixels: int = QWEN_VL_IMAGE_MAX_PIXELS,
                    video_max_pixels: int = QWEN_VL_VIDEO_MAX_PIXELS) -> EncoderProfile | None:
    """The profile's dummy encoder batch (module docstring), or None when no modality is profiled."""
    v = spec.vision
    if v is None:
        return None
    per_item = {"image": tokens_per_item(spec, image_max_pixels),
                "video": tokens_per_item(spec, video_max_pixels // v.temporal_patch_size, frames=2)}
    active = {m: n for m, n in per_item.items() if limits.get(m, 0) > 0 and n > 0}
    if not active:
        return None
    modality, tokens = max(active.items(), key=lambda mn: (mn[1], mn[0]))
    budget = max(max_num_batched_tokens, tokens)
    per_prompt = max(1, min(limits[modality], max_len // tokens))
    items = max(1, min(budget // tokens, max_num_seqs * per_prompt))
    a = DTYPE_BYTES[dtype if dtype in ("bf16", "fp16") else "bf16"]
    output = items * tokens * v.out_hidden_size * (1 + v.deepstack_mergers) * a
    # data mode: the images are split over the TP ranks, each runs whole items on the whole encoder
    shard_tp, rank_items = (1, -(-items // tp)) if tp_mode == "data" else (tp, items)
    return EncoderProfile(modality, tokens, items, output,
                          encoder_forward_peak_bytes(spec, rank_items * tokens, shard_tp, a))


def profile_for(spec: ModelSpec, tp: int, dtype: str, limits: dict[str, int], knobs, max_num_seqs: int,
                max_num_batched_tokens: int) -> EncoderProfile | None:
    """``encoder_profile`` with a ``VllmKnobs``' settings (None with --skip-mm-profiling)."""
    if knobs.skip_mm_profiling:
        return None
    return encoder_profile(spec, tp, dtype, limits, knobs.mm_encoder_tp_mode,
                           knobs.max_model_len or spec.max_position_embeddings, max_num_seqs, max_num_batched_tokens,
                           knobs.mm_max_pixels or QWEN_VL_IMAGE_MAX_PIXELS)


def encoder_forward_peak_bytes(spec: ModelSpec, merged_tokens: int, tp: int, a: int) -> int:
    """Estimate of the encoder's transient peak over P = tokens · merge² patches (vLLM qwen3_vl.py
    ``Qwen3_VisionTransformer.forward`` / ``Qwen3_VisionBlock``): the pixel input [P, C·T·p²], the hidden state and
    the interpolated position embedding [P, d] each, and the larger of the attention half (norm output, qkv [P, 3d/t],
    the roped q and k [P, 2d/t], its output [P, d/t]) and the MLP half (norm output, fc1 and its GELU [P, Iv/t] each),
    plus the deepstack features kept [tokens, H] per level. Not measured: shown as an estimate."""
    v = spec.vision
    patches = merged_tokens * v.spatial_merge_size ** 2
    d, iv = v.hidden_size, v.intermediate_size
    pixels = patches * v.in_channels * v.temporal_patch_size * v.patch_size ** 2
    block = max(d + 3 * d // tp + 2 * d // tp + d // tp, d + 2 * (iv // tp))
    deepstack = v.deepstack_mergers * merged_tokens * v.out_hidden_size
    return (pixels + 2 * patches * d + patches * block + deepstack) * a


def vision_bytes(spec: ModelSpec, dtype: str, quant: QuantConfig, shard: Shard) -> int:
    """The vision tower's weights on a rank holding ``shard`` (``core.arch.vision`` shard rules, stored as the
    weight format stores them); memoised per size class of the shard (``WeightModel.size_class``: the lowest rank
    whose every tensor, the tower's included, has this rank's shapes), so a review's thousands of ranks cost a few
    sums."""
    from shardsim.core.memory.weights import weight_model

    return _vision_bytes(spec, dtype, quant, weight_model(spec, dtype, quant).size_class(shard))


@lru_cache(maxsize=4096)
def _vision_bytes(spec: ModelSpec, dtype: str, quant: QuantConfig, shard: Shard) -> int:
    from shardsim.core.memory.weights import stored_tensors

    return sum(st.bytes() for t in vision_tensors(spec) for st in stored_tensors(t, shard, spec, dtype, quant))


def data_mode_extra_bytes(spec: ModelSpec, dtype: str, quant: QuantConfig, tp: int, tp_rank: int) -> int:
    """``--mm-encoder-tp-mode data``: the whole encoder on every TP rank, less the share ``weights`` mode gives it."""
    if spec.vision is None or tp == 1:
        return 0
    return vision_bytes(spec, dtype, quant, Shard()) - vision_bytes(spec, dtype, quant, Shard(tp=tp, tp_rank=tp_rank))


def deepstack_buffer_bytes(spec: ModelSpec, max_num_batched_tokens: int, dtype: str) -> int:
    """The deepstack input buffers allocated with the model (module docstring)."""
    if spec.vision is None:
        return 0
    a = DTYPE_BYTES[dtype if dtype in ("bf16", "fp16") else "bf16"]
    return spec.vision.deepstack_mergers * max_num_batched_tokens * spec.hidden_size * a


def check_knobs(knobs) -> None:
    """The vision knobs of a ``VllmKnobs``, each refusal one line."""
    if knobs.mm_encoder_tp_mode not in ENCODER_TP_MODES:
        raise ShardsimError(f"--mm-encoder-tp-mode {knobs.mm_encoder_tp_mode!r:.40} is not known; accepted: "
                            + ", ".join(ENCODER_TP_MODES))
    if knobs.mm_max_pixels is not None and not 1024 <= knobs.mm_max_pixels <= 1 << 32:
        raise ShardsimError(f"--mm-max-pixels {knobs.mm_max_pixels} is out of range; accepted: 1,024 … 4,294,967,296")
    parse_limits(knobs.limit_mm_per_prompt)


def served_spec(spec: ModelSpec, knobs, limits: dict[str, int]) -> ModelSpec:
    """The model as vLLM builds it: without the tower when --limit-mm-per-prompt is 0 for images and videos
    (models/qwen3_vl.py@v0.11.0 ``self.visual = None``; interfaces.py@v0.33.0 ``_mark_tower_model``). Vision knobs on a
    model without a tower are refused."""
    defaults = type(knobs)()
    given = ["--" + n.replace("_", "-") for n in VISION_KNOBS if getattr(knobs, n) != getattr(defaults, n)]
    if spec.vision is None and given:
        raise ShardsimError(f"{spec.name} has no vision tower; {', '.join(given)} apply to Qwen3-VL and Qwen3.5 / 3.6 "
                            "only")
    return spec.model_copy(update={"vision": None}) if spec.vision is not None and not any(limits.values()) else spec


def extra_weight_bytes(spec: ModelSpec, layout: Layout, dtype: str, quant: QuantConfig, rank: int, vision_here: bool,
                       tp_mode: str, max_num_batched_tokens: int) -> int:
    """What vLLM holds of the vision tower beyond the shard the common rules place on the first stage: the tower on
    later stages where this release builds it there (``vision_here``), the whole encoder on every TP rank with
    ``--mm-encoder-tp-mode data``, and Qwen3-VL's deepstack buffers."""
    if spec.vision is None:
        return 0
    coords = rank_coords(rank, layout)
    weights_mode = vision_bytes(spec, dtype, quant, Shard(tp=layout.tp, tp_rank=coords.tp_rank))
    held = (vision_bytes(spec, dtype, quant, Shard()) if tp_mode == "data" else weights_mode) if vision_here else 0
    placed = weights_mode if coords.pp_rank == 0 else 0
    buffers = deepstack_buffer_bytes(spec, max_num_batched_tokens, dtype) if vision_here else 0
    return held - placed + buffers
