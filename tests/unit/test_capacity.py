"""Capacity review in-process: verdicts against the planner and the vLLM profile they rest on, cost ranking,
the layouts vLLM runs, workload-file errors."""

from __future__ import annotations

import math

import pytest

from shardsim.capacity.records import ReviewRequest
from shardsim.capacity.review import Review, review
from shardsim.capacity.workload import ModelLoad, load_catalog, load_workload
from shardsim.errors import ShardsimError
from shardsim.hardware import cluster_for_gpu, load_cluster
from shardsim.presets import get_preset


def one(model: str, engine: str = "vllm", clusters=None, **kw) -> Review:
    load = ModelLoad(model=model, **kw)
    return review(ReviewRequest(((get_preset(model), load),), tuple(clusters or load_catalog()), engine=engine))


# ---------------------------------------------------------------- reality: Qwen3-235B-A22B bf16 on H20 under vLLM
def test_235b_bf16_vllm_does_not_fit_4_h20_but_fits_8():
    four = one("235b", clusters=[cluster_for_gpu("h20", 4)]).models[0]
    assert four.evaluated > 0 and four.fitting == []
    assert all(o.layout.world_size <= 4 for o in four.misses)
    eight = one("235b", clusters=[load_cluster("h20-1x8")]).models[0]
    assert eight.fitting, "Qwen3-235B-A22B bf16 must fit 8 x H20-96GB under vLLM"
    assert all(o.layout.world_size > 4 for o in eight.fitting)
    tp8 = [o for o in eight.fitting if (o.layout.tp, o.layout.pp, o.layout.dp, o.layout.ep) == (8, 1, 1, 1)]
    assert tp8, "TP8 on one H20 node (the usual deployment) must fit"


# ---------------------------------------------------------------- verdicts agree with the planner and vLLM profile
def test_engine_none_option_is_the_plan_peak():
    from shardsim.core.plan import Workload, plan

    rv = one("32b", engine="none", clusters=[load_cluster("h100-1x8")], context=8192, concurrency=20)
    rv.finish(0, 5)
    m = rv.models[0]
    for o in m.fitting[:5] + m.misses[:3]:
        batch = math.ceil(20 / o.layout.dp)
        rep = plan(get_preset("32b"), o.layout, Workload(context=8192, batch=batch), o.cluster.gpu.capacity_bytes)
        assert rep.peak.bytes.total == o.peak_bytes
        assert rep.fits == o.fits
        assert o.headroom_bytes == rep.headroom_bytes
        assert o.max_concurrency == rep.max_batch * o.layout.dp  # largest batch per replica at this context
        assert o.max_concurrency >= 20 or not o.fits
    assert m.misses[0].reason.startswith(f"rank {m.misses[0].peak_rank} needs ")


def test_vllm_option_agrees_with_predict_vllm_on_the_full_layout():
    from shardsim.engines.vllm import VllmKnobs, predict_vllm

    spec = get_preset("30b-a3b")
    h100 = load_cluster("h100-1x8")
    rv = one("30b-a3b", clusters=[h100], context=16384, concurrency=48)
    rv.finish(0, 10)
    m = rv.models[0]
    checked = []
    for o in m.fitting + m.misses[:10]:
        lay = o.layout
        rep = predict_vllm(spec, lay, h100.gpu.capacity_bytes, h100.gpu.name, h100.gpu.compute_capability, "bf16",
                           spec.quant, VllmKnobs(max_model_len=16384))
        per_replica = math.ceil(48 / lay.dp)
        fits = rep.starts and rep.kv_cache_tokens >= per_replica * 16384
        assert fits == o.fits, (lay, rep.kv_cache_tokens, o.headroom_bytes)
        if rep.starts:
            assert o.kv_cache_tokens == rep.kv_cache_tokens
            assert o.max_concurrency == rep.kv_cache_tokens // 16384 * lay.dp
        checked.append(lay)
    assert m.fitting and m.misses
    assert any(lay.dp > 1 and lay.ep == 1 for lay in checked)  # predicted on one replica by the review
    assert any(lay.dp > 1 and lay.ep > 1 for lay in checked)   # experts spread over the replicas


