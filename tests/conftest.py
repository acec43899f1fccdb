"""Shared fixtures for the planner-core tests: raw preset configs and the reference figures of the brief.

Expected values are computed from the raw ``config.json`` numbers (read here with ``json``, not through
``shardsim.models``) so a test never checks a function against itself.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import shardsim

PRESETS_DIR = Path(shardsim.__file__).resolve().parent / "presets"

BF16_PRESETS = (
    "Qwen3-0.6B", "Qwen3-1.7B", "Qwen3-4B", "Qwen3-8B", "Qwen3-14B", "Qwen3-32B", "Qwen3-30B-A3B", "Qwen3-235B-A22B",
)
FP8_PRESETS = ("Qwen3-32B-FP8", "Qwen3-30B-A3B-FP8", "Qwen3-235B-A22B-FP8")

# Whole-model bytes in bf16, tied embeddings counted once (published checkpoint sizes).
BF16_TOTAL_BYTES = {
    "Qwen3-0.6B": 1_192_099_840,
    "Qwen3-1.7B": 3_441_149_952,
    "Qwen3-4B": 8_044_936_192,
    "Qwen3-8B": 16_381_470_720,
    "Qwen3-14B": 29_536_614_400,
    "Qwen3-32B": 65_524_246_528,
    "Qwen3-30B-A3B": 61_064_245_248,
    "Qwen3-235B-A22B": 470_187_269_120,
}
PARAMS = {
    "Qwen3-0.6B": 596_049_920,
    "Qwen3-1.7B": 1_720_574_976,
    "Qwen3-4B": 4_022_468_096,
    "Qwen3-8B": 8_190_735_360,
    "Qwen3-14B": 14_768_307_200,
    "Qwen3-32B": 32_762_123_264,
    "Qwen3-30B-A3B": 30_532_122_624,
    "Qwen3-235B-A22B": 235_093_634_560,
}
ACTIVE_PARAMS = {"Qwen3-30B-A3B": 3_353_032_704, "Qwen3-235B-A22B": 22_190_763_520}

# A tiny Qwen3 config with odd sizes, so that uneven splits and ceil() paths are exercised.
TINY_CONFIG = {
    "architectures": ["Qwen3ForCausalLM"],
    "hidden_size": 6,
    "intermediate_size": 5,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "num_key_value_heads": 1,
    "head_dim": 3,
    "vocab_size": 7,
    "tie_word_embeddings": False,
    "max_position_embeddings": 64,
    "torch_dtype": "bfloat16",
}

# A small Qwen3 config that real validation runs load in seconds (checkpoints of a few hundred KB).
SMALL = {"architectures": ["Qwen3ForCausalLM"], "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
         "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16, "vocab_size": 512,
         "tie_word_embeddings": False, "max_position_embeddings": 256, "torch_dtype": "bfloat16",
         "rms_norm_eps": 1e-6, "rope_theta": 1000000.0}


def raw_config(full_name: str) -> dict:
    """The preset's config.json as plain JSON."""
    return json.loads((PRESETS_DIR / f"{full_name}.json").read_text())


class Cfg:
    """Short names for the config numbers the arithmetic uses."""

    def __init__(self, full_name: str):
        c = raw_config(full_name)
        self.name = full_name
        self.h = c["hidden_size"]
        self.i = c["intermediate_size"]
        self.L = c["num_hidden_layers"]
        self.nh = c["num_attention_heads"]
        self.kv = c["num_key_value_heads"]
        self.hd = c["head_dim"]
        self.V = c["vocab_size"]
        self.tied = bool(c.get("tie_word_embeddings", False))
        self.moe = c["architectures"][0] == "Qwen3MoeForCausalLM"
        self.E = c.get("num_experts", 0) if self.moe else 0
        self.k = c.get("num_experts_per_tok", 0) if self.moe else 0
        self.mi = c.get("moe_intermediate_size", 0) if self.moe else 0
        step = c.get("decoder_sparse_step", 1) or 1
        mlp_only = set(c.get("mlp_only_layers") or [])
        self.moe_layers = [l for l in range(self.L) if self.moe and l not in mlp_only and (l + 1) % step == 0]


@pytest.fixture(scope="session")
def cfg():
    cache: dict[str, Cfg] = {}

    def get(name: str) -> Cfg:
        if name not in cache:
            cache[name] = Cfg(name)
        return cache[name]

    return get
