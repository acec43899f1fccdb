"""HF's start verdict (loading, prefill, the Nth token) and the 'what to change' line."""

from shardsim.core.layout import Layout, validate_layout
from shardsim.engines.hf import HfKnobs, load_peak_bytes, predict_hf
from shardsim.core.requests import Hardware, ServeRequest
from shardsim.core.workload import Workload
from shardsim.engines.registry import choose
from shardsim.engines.run import engine_report
from shardsim.presets import get_preset


def report_of(engine, spec, layout, capacity, gpu, cc, smi, dtype, quant, knobs, suggest_fix=True):
    """The engine's report for these inputs, through the one request every command builds."""
    request = ServeRequest(spec, layout, Workload(dtype=dtype, quant=quant), Hardware(gpu, capacity, cc, smi),
                           choose(engine, knobs))
    return engine_report(request, suggest_fix=suggest_fix)

GiB = 1 << 30
MiB = 1 << 20
CONTEXT = 624 * MiB   # fitted CUDA context (shardsim.fitted)


def test_float32_load_path_before_transformers_5():
    spec = get_preset("8b")
    weights = 8_190_735_360 * 2        # Qwen3-8B in bf16
    old = HfKnobs(load_dtype="unset", engine_version="4.51.3")
    # fp32 copy (2 × the bf16 bytes) + the embedding cast to bf16 while the fp32 copy still exists: 151,936 × 4,096 × 2
    assert load_peak_bytes(spec, "bf16", spec.quant, weights, old) == weights * 2 + 151_936 * 4_096 * 2
    new = HfKnobs(load_dtype="unset", engine_version="5.0.0")
    assert load_peak_bytes(spec, "bf16", spec.quant, weights, new) == weights   # "auto": the checkpoint's bf16
    assert load_peak_bytes(spec, "bf16", spec.quant, weights, HfKnobs()) == weights


def test_hf_says_where_it_runs_out_of_memory():
    spec = get_preset("8b")
    lay = validate_layout(spec, Layout())
    v100 = 32 * GiB
    rep = predict_hf(spec, lay, "7.0", "bf16", spec.quant, HfKnobs(load_dtype="unset", engine_version="4.51.3"), v100)
    assert not rep.starts and "while loading" in rep.refusal
    # 24 GiB card, batch 8: weights 15.26 GiB; KV 36 layers × 2 × 8 heads × 128 × 2 B = 147,456 B per token
    card = 24 * GiB
    knobs = HfKnobs(prompt_tokens=1000, generate_tokens=20000, batch=8)
    rep = predict_hf(spec, lay, "8.9", "bf16", spec.quant, knobs, card)
    weights = rep.ranks[0].model_loading_bytes
    fixed = (8 * MiB + 128 * 1024 + 1 * MiB) + 8 * 151_936 * (2 + 4)   # cuBLAS (pre-Hopper) + logits bf16 + fp32
    first_bad = (card - CONTEXT - weights - fixed) // (147_456 * 8) + 1
    assert not rep.starts and f"at token {first_bad:,}" in rep.refusal
    assert predict_hf(spec, lay, "8.9", "bf16", spec.quant, HfKnobs(prompt_tokens=1000, generate_tokens=100), card).starts


def test_what_to_change_is_a_line_of_flags_that_starts():
    spec = get_preset("32b")
    lay = validate_layout(spec, Layout())
    h100 = int(79.18 * GiB)
    args = ("vllm", spec, lay, h100, "H100-SXM-80GB", "9.0", None, "bf16", spec.quant)
    rep = report_of(*args, {"engine_version": "0.11.0"})
    assert not rep.starts and rep.suggestion.startswith("vllm serve Qwen/Qwen3-32B --tensor-parallel-size 1")
    length = int(rep.suggestion.split("--max-model-len ")[1].split()[0])
    assert 1024 <= length < 40_960
    assert report_of(*args, {"engine_version": "0.11.0", "max_model_len": length}).starts
    assert not report_of(*args, {"engine_version": "0.11.0", "max_model_len": length + 16}).starts
    # weights alone do not fit a 48 GB card: the fix is more GPUs
    l40s = int(44.52 * GiB)
    rep = report_of("vllm", spec, lay, l40s, "L40S-48GB", "8.9", None, "bf16", spec.quant, {})
    assert "--tensor-parallel-size 2" in rep.suggestion
