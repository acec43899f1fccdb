"""review by speed and cost (capacity/speed_rank.py): ranked by $ per million output tokens among the options that
meet the targets; an option that fits but misses one is held back, never ranked above one that meets them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from shardsim.capacity.records import ReviewRequest
from shardsim.capacity.review import review
from shardsim.capacity.speed_rank import HOURS_PER_MONTH
from shardsim.capacity.workload import ModelLoad, load_catalog
from shardsim.presets import get_preset

SHARDSIM = Path(sys.executable).parent / "shardsim"
CLUSTERS = ("h100-1x8", "h200-1x8", "a100-80gb-1x8", "l40s-1x4")


def run_review(model="32b", min_headroom=0.05, **load):
    spec = get_preset(model)
    request = ReviewRequest(((spec, ModelLoad(model=model, **load)),), tuple(load_catalog(CLUSTERS)), engine="vllm",
                            min_headroom=min_headroom)
    return review(request).models[0]


LOAD = dict(input_tokens=1024, output_tokens=256, concurrency=64)


def test_a_layout_that_misses_the_tpot_target_is_not_ranked_first():
    free = run_review(**LOAD)
    best = free.fitting[0]
    # without a target the cheapest per token leads; a target just under its TPOT holds it back
    assert best.speed.meets_targets and best.speed.missed is None
    target = best.speed.tpot_ms - 0.1
    held = run_review(**LOAD, tpot_ms=target)
    assert held.fitting[0] is not None and held.fitting[0].layout != best.layout or \
        held.fitting[0].cluster.gpu.name != best.cluster.gpu.name
    for o in held.fitting:
        assert o.speed.tpot_ms <= target
    back = [o for o in held.held_back if (o.cluster.gpu.name, o.layout) == (best.cluster.gpu.name, best.layout)]
    assert back and back[0].held_back.startswith("TPOT") and back[0].speed.tpot_ms > target
    # ranked by $ per million output tokens
    costs = [o.speed.usd_per_mtok for o in held.fitting]
    assert costs == sorted(costs)


def test_cost_per_token_and_per_month_from_the_figures():
    m = run_review(**LOAD)
    for o in m.fitting[:5]:
        s, gpus = o.speed, o.layout.world_size
        price = o.cluster.price_per_gpu_hour_usd or o.cluster.gpu.price_per_gpu_hour_usd
        # GPU-hours per million output tokens × $ per GPU-hour
        assert s.usd_per_mtok == pytest.approx(price * gpus / (s.output_tokens_per_s * 3600 / 1e6), rel=1e-9)
        assert s.usd_per_month == pytest.approx(price * gpus * HOURS_PER_MONTH)
        assert s.tokens_per_s_per_gpu == pytest.approx(s.output_tokens_per_s / gpus, rel=1e-9)
        assert (s.replicas, s.gpus_per_replica) == (o.layout.dp, o.layout.tp * o.layout.pp)


def test_minimum_headroom_holds_back_tight_options():
    loose = run_review(min_headroom=0.0, context=32768, concurrency=16)
    strict = run_review(min_headroom=0.30, context=32768, concurrency=16)
    tight = [o for o in loose.fitting if o.headroom_bytes < 0.30 * o.budget_bytes]
    assert tight   # some layouts fit with less than 30 % of vLLM's budget free
    assert all(o.headroom_bytes >= 0.30 * o.budget_bytes for o in strict.fitting)
    assert {(o.cluster.name, o.layout) for o in strict.held_back} >= {(o.cluster.name, o.layout) for o in tight}
    assert all("--min-headroom 30 %" in o.held_back for o in strict.held_back)


@pytest.mark.parametrize("fields, message", [
    (dict(input_tokens=1024), "together"), (dict(tpot_ms=50), "needs input_tokens"),
    (dict(input_tokens=1024, output_tokens=256, context=4096), r"not input_tokens \+ output_tokens"),
])
def test_load_refusals(fields, message):
    with pytest.raises(ValueError, match=message):
        ModelLoad(model="8b", **fields)


def test_cli_example_workload_ranks_by_cost_per_token():
    p = subprocess.run([str(SHARDSIM), "review", "--workload", "example", "--json"], capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    ranked = [o for o in doc["options"] if o["ranked"]]
    assert ranked and all(o["speed"]["meets_targets"] for o in ranked)
    for model in {o["model"] for o in ranked}:
        costs = [o["speed"]["usd_per_mtok"] for o in ranked if o["model"] == model]
        assert costs == sorted(costs)
    text = subprocess.run([str(SHARDSIM), "review", "--workload", "example"], capture_output=True, text=True,
                          timeout=120).stdout
    for header in ("TTFT", "TPOT", "tok/s/GPU", "$/Mtok", "GPUs"):
        assert header in text


def _speed_alone(option, load):
    """The option's figures as ``shardsim speed`` computes them: its own engine report, no memo."""
    from shardsim.capacity.speed_rank import option_speed

    return option_speed(option, option.variant.spec, load, "vllm", 0.9, None)


@pytest.mark.parametrize("users", [64, 600])
def test_review_figures_are_the_speed_commands(users):
    # 600 users on one L40S replica exceed vLLM's default max_num_seqs there (256; 1,024 on 80 GB cards): the
    # review raises it for its memory verdict, but the speed estimate keeps vLLM's defaults, as `shardsim speed`
    # does; otherwise the review's own report serves the estimate (the memo), which must change nothing
    load = ModelLoad(model="8b", input_tokens=1024, output_tokens=256, concurrency=users)
    m = run_review(model="8b", **{k: getattr(load, k) for k in ("input_tokens", "output_tokens", "concurrency")})
    single = [o for o in m.fitting if o.layout.dp == 1 and o.layout.ep <= o.layout.tp][:12]
    assert single
    raised = [o for o in single if not o.note.default_knobs]
    assert bool(raised) == (users == 600)
    for o in single:
        alone = _speed_alone(o, load)
        assert (alone.ttft_ms, alone.tpot_ms, alone.output_tokens_per_s) == \
            (o.speed.ttft_ms, o.speed.tpot_ms, o.speed.output_tokens_per_s)
