"""vLLM's profile terms by release (engines/vllm_profile.py, VllmRules), the arithmetic written out: the CUDA-graph
capture sizes, graph count and estimate, the fused-MoE workspaces kept under the dummy sampler, Model Runner V2's
sampler (fp32 copy by release, state on the last stage), later pipeline stages' receive buffers, the torch.compile
cache knob, the FP8 export's lm_head rule (one definition for plan and calibrate), the release a report assumes
and the release ranges calibrate rows may name."""

import json

import pytest

from shardsim.core.layout import Layout, validate_layout
from shardsim.core.memory.activations import activation_peak_bytes
from shardsim.core.quant import fp8_export_spec, quant_from_choice
from shardsim.core.requests import Hardware, ServeRequest
from shardsim.core.workload import Workload
from shardsim.engines import vllm_profile as prof
from shardsim.engines.calibration import calibrate
from shardsim.engines.calibration_release import parse_range, row_release_of
from shardsim.engines.registry import choose
from shardsim.engines.releases import resolve
from shardsim.engines.run import engine_report
from shardsim.errors import ShardsimError
from shardsim.fitted import fitted
from shardsim.presets import get_preset

GiB, MiB = 1 << 30, 1 << 20
H100 = int(79.18 * GiB)
PER_GRAPH = fitted("VLLM_CUDA_GRAPH_BYTES_PER_GRAPH")


def rules(version):
    return resolve("vllm", version).rules


def request_for(model, version=None, tp=1, pp=1, capacity=H100, gpu="H100-SXM-80GB", engine="vllm", quant=None,
                **knobs):
    spec = get_preset(model)
    return ServeRequest(spec, validate_layout(spec, Layout(tp=tp, pp=pp)),
                        Workload(dtype="bf16", quant=quant or spec.quant), Hardware(gpu, capacity, "9.0", None),
                        choose(engine, ({"engine_version": version} if version else {}) | knobs))


def report(model, version=None, tp=1, pp=1, capacity=H100, gpu="H100-SXM-80GB", engine="vllm", quant=None, **knobs):
    return engine_report(request_for(model, version, tp, pp, capacity, gpu, engine, quant, **knobs), suggest_fix=False)


# ------------------------------------------------------------------------------------------------ CUDA graphs
def test_capture_sizes_by_release():
    # ≤ 0.11.0: 1, 2, 4 and multiples of 8 up to min(2 × 256, 512) = 512: 3 + 64 = 67 sizes (the 0.10.2 log's list)
    old = prof.capture_sizes(rules("0.10.2"), 256, 2048)
    assert old[:5] == (1, 2, 4, 8, 16) and old[-1] == 512 and len(old) == 3 + 64
    assert prof.capture_sizes(rules("0.10.2"), 8, 2048) == (1, 2, 4, 8, 16)         # up to 2 × 8
    # 0.11.1+: multiples of 8 below 256 (31), of 16 from 256 to 512 (17): 3 + 31 + 17 = 51
    new = prof.capture_sizes(rules("0.11.1"), 1024, 8192)
    assert len(new) == 3 + 31 + 17 and new[-3:] == (480, 496, 512)
    # capped by max_num_batched_tokens (300): …, 272, 288; 0.24 adds 300 itself
    assert prof.capture_sizes(rules("0.11.1"), 1024, 300)[-2:] == (272, 288)
    assert prof.capture_sizes(rules("0.24.0"), 1024, 300)[-3:] == (272, 288, 300)


def test_capture_sizes_before_0_10_do_not_follow_max_num_seqs():
    # config.py@v0.8.5: [1, 2, 4] + multiples of 8 to 512 whatever max_num_seqs (PR #17201 kept 512 the default;
    # PR #20628 made it min(2 × max_num_seqs, 512)): 67 sizes at max_num_seqs 1; from 0.10 the top is 2 and
    # only 1, 2, 4 are left (the base list is not cut at the top: [1, 2, 4] + range(8, top + 1, 8))
    assert len(prof.capture_sizes(rules("0.8.5"), 1, 2048)) == 3 + 64
    assert len(prof.capture_sizes(rules("0.9.2"), 1, 2048)) == 3 + 64
    assert prof.capture_sizes(rules("0.10.0"), 1, 2048) == (1, 2, 4)
    assert prof.capture_sizes(rules("0.8.5"), 1, 100)[-1] == 96                      # ≤ max_num_batched_tokens


