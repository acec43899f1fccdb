"""SGLang's hybrid memory (engines/sglang_hybrid.py): the state pool and the KV pool by release, arithmetic written
out (research: /work/research/engines/SGLANG_HYBRID.md, from the SGLang wheels 0.5.2–0.5.23)."""

import subprocess
from pathlib import Path

import pytest

from shardsim.core.layout import Layout, validate_layout
from shardsim.engines.releases import resolve
from shardsim.engines.sglang import SglangKnobs
from shardsim.engines.sglang_hybrid import check_hybrid_knobs, size_pools, ssm_dtype, state_per_request
from shardsim.errors import ShardsimError
from shardsim.presets import get_preset

GiB = 1 << 30
SHARDSIM = Path(__file__).resolve().parents[2] / ".venv" / "bin" / "shardsim"
NEXT = get_preset("next-80b-a3b")


def rules(version):
    return resolve("sglang", version).rules


def test_qwen3_next_tp1_state_per_request():
    # 36 GDN layers; conv (4 − 1) · (2·16·128 + 32·128 = 8,192) · 2 B = 49,152; temporal 32·128·128·4 = 2,097,152
    assert NEXT.num_layers - NEXT.attention_layers == 36
    assert state_per_request(NEXT, 1, 0, 47, 4) == 36 * (49_152 + 2_097_152) == 77_266_944
    # bf16 temporal: 32·128·128·2 = 1,048,576 → 36 · 1,097,728 = 39,518,208 B ≈ 39.5 MB
    assert state_per_request(NEXT, 1, 0, 47, 2) == 36 * (49_152 + 1_048_576) == 39_518_208


