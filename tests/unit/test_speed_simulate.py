"""vLLM V1's scheduler stepped through small runs whose every step is worked out by hand (``speed.simulate``)."""

from __future__ import annotations

import pytest

from shardsim.speed.simulate import Pool, simulate

BIG = 10_000  # blocks: no run below comes near


def test_one_request_prefills_in_budget_chunks_then_decodes():
    # I = 1,000 in a budget of 512: ceil(1000/512) = 2 prompt steps, the first token out of the second;
    # then O − 1 = 9 decode steps
    trace = simulate(1, 1000, 10, Pool(512, 256, BIG, 16))
    assert len(trace.steps) == 11 and trace.preemptions == 0
    (f,) = trace.finished
    assert (f.first, f.finish) == (1, 10)


def test_the_budget_splits_prompts_and_decodes_go_first():
    # three prompts of 300, O = 2, budget 512:
    # step 0: A 300 + B 212 (a chunk);  step 1: A's decode 1 + B's last 88 + C 300 = 389 tokens, A ends;
    # step 2: B's and C's decodes, both end
    trace = simulate(3, 300, 2, Pool(512, 256, BIG, 16))
    firsts = sorted((f.first, f.finish, f.count) for f in trace.finished)
    assert firsts == [(0, 1, 1), (1, 2, 2)]
    shapes = [trace.shapes[k] for k in trace.steps]
    assert (shapes[0].prefill, shapes[0].prefill_done, shapes[0].prefill_kv_read) == (512, 1, 0)
    assert (shapes[1].decode, shapes[1].prefill, shapes[1].prefill_done) == (1, 388, 2)
    assert shapes[1].prefill_kv_read == 212  # B's chunk reads the 212 tokens of its first
    assert (shapes[2].decode, shapes[2].prefill) == (2, 0)
    # B's chunk of 88 attends 212 + (88 + 1)/2 keys a token, C's 300 tokens (300 + 1)/2
    assert shapes[1].prefill_keys == pytest.approx((88 * (212 + 89 / 2) + 300 * 301 / 2) / 388)


@pytest.mark.parametrize("caching, recompute", [(True, 17), (False, 33)])
def test_the_newest_is_preempted_and_recomputes_what_the_cache_lost(caching, recompute):
    # two requests of I = 16, O = 18 (33 tokens: 3 blocks of 16) in a pool of 4 blocks.
    # step 0: both prefilled (1 block each); step 1: token 17 needs a 2nd block each (pool empty);
    # step 17: A's token 33 needs a 3rd block: B, the newest, is preempted (its 2 blocks freed, queued first);
    #          A takes one of them and ends (18 tokens out), freeing 3;
    # step 18: B readmitted. Its blocks were freed last block first behind an empty queue: A took the last one,
    #          the first survives with prefix caching → 16 tokens cached, 33 − 16 = 17 recomputed; else all 33.
    trace = simulate(2, 16, 18, Pool(512, 256, 4, 16, 0, caching))
    assert trace.preemptions == 1
    ends = {(f.first, f.finish) for f in trace.finished}
    assert ends == {(0, 17), (0, 18)}
    last = trace.shapes[trace.steps[18]]
    assert (last.prefill, last.prefill_done, last.decode) == (recompute, 1, 0)
    assert len(trace.steps) == 19


def test_admission_stops_at_the_running_cap_and_waits_for_a_slot():
    # max_num_seqs 2, three requests of I = 10, O = 3: A and B run steps 0–2; C is admitted in step 3,
    # after both ended in step 2, and ends in step 5
    trace = simulate(3, 10, 3, Pool(512, 2, BIG, 16))
    assert sorted((f.first, f.finish, f.count) for f in trace.finished) == [(0, 2, 2), (3, 5, 1)]
    assert trace.max_running == 2 and len(trace.steps) == 6


def test_a_pool_that_holds_no_whole_request_is_not_stepped():
    assert simulate(1, 100, 100, Pool(512, 256, 12, 16)) is None  # 200 tokens: 13 blocks


def test_a_readmitted_request_does_not_hold_its_cache_hits_while_it_waits():
    # five requests of 40 + 200 tokens (15 blocks whole) in a pool of 40 blocks: the first wave of five is admitted
    # on its prompts' 3 blocks each and preempts as it grows; whatever the interleaving, every request ends, and the
    # blocks held by running requests and the free ones always make the pool (a waiting request holds none)
    from shardsim.speed.simulate import Cohort, _Run

    pool = Pool(512, 256, 40, 16)
    run, done, index = _Run(pool, 40, 200), 0, 0
    run.waiting.append(Cohort(5, 40))
    while done < 5:
        done += run.apply(run.step(index), index)
        assert run.free + sum(c.blocks * c.count for c in run.running) == pool.blocks
        assert all(c.blocks == 0 for c in run.waiting)
        index += 1
    assert run.trace.preemptions > 0


def test_speed_reports_the_preemptions_of_a_vllm_run_sent_at_once():
    # Qwen3-32B on one A100-80GB (GPUStack's row): 500 prompts of 4,000 tokens for 200 out, sent at once. The pool
    # holds a few whole requests of 4,200 tokens, but a chunk of 2,048 is admitted on its own 128 blocks, so more
    # run than it can finish: vLLM preempts
    from shardsim.speed import calibration as cal
    from shardsim.speed.estimate import SpeedRequest, SpeedWorkload, estimate

    row = next(r for r in cal.read_rows(cal.DATABASE) if r.id == "gpustack-q3-32b-a100-f")
    base = cal.speed_request_of(row)
    request = SpeedRequest(base.serve, SpeedWorkload(4000, 200, num_prompts=500))
    report = estimate(request)
    stepped = report.to_dict()["stepped"]
    assert stepped["preemptions"] > 0 and stepped["max_running"] > report.scheduler.kv_seqs
    assert any("preempts" in note for note in report.notes)
    # a client cap (a closed loop) is not stepped
    capped = estimate(SpeedRequest(base.serve, SpeedWorkload(4000, 200, concurrency=4, num_prompts=500)))
    assert capped.to_dict()["stepped"] is None