def test_graphs_captured_after_the_kv_cache_need_what_is_left():
    # 30B-A3B on 4 × 24 GB A10 (21.99 GiB usable), vLLM 0.8.5, TP4, max_num_seqs 1: graphs are captured after the
    # KV cache and not subtracted; left = device − weights − non-torch (the 0.8.5 profiler's holds the CUDA
    # context) − KV cache − cuBLAS workspace (the transient activations are back with the driver)
    from shardsim.engines.bands import under_band
    from shardsim.engines.common import cublas_workspace_bytes

    a10 = dict(capacity=int(21.99 * GiB), gpu="A10-24GB")
    rep = report("30b-a3b", "0.8.5", tp=4, max_model_len=8192, max_num_seqs=1, **a10)
    r = rep.ranks[0]
    left = (int(21.99 * GiB) - r.model_loading_bytes - r.non_torch_bytes - r.kv_cache_bytes
            - cublas_workspace_bytes("9.0"))
    # 67 sizes × 49 pieces (48 layers + 1) = 3,283 graphs: they fit at the estimate, not at the largest held-out
    # under-estimate (capture / (1 − under)); the sampler warm-up after them: 1 request × 151,936 logits × 38 B
    under = under_band("vllm", rules("0.8.5").label, "cuda_graph_bytes")
    high = int(r.cuda_graph_bytes / (1 - under))
    assert r.cuda_graph_bytes > 3283 * PER_GRAPH and r.cuda_graph_bytes + 151_936 * 38 <= left < high
    assert rep.starts and f"{left / GiB:.2f} GiB are left" in rep.start_risk and f"{high / GiB:.2f} GiB" in rep.start_risk
    # at 0.95 of the device, 1.10 GiB less is left: the capture runs out (WILL NOT START), and a fix is offered
    full = engine_report(request_for("30b-a3b", "0.8.5", tp=4, max_model_len=8192, max_num_seqs=1,
                                     gpu_memory_utilization=0.95, **a10))
    assert not full.starts and "capturing CUDA graphs" in full.refusal and full.start_risk is None
    assert "--gpu-memory-utilization 0.85" in full.suggestion or "--enforce-eager" in full.suggestion
    # without graphs there is nothing to capture
    eager = report("30b-a3b", "0.8.5", tp=4, max_model_len=8192, max_num_seqs=1, enforce_eager=True, **a10)
    assert eager.starts and eager.start_risk is None
    # from 0.20 the estimate comes off the KV budget; a KV size given outright skips that (checked again)
    assert report("30b-a3b", "0.20.0", tp=4, max_model_len=8192, max_num_seqs=1, **a10).starts
    given = report("8b", "0.20.0", capacity=24 * GiB, gpu="L4-24GB", max_model_len=4096,
                   kv_cache_memory_bytes=int(6.5 * GiB))
    assert not given.starts and "--kv-cache-memory-bytes" in given.refusal