def test_worked_example_50_gib_left_ratio_0_9():
    # 0.5.4–0.5.13 rules, radix on; cell = 2 KV heads · 256 · 12 full layers · 2 · 2 B = 24,576 B
    cell, per_req = 2 * 256 * 12 * 2 * 2, 77_266_944
    assert cell == 24_576
    pools = size_pools(rules("0.5.10"), SglangKnobs(), 50.0, per_req, cell, 262_144)
    # state memory = 50 GiB · 0.9/1.9 = 25,430,727,410.5 B; // 77,266,944 = 329
    assert pools.slots == int(50 * GiB * 0.9 / 1.9 // per_req) == 329
    # #tokens = (50 GiB − 329 · 77,266,944 = 28,266,266,624 B) // 24,576 = 1,150,157
    assert pools.kv_tokens == (50 * GiB - 329 * per_req) // cell == 1_150_157
    # max running = min(default, 329 // 3 = 109); default = max(int(1,150,157 / 262,144 · 512) = 2,246, 2,048)
    assert pools.ratio == 3 and pools.default_requests == 2_246 and pools.max_running == 109
    # with the extra buffer (overlap schedule on): ratio 3 + 2, 329 // 5 = 65
    extra = size_pools(rules("0.5.10"), SglangKnobs(mamba_scheduler_strategy="extra_buffer"), 50.0, per_req, cell,
                       262_144)
    assert extra.ratio == 5 and extra.max_running == 65
    # from 0.5.14 auto is extra_buffer
    assert size_pools(rules("0.5.14"), SglangKnobs(), 50.0, per_req, cell, 262_144).max_running == 65
    # bf16 state: 25,430,727,410.5 // 39,518,208 = 643 slots; (50 GiB − 643 · 39,518,208) // 24,576 = 1,150,589
    bf16 = size_pools(rules("0.5.10"), SglangKnobs(), 50.0, 39_518_208, cell, 262_144)
    assert (bf16.slots, bf16.kv_tokens, bf16.max_running) == (643, 1_150_589, 643 // 3)
    # the pool allocates one padding slot: (329 + 1) · 77,266,944
    assert pools.state_pool_bytes == 330 * per_req


def test_padding_slot_counted_from_0_5_17():
    cell, per_req = 24_576, 77_266_944
    pools = size_pools(rules("0.5.17"), SglangKnobs(), 50.0, per_req, cell, 262_144)
    # (25,430,727,410.5 − 77,266,944) // 77,266,944 = 328; state charged (328 + 1) · per request
    assert pools.slots == 328
    assert pools.kv_tokens == (50 * GiB - 329 * per_req) // cell == 1_150_157


def test_radix_cache_forced_off_0_5_2_fixed_slots():
    cell, per_req = 24_576, 77_266_944
    pools = size_pools(rules("0.5.2"), SglangKnobs(), 50.0, per_req, cell, 262_144)
    # 512 slots taken first: (50 GiB − 512 · 77,266,944) // 24,576 = 574,805 tokens; ratio 1 → min(2,048, 512)
    assert pools.slots == 512 and pools.ratio == 1
    assert pools.kv_tokens == (50 * GiB - 512 * per_req) // cell == 574_805
    assert pools.max_running == 512
    given = size_pools(rules("0.5.3"), SglangKnobs(max_running_requests=64), 50.0, per_req, cell, 262_144)
    assert given.slots == 64 and given.max_running == 64


def test_ssm_dtype_by_release():
    spec35 = get_preset("3.5-35b-a3b")
    assert ssm_dtype(NEXT, rules("0.5.23"), SglangKnobs())[0] == "fp32"  # Qwen3-Next: no mamba_ssm_dtype
    assert ssm_dtype(spec35, rules("0.5.9"), SglangKnobs())[0] == spec35.state_dtype == "fp32"
    assert ssm_dtype(NEXT, rules("0.5.23"), SglangKnobs(mamba_ssm_dtype="bfloat16"))[0] == "bf16"


@pytest.mark.parametrize("model, version, knobs, text", [
    ("next-80b-a3b", "0.5.1", {}, r"does not serve Qwen3NextForCausalLM \(first in 0\.5\.2\)"),
    ("3.5-35b-a3b", "0.5.8", {}, "first in 0.5.9"),
    ("next-80b-a3b", "0.5.3", {"mamba_full_memory_ratio": 0.5}, "added in 0.5.4"),
    ("next-80b-a3b", "0.5.14", {"mamba_scheduler_strategy": "extra_buffer"}, "takes --mamba-radix-cache-strategy"),
    ("next-80b-a3b", "0.5.10", {"mamba_radix_cache_strategy": "auto"}, "takes --mamba-scheduler-strategy"),
    ("next-80b-a3b", "0.5.4", {"mamba_scheduler_strategy": "auto"}, "has no strategy flag"),
    ("8b", "0.5.23", {"max_mamba_cache_size": 8}, "applies to hybrid models"),
    ("next-80b-a3b", "0.5.23", {"mamba_ssm_dtype": "fp8"}, "accepted: float32, bfloat16"),
])
def test_refusals_one_line(model, version, knobs, text):
    with pytest.raises(ShardsimError, match=text) as err:
        check_hybrid_knobs(get_preset(model), resolve("sglang", version), SglangKnobs(**knobs))
    assert "\n" not in str(err.value)


def test_state_cache_error_from_0_5_13():
    from shardsim.engines.sglang import predict_sglang

    spec = NEXT
    layout = validate_layout(spec, Layout(tp=4))
    rep = predict_sglang(spec, layout, int(79.18 * GiB), None, "bf16", spec.quant,
                         SglangKnobs(engine_version="0.5.23", mem_fraction_static=0.48))
    # 0.48 of 79.18 GiB leaves about 0.5 GiB per rank after 40 GiB of weights: 3 slots // 5 = 0 running requests
    assert rep.state_blocks == 3 and rep.max_running_requests == 0
    assert not rep.starts and rep.refusal.startswith("RuntimeError: Hybrid (mamba/linear-attention) state cache is "
                                                     "too small to serve any requests")
    # 0.45: rest = −2.20 GiB, no slot at all; from 0.5.13 SGLang's own error, before it the empty KV pool's
    knobs = {"mem_fraction_static": 0.45}
    rep = predict_sglang(spec, layout, int(79.18 * GiB), None, "bf16", spec.quant, SglangKnobs(engine_version="0.5.23",
                                                                                               **knobs))
    assert rep.refusal.startswith("RuntimeError: Not enough GPU memory for hybrid (mamba/linear-attention) state "
                                  "cache. Computed max_mamba_cache_size=-59 (total_rest_memory=-2.20 GB, "
                                  "mamba_cache_per_req=18.42 MB).")
    rep = predict_sglang(spec, layout, int(79.18 * GiB), None, "bf16", spec.quant, SglangKnobs(engine_version="0.5.10",
                                                                                               **knobs))
    assert rep.refusal == "RuntimeError: Not enough memory. Please try to increase --mem-fraction-static."


def test_plan_qwen35_35b_tp2_prints_state_kv_and_concurrency():
    out = subprocess.run([str(SHARDSIM), "plan", "Qwen/Qwen3.5-35B-A3B", "--engine", "sglang",
                          "--tp", "2", "--gpu", "h100"], capture_output=True, text=True, env={"COLUMNS": "200",
                          "NO_COLOR": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    # TP2 per request: 30 GDN layers × (3 · 4,096 · 2 + 16 · 128 · 128 · 4 = 1,073,152) = 32,194,560 B (fp32 from the
    # config); KV: 1 KV head · 256 · 2 · 2 B · 10 full layers = 10,240 B per token
    assert "state 32,194,560 B per request" in out.stdout and "KV 10,240 B per token" in out.stdout
    assert "max_running_requests" in out.stdout and "_calculate_mamba_ratio" in out.stdout
    assert "kv_cache_configurator.py@v0.5.20" in out.stdout


def test_max_running_requests_caps_a_dense_model_and_sizes_its_request_table():
    from shardsim.engines.sglang import predict_sglang

    # Qwen3-8B on one H100 at context 8,192: the default table has min(max(tokens / 8,192 · 512, 2,048), 4,096) rows;
    # --max-running-requests 16 gives it 16 rows of (8,192 + 4) int32 and caps the running batch at 16
    spec, layout = get_preset("8b"), validate_layout(get_preset("8b"), Layout())
    base = predict_sglang(spec, layout, int(79.18 * GiB), None, "bf16", spec.quant,
                          SglangKnobs(engine_version="0.5.10", context_length=8192))
    capped = predict_sglang(spec, layout, int(79.18 * GiB), None, "bf16", spec.quant,
                            SglangKnobs(engine_version="0.5.10", context_length=8192, max_running_requests=16))
    tokens = base.kv_cache_tokens
    default_rows = min(max(int(tokens / 8192 * 512), 2048), 4096)
    # the scheduler's cap without the flag: min(max_total_num_tokens // 2, the table's rows)
    assert (base.max_running_requests, capped.max_running_requests) == (min(tokens // 2, default_rows), 16)
    assert capped.kv_cache_tokens == tokens
    assert base.ranks[0].used_bytes - capped.ranks[0].used_bytes == (default_rows - 16) * (8192 + 4) * 4