def test_vllm_layouts_are_the_ones_vllm_runs():
    m = one("30b-a3b", clusters=[load_cluster("h100-1x8")]).models[0]
    for o in m.fitting + m.misses:
        assert o.layout.ep in (1, o.layout.tp * o.layout.dp)


def test_fp8_on_pre_ampere_is_refused_by_vllm():
    rv = one("8b", clusters=[load_cluster("t4-1x4")], quant="fp8")
    rv.finish(0, 1)
    m = rv.models[0]
    assert m.fitting == [] and m.evaluated > 0
    assert "compute capability" in m.misses[0].reason
    assert one("8b", clusters=[load_cluster("l40s-1x4")], quant="fp8").models[0].fitting  # sm_89: native FP8


# ---------------------------------------------------------------- cost
def test_cost_ordering_and_basis():
    rv = one("32b", clusters=load_catalog(), context=32768, concurrency=8)
    fit = rv.models[0].fitting
    assert len(fit) > 10
    costs = [o.cost for o in fit if o.cost is not None]
    assert costs == sorted(costs)
    for a, b in zip(fit, fit[1:]):
        if a.cost == b.cost:
            assert a.headroom_bytes >= b.headroom_bytes
    for o in fit[:20]:
        c = o.cluster
        assert o.cost == pytest.approx(c.purchase_price_usd / c.world_size * o.layout.world_size)
    hourly = review(ReviewRequest(((get_preset("32b"), ModelLoad(model="32b", context=32768, concurrency=8)),),
                                  tuple(load_catalog()), engine="vllm", by="hourly")).models[0].fitting
    for o in hourly[:20]:
        assert o.cost == pytest.approx(o.cluster.price_per_hour_usd / o.cluster.world_size * o.layout.world_size)
    assert [o.cost for o in hourly] == sorted(o.cost for o in hourly)


def test_same_layout_on_bigger_clusters_of_the_same_gpu_is_one_option():
    m = one("8b", engine="none").models[0]
    opt = next(o for o in m.fitting if o.cluster.name == "h100-1x8" and o.layout.world_size == 1)
    assert {"h100-2x8", "h100-4x8"} <= set(opt.also_on)
    assert not any(o.cluster.name in ("h100-2x8", "h100-4x8") and o.layout.world_size == 1 for o in m.fitting)


def test_more_concurrency_never_fits_more():
    lo = {(o.cluster.name, o.layout) for o in one("14b", context=8192, concurrency=4).models[0].fitting}
    hi = {(o.cluster.name, o.layout) for o in one("14b", context=8192, concurrency=64).models[0].fitting}
    assert hi and hi <= lo


@pytest.mark.parametrize("text, line, field, words", [
    ("models:\n  - model: 32b\n    concurrency: many\n", 3, "concurrency", "valid integer"),
    ("models:\n  - model: 32b\n  - model: 8b\n    quant: fp4\n", 4, "quant", "not known"),
    ("engine: vlm\nmodels:\n  - model: 32b\n", 1, "engine", "'none' or 'vllm'"),
    ("models:\n  - model: 33b\n", 2, "model", "unknown model"),
    ("modls:\n  - model: 32b\n", 1, "modls", "Extra inputs"),
    ("models:\n  - model: 32b\n    context: 0\n", 3, "context", "greater than or equal to 1"),
])
def test_workload_file_errors(tmp_path, text, line, field, words):
    path = tmp_path / "w.yaml"
    path.write_text(text)
    with pytest.raises(ShardsimError) as err:
        load_workload(path)
    msg = str(err.value)
    assert f"line {line}" in msg and f"field '{field}'" in msg and words in msg and "w.yaml" in msg


def test_vllm_refuses_a_context_beyond_the_model_window():
    rv = one("8b", clusters=[load_cluster("h200-1x8")], context=65536)
    rv.finish(0, 1)
    m = rv.models[0]
    assert m.fitting == [] and "max_model_len (65536)" in m.misses[0].reason
    assert one("8b", engine="none", clusters=[load_cluster("h200-1x8")], context=40960).models[0].fitting