def test_graph_capture_check_arithmetic():
    from shardsim.engines.refusals import graph_capture_check

    # 2 GiB of graphs + 0.25 GiB warm-up: refused with 2 GiB left; with 2.5 GiB left they fit, but at a 40 %
    # under-estimate the graphs take 2 / 0.6 = 3.33 GiB: a risk; with 3.6 GiB left, neither
    assert graph_capture_check(0, 2 * GiB, GiB // 4, 2 * GiB, 0.4, False).refusal
    mid = graph_capture_check(0, 2 * GiB, GiB // 4, int(2.5 * GiB), 0.4, False)
    assert mid.refusal is None and "3.33 GiB" in mid.risk
    assert graph_capture_check(0, 2 * GiB, GiB // 4, int(3.6 * GiB), 0.4, False) == type(mid)()
    # every held-out graph figure over-estimated (under 0): no risk beyond the estimate itself
    assert graph_capture_check(0, 2 * GiB, 0, int(2.1 * GiB), 0.0, False).risk is None


def test_v0_capture_sizes_follow_max_num_seqs():
    # config.py@v0.8.5, V0: up to the smallest of 1, 2, 4, 8, 16, … ≥ max_num_seqs, not cut by batched tokens
    assert prof.v0_capture_sizes(256)[-1] == 256 and len(prof.v0_capture_sizes(256)) == 3 + 32
    assert prof.v0_capture_sizes(3) == (1, 2, 4) and prof.v0_capture_sizes(10_000)[-1] == 8192


def test_a_start_inside_the_graph_band_is_borderline():
    from shardsim.core.verdict import BORDERLINE, plan_verdict

    # 8B, 0.19 (graphs estimated, not subtracted; held-out under-estimate 56.6 %) on a 24 GB card: at some device
    # size the capture fits at the estimate and not at the band's edge
    for capacity_gib in (19.0, 19.5, 20.0, 20.5, 21.0, 21.5, 22.0, 23.0):
        rep = report("8b", "0.19.0", capacity=int(capacity_gib * GiB), gpu="L4-24GB", max_model_len=4096)
        if rep.start_risk:
            break
    else:
        raise AssertionError("no capacity gave a start risk")
    assert rep.starts and "under-estimate of graph memory (56.7 %)" in rep.start_risk
    verdict = plan_verdict(_FitsPlan(), rep)
    assert verdict.status == BORDERLINE and "--enforce-eager" in (verdict.fix or "") + rep.start_risk
    assert "start_risk" in rep.to_dict()


class _FitsPlan:
    """A planner report with ample headroom: the verdict then rests on the engine's."""

    fits, headroom_bytes, capacity_bytes = True, 10 * GiB, 24 * GiB

    class peak:
        rank = 0

        class bytes:
            activations = runtime = 0


def test_graph_count_pool_and_capture_bytes_06b_h100_0_11_0():
    # 0.11.0 default FULL_AND_PIECEWISE: 67 sizes × 29 pieces (28 layers + 1) + 67 FULL decode sizes (≤ 1,024)
    g = report("0.6b", "0.11.0", max_model_len=16000)
    pool = activation_peak_bytes(get_preset("0.6b"), 1, 1, 512, 512, False, True, False)
    assert pool == 13_107_200                                                        # the 512-token forward
    assert g.ranks[0].cuda_graph_bytes == pool + (67 * 29 + 67) * PER_GRAPH == 13_107_200 + 2010 * 565_296
    assert any("2,010 graphs" in n and "not subtracted" in n for n in g.notes)
    assert g.rules["cuda_graphs_subtracted"] is False
    assert report("0.6b", "0.11.0", max_model_len=16000, enforce_eager=True).ranks[0].cuda_graph_bytes == 0


def test_v1_estimate_0_18_opt_in_0_20_subtracted():
    # V1 captures the two largest sizes per mode: first capture whole, the second × the other sizes (≥ 1 MiB)
    pool = activation_peak_bytes(get_preset("0.6b"), 1, 1, 512, 512, False, True, False)
    estimate = pool + 29 * PER_GRAPH + 50 * 29 * PER_GRAPH + 50 * MiB          # 51 sizes × 29 pieces, 51 FULL
    v019, v020 = report("0.6b", "0.19.0", max_model_len=16000), report("0.6b", "0.20.0", max_model_len=16000)
    assert v019.ranks[0].available_kv_cache_bytes - v020.ranks[0].available_kv_cache_bytes == estimate
    assert any("estimated, not subtracted" in n for n in v019.notes)
    assert any("subtracted from the KV cache budget" in n for n in v020.notes)


def test_rocm_gets_no_estimate_before_0_26():
    # gpu_worker.py@v0.24.0: the estimate only where current_platform.is_cuda(); @v0.26.0 is_cuda_alike()
    mi300x = dict(capacity=int(191.98 * GiB), gpu="MI300X-192GB")
    assert report("30b-a3b", "0.24.0", **mi300x).rules["cuda_graphs_subtracted"] is False      # MoE: V1 runner
    assert report("30b-a3b", "0.24.0").rules["cuda_graphs_subtracted"] is True                 # H100
    assert report("30b-a3b", "0.26.0", **mi300x).rules["cuda_graphs_subtracted"] is True


# ------------------------------------------------------------------------------------ what the profile leaves
def test_moe_workspaces_kept_under_the_sampler_from_0_14():
    spec = get_preset("30b-a3b")
    # workspace1 [8,192, 8, max(768, 2,048)] + workspace2 [8,192, 8, max(1,536, 2,048)] bf16 = 2 × 256 MiB
    assert prof.moe_workspace_bytes(spec, 1, 8192) == 2 * 8192 * 8 * 2048 * 2 == 512 * MiB
    assert prof.moe_workspace_bytes(spec, 2, 8192) == 512 * MiB                       # H-bound: TP does not shrink it
    # 0.13 frees them before the sampler; 0.14 keeps them: the peak is the sampler + 512 MiB
    old, new = report("30b-a3b", "0.13.0", tp=2), report("30b-a3b", "0.14.0", tp=2)
    sampler = 1024 * 151_936 * 38 + 2 * 2048 * (8192 + 2 * 1024)                 # native sort, 38 B per logit
    cublas = 33 * MiB
    assert old.ranks[0].activation_peak_bytes == sampler + cublas
    assert new.ranks[0].activation_peak_bytes == sampler + 512 * MiB + cublas
    assert any("fused-MoE workspaces 512 MiB" in n and "raises the peak 512 MiB" in n for n in new.notes)


def test_v2_sampler_fp32_copy_by_release():
    # bf16 logits (2 B) + the vocab shard before the gather at TP > 1 (2 B / tp) + the fp32 copy (4 B) where made
    assert prof.v2_per_logit(rules("0.24.0"), 1) == 2 + 4
    assert prof.v2_per_logit(rules("0.26.0"), 1) == 2                                  # in place
    assert prof.v2_per_logit(rules("0.28.0"), 1) == 2 + 4
    assert prof.v2_per_logit(rules("0.33.0"), 2) == 2 * (1 + 1 / 2) + 4


def test_pipeline_stages_sampler_state_and_receive_buffers():
    spec = get_preset("32b")
    # stage 1's receive buffers: hidden_states + residual [8,192, 5,120] bf16
    inter = prof.intermediate_tensor_bytes(spec, 8192, "bf16")
    assert inter == 2 * 8192 * 5120 * 2 == 160 * MiB
    state = 1024 * 151_936 * 4 + 1024 * 4748 * 4                                     # V2 penalty state, last stage
    v026, v027 = report("32b", "0.26.0", pp=2), report("32b", "0.27.0", pp=2)
    r0, r1 = v027.ranks
    # 0.27 counts what V2 allocated at load (consumed since the init snapshot): stage 1 holds both, stage 0 neither
    assert r1.non_torch_bytes - r0.non_torch_bytes == state + inter
    # 0.26 (torch peak increase + non-torch increase) counts neither: both stages alike
    assert v026.ranks[0].non_torch_bytes == v026.ranks[1].non_torch_bytes
    # V1 allocates the buffers inside the profile's dummy run: stage 1's activation peak holds them (0.20)
    v1 = report("30b-a3b", "0.20.0", pp=2)
    assert any("receive buffers 64 MiB" in n and "dummy run" in n for n in v1.notes)   # 2 × 8,192 × 2,048 × 2 B


# ------------------------------------------------------------------------------------------ compile cache
def test_compile_cache_knob_is_said_not_sized():
    cold, warm = report("8b", "0.10.2"), report("8b", "0.10.2", compile_cache="warm")
    assert cold.knobs["compile_cache"] == "cold" and warm.knobs["compile_cache"] == "warm"
    assert cold.kv_cache_tokens == warm.kv_cache_tokens                             # no number is invented
    assert any("cold cache (a first start)" in n for n in cold.notes)
    assert any("warm cache (a restart)" in n for n in warm.notes)
    assert not any("torch.compile" in n for n in report("8b", "0.10.2", enforce_eager=True).notes)
    with pytest.raises(ShardsimError, match="--compile-cache 'hot'"):
        report("8b", "0.10.2", compile_cache="hot")


# -------------------------------------------------------------------------------------------- FP8 export rule
def test_fp8_export_lm_head_one_rule_for_plan_and_calibrate():
    spec, fp8 = get_preset("0.6b"), quant_from_choice("fp8")
    assert spec.tie_word_embeddings
    assert not fp8_export_spec(spec, fp8, loads_lm_head=True).tie_word_embeddings     # transformers: its own lm_head
    assert fp8_export_spec(spec, fp8, loads_lm_head=False) is spec                   # vLLM / SGLang: tied
    assert fp8_export_spec(spec, quant_from_choice("none"), loads_lm_head=True) is spec
    # --engine hf holds V × H × 2 B more for the FP8 export of a tied model; vLLM holds none
    hf_tied = report("0.6b", engine="hf", quant=quant_from_choice("none"))
    hf_fp8 = report("0.6b", engine="hf", quant=fp8)
    untied = get_preset("0.6b").model_copy(update={"tie_word_embeddings": False})
    hf_untied = report_of_spec(untied, fp8)
    assert hf_fp8.ranks[0].model_loading_bytes == hf_untied.ranks[0].model_loading_bytes
    assert hf_tied.ranks[0].model_loading_bytes > 0
    v_fp8 = report("0.6b", "0.11.0", quant=fp8, max_model_len=4096)
    v_bf16 = report("0.6b", "0.11.0", max_model_len=4096)
    embed = 151_936 * 1024 * 2
    assert v_bf16.ranks[0].model_loading_bytes - v_fp8.ranks[0].model_loading_bytes < 2 * embed   # no second table


def report_of_spec(spec, quant):
    request = ServeRequest(spec, validate_layout(spec, Layout()), Workload(dtype="bf16", quant=quant),
                           Hardware("H100-SXM-80GB", H100, "9.0", None), choose("hf", {}))
    return engine_report(request, suggest_fix=False)


def test_calibrate_hf_fp8_rows_use_the_engines_rule(tmp_path):
    row = {"id": "t", "set": "held_out", "model": "Qwen/Qwen3-0.6B-FP8", "dtype": "fp8", "engine": "HF Transformers",
           "engine_version": "4.51.3", "gpu": "NVIDIA H20 96GB", "context": 2049, "source": "test",
           "measured": {"GPU Memory (MB) = peak torch.cuda.max_memory_allocated summed over GPUs": "1217 MB",
                        "input_length": "1", "generated_tokens": "2048", "batch_size": "1"}}
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(row) + "\n")
    (result,) = calibrate(path)
    plan = engine_report(ServeRequest(get_preset("0.6b"), validate_layout(get_preset("0.6b"), Layout()),
                                      Workload(dtype="bf16", quant=quant_from_choice("fp8")),
                                      Hardware("H20-96GB", int(95.59 * GiB), "9.0", None),
                                      choose("hf", {"prompt_tokens": 1, "generate_tokens": 2048, "batch": 1})),
                         suggest_fix=False)
    assert result.figures[0].predicted == plan.peak_allocated_bytes / MiB


# --------------------------------------------------------------------------------------- releases assumed
def test_a_report_without_a_release_says_which_it_assumed():
    rep = report("8b")
    assert rep.version == "0.33.0"
    assert any(n.startswith("release not given: 0.33.0, the newest read, assumed (vLLM 0.29–0.33 rules)")
               for n in rep.notes)
    assert not any(n.startswith("release not given") for n in report("8b", "0.20.0").notes)


def test_release_ranges_score_at_their_lowest_release():
    # one rule set inside the range: versioned
    r = parse_range(">=0.12,<0.14", "vllm")
    assert (r.version, r.spans, r.versioned) == ("0.12.0", ("vLLM 0.12–0.13 rules",), True)
    # 0.11.0 and 0.11.1 follow different rules: scored at 0.11.0, not a band's row
    r = parse_range(">=0.11,<0.12", "vllm")
    assert r.version == "0.11.0" and r.spans == ("vLLM 0.11.0 rules", "vLLM 0.11.1–0.11.x rules") and not r.versioned
    assert "spans 2 rule sets" in r.note("vLLM 0.11.0 rules")
    assert parse_range("==0.10.2", "vllm").spans == ("vLLM 0.10.2–0.10.x rules",)
    for bad, why in ((">0.11", "inclusive lower bound"), ("<0.12", "no lower bound"), (">=0.12,<0.11", "empty"),
                     (">=0.7", "oldest"), ("~0.11", "not one of")):
        with pytest.raises(ShardsimError, match=why):
            parse_range(bad, "vllm")
    # a release the log names wins over a range; neither: the newest rules, said so
    assert row_release_of({"engine": "vLLM", "release": ">=0.11,<0.12"}, "0.11.1").version == "0.11.1"
    assert row_release_of({"engine": "vLLM"}, None).note("vLLM 0.29–0.33 rules").startswith("release not logged")


def test_calibrate_scores_a_range_row_at_its_lowest(tmp_path):
    base = {"model": "Qwen/Qwen3-8B", "dtype": "bf16", "engine": "vLLM", "gpu": "NVIDIA A100-SXM4-40GB (40960MiB)",
            "context": 40960, "gpu_mem_util": 0.9, "source": "test",
            "measured": {"GPU KV cache size": "136,080 tokens"}}
    rows = [base | {"id": "a", "release": ">=0.12,<0.14"}, base | {"id": "b", "engine_version": "0.12.0"},
            base | {"id": "c", "release": ">=0.11,<0.12"}]
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    a, b, c = calibrate(path)
    assert a.figures[0].predicted == b.figures[0].predicted and a.versioned and b.versioned
    assert a.release == "0.12.0" and a.release_note.startswith("release >=0.12,<0.14: scored at its lowest, 0.12.0")
    assert c.release == "0.11.0" and not c.versioned
