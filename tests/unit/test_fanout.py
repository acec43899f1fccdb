"""``capacity.fanout``: pieces in forked workers, results in order, failures raised here; and a review of two
models fanned out equals the same review run in one process, to the byte of its JSON."""

from __future__ import annotations

import json
import os

import pytest

from shardsim.capacity import fanout
from shardsim.errors import ShardsimError

pytestmark = pytest.mark.skipif(fanout.workers(2) < 2, reason="no fork or one core: the pieces run in this process")


def _square_and_pid(i: int) -> tuple[int, int]:
    return i * i, os.getpid()


def test_results_come_back_in_order_from_other_processes():
    done = []
    out = fanout.fan_out(_square_and_pid, 5, done.append)
    assert [square for square, _ in out] == [0, 1, 4, 9, 16]
    assert {pid for _, pid in out} - {os.getpid()}  # computed elsewhere
    assert sorted(done) == [0, 1, 2, 3, 4]


def _fails_on_two(i: int) -> int:
    if i == 2:
        raise ShardsimError("piece 2 is bad input")
    return i


def test_a_pieces_error_is_raised_here():
    with pytest.raises(ShardsimError, match="piece 2 is bad input"):
        fanout.fan_out(_fails_on_two, 4)


def test_one_worker_runs_the_pieces_here(monkeypatch):
    monkeypatch.setenv(fanout.WORKERS_ENV, "1")
    assert {pid for _, pid in fanout.fan_out(_square_and_pid, 3)} == {os.getpid()}
    monkeypatch.setenv(fanout.WORKERS_ENV, "two")
    with pytest.raises(ShardsimError, match="SHARDSIM_WORKERS='two' is not a worker count"):
        fanout.workers(3)


def _dies(i: int) -> int:
    if i == 1 and os.getpid() != PARENT:
        os._exit(9)  # a worker killed mid-piece
    return i


PARENT = os.getpid()


def test_a_dead_worker_leaves_the_pieces_to_this_process():
    assert fanout.fan_out(_dies, 3) == [0, 1, 2]


def test_pieces_start_in_the_order_given_and_come_back_in_index_order():
    out = fanout.fan_out(_square_and_pid, 4, first=[3, 1, 0, 2])
    assert [square for square, _ in out] == [0, 1, 4, 9]
    with pytest.raises(ValueError, match="is not an order of the 4 pieces"):
        fanout.fan_out(_square_and_pid, 4, first=[0, 1, 1, 2])


def _unpicklable_on_one(i: int):
    if i == 1:
        return (os.getpid(), lambda: i)  # a local lambda cannot be pickled
    return (os.getpid(), i)


def test_a_result_that_cannot_be_pickled_is_computed_here():
    out = fanout.fan_out(_unpicklable_on_one, 3)
    assert out[1][0] == os.getpid() and out[1][1]() == 1
    assert out[0][1] == 0 and out[2][1] == 2


def test_a_memory_only_review_fanned_out_equals_one_run_here(monkeypatch):
    """Engine none (as ``review --model all``), a dense model, a MoE and a hybrid: the planners the workers send back
    travel whole (a hybrid's planner once held a local lambda and ``review --model all`` died pickling it)."""
    from shardsim.capacity.records import ReviewRequest
    from shardsim.capacity.review import review
    from shardsim.capacity.workload import ModelLoad, load_catalog
    from shardsim.presets import get_preset

    clusters = tuple(load_catalog(("h100-1x8.yaml",), None, None))
    names = ("0.6b", "30b-a3b", "next-80b-a3b")
    loads = tuple((get_preset(name), ModelLoad(model=name, context=8192, concurrency=4)) for name in names)
    request = ReviewRequest(loads, clusters, engine="none")
    fanned = json.dumps(review(request).to_dict(5, 2), sort_keys=True)
    monkeypatch.setenv(fanout.WORKERS_ENV, "1")
    assert fanned == json.dumps(review(request).to_dict(5, 2), sort_keys=True)


def test_a_review_fanned_out_equals_one_run_here(monkeypatch):
    """Two models over two clusters, vLLM: the shown options' figures are finished from the workers' copies (their
    evaluators keyed anew), so the JSON is the same byte for byte."""
    from shardsim.capacity.records import ReviewRequest
    from shardsim.capacity.review import review
    from shardsim.capacity.workload import ModelLoad, load_catalog
    from shardsim.presets import get_preset

    clusters = tuple(load_catalog(("h100-1x8.yaml", "a100-80gb-1x8.yaml"), None, None))
    loads = tuple((get_preset(name), ModelLoad(model=name, context=8192, concurrency=16)) for name in ("8b", "30b-a3b"))
    request = ReviewRequest(loads, clusters, engine="vllm")
    fanned = json.dumps(review(request).to_dict(5, 2), sort_keys=True)
    monkeypatch.setenv(fanout.WORKERS_ENV, "1")
    here = json.dumps(review(request).to_dict(5, 2), sort_keys=True)
    assert fanned == here


def test_a_review_keeping_what_it_shows_shows_the_same_and_no_more():
    """``keep=(top, misses)``: the shown options come back finished, the others without their engine reports; the
    JSON is the same as a review that kept everything, and asking it for more than it kept is refused."""
    from shardsim.capacity.records import ReviewRequest
    from shardsim.capacity.review import review
    from shardsim.capacity.workload import ModelLoad, load_catalog
    from shardsim.presets import get_preset

    clusters = tuple(load_catalog(("h100-1x8.yaml", "a100-80gb-1x8.yaml"), None, None))
    loads = tuple((get_preset(name), ModelLoad(model=name, context=8192, concurrency=16)) for name in ("8b", "30b-a3b"))
    request = ReviewRequest(loads, clusters, engine="vllm")
    kept = review(request, keep=(3, 2))
    assert json.dumps(kept.to_dict(3, 2), sort_keys=True) == json.dumps(review(request).to_dict(3, 2), sort_keys=True)
    m = kept.models[1]
    assert all(o.note is not None for o in m.shown(3, 2))
    assert len(m.fitting) > 3 and all(o.note is None for o in m.fitting[3:])
    with pytest.raises(ValueError, match="kept the details of its top 3 and 2 misses only"):
        kept.to_dict(4, 2)
