"""The steady-state serving model (``shardsim.speed.serving``) with step costs written by hand, so every figure can
be derived on paper: a step costs 10 ms plus 1 µs per token it carries."""

from __future__ import annotations

import pytest

from shardsim.speed.serving import (
    Scheduler,
    at_rate,
    floor_sum,
    max_concurrency_at_slo,
    steady_state,
    wave_position,
)

BASE, PER_TOKEN, OVERHEAD = 0.010, 1e-6, 0.020


def cost(shape) -> float:
    return BASE + PER_TOKEN * shape.tokens


VLLM = Scheduler(budget=8192, max_seqs=1024, kv_seqs=300, mixed=True)
SGLANG = Scheduler(budget=8192, max_seqs=1024, kv_seqs=300, mixed=False)


def test_one_user_mixed_steps():
    """C = 1, I = 1024, O = 256: the prompt fits one step (n_p = 1), a request lives L = 1 + 255 = 256 steps, the
    decode batch is d = 255/256 and one step in 256 carries the 1,024 prompt tokens — alone: the only decode is
    the request's own, which waits for its prompt. t_mixed = 10 ms + 1024 µs, t_decode = 10 ms + 255/256 µs.
    The one prompt step is the request's own and comes before its first token: of the 255 steps after it none
    carries a prompt, so TPOT = t_decode; TTFT = 20 ms + t_mixed, E2E = TTFT + 255·t_decode (the 256 steps)."""
    s = steady_state(1, 1024, 256, VLLM, cost, OVERHEAD)
    d = 255 / 256
    t_mixed, t_decode = BASE + PER_TOKEN * 1024, BASE + PER_TOKEN * d
    assert s.decode_batch == pytest.approx(d)
    assert (s.prefill_steps, s.lifetime_steps, s.mixed_fraction) == (1, 256, pytest.approx(1 / 256))
    assert s.after_fraction == 0.0
    assert s.tpot == pytest.approx(t_decode, rel=1e-12)
    assert s.ttft == pytest.approx(OVERHEAD + t_mixed, rel=1e-12)
    assert s.e2e == pytest.approx(OVERHEAD + t_mixed + 255 * t_decode, rel=1e-12)
    assert s.rate == pytest.approx(1 / s.e2e)


def test_budget_binds_and_prompts_wait():
    """100 users of I = 8,000, O = 2 under an 8,192-token budget: every lifetime must carry 100 × 8,001 tokens,
    so L = 100 · 8,001 / 8,192 = 97.668… steps (more than n_p + O − 1), d = 100/L, d' = d · 99/100 of them the
    other users'; prompt tokens ride almost every step, f = (100 · 8,000 / (8,192 − d')) / L, and a request waits
    L − 1 − n_p steps for budget before its own."""
    s = steady_state(100, 8000, 2, VLLM, cost, OVERHEAD)
    life = 100 * 8001 / 8192
    assert s.lifetime_steps == pytest.approx(life)
    assert s.decode_batch == pytest.approx(100 / life)
    assert s.mixed_fraction == pytest.approx(100 * 8000 / (8192 - 100 / life * 99 / 100) / life, rel=1e-12)
    assert s.prefill_steps == 1  # 8,000 ≤ 8,192 − d
    assert s.ttft == pytest.approx(OVERHEAD + s.t_mixed + (life - 1 - 1) * s.tpot)


def test_users_beyond_the_cap_queue_by_littles_law():
    """600 users, 300 run (the KV cache's limit): λ = 300 / E2E₃₀₀, each request spends 600/λ in the system, the
    difference waits before the engine takes it."""
    run = steady_state(300, 1024, 256, VLLM, cost, OVERHEAD)
    s = steady_state(600, 1024, 256, VLLM, cost, OVERHEAD)
    assert s.running == 300 and s.rate == pytest.approx(run.rate)
    assert s.e2e == pytest.approx(600 / run.rate)
    assert s.wait == pytest.approx(600 / run.rate - run.e2e)
    assert s.ttft == pytest.approx(run.ttft + s.wait)
    assert s.tpot == pytest.approx(run.tpot)


def test_separate_prefill_batches():
    """SGLang's default, 10 users, I = 1,024, O = 256. Bursts: the 10 prompts (10,240 tokens) in ⌈10,240/8,192⌉ = 2
    steps of 5,120 tokens, t_pre = 10 ms + 5,120 µs, t_decode = 10 ms + 10 µs; the k-th prompt ends in step
    ⌈1,024·k/8,192⌉: prompts 1–8 in the first, 9 and 10 in the second, so a request waits (8·1 + 2·2)/10 = 1.2
    prefill steps for its first token and sees the other 2 − 1.2 = 0.8 in its decode gaps: TPOT = t_decode +
    0.8·t_pre/255, TTFT = 20 ms + 1.2·t_pre + t_decode/2 (E2E as if every prefill step fell in the gaps: the wave's
    steps are all in each lifetime). Spread (10/255 arrivals per decode step, < 1): each prompt its own one-step
    batch, t_pre = 10 ms + 1,024 µs, and the other 9 fall in a request's gaps: TPOT = t_decode + 9·t_pre/255."""
    s = steady_state(10, 1024, 256, SGLANG, cost, OVERHEAD)
    t_pre, t_dec = BASE + PER_TOKEN * 5120, BASE + PER_TOKEN * 10
    assert s.prefill_steps == pytest.approx(1.2)
    assert s.tpot == pytest.approx(t_dec + 0.8 * t_pre / 255)
    assert s.ttft == pytest.approx(OVERHEAD + 1.2 * t_pre + t_dec / 2)
    assert s.e2e == pytest.approx(OVERHEAD + t_dec / 2 + 2 * t_pre + 255 * t_dec)
    s = steady_state(10, 1024, 256, SGLANG, cost, OVERHEAD, burst=False)
    t_pre = BASE + PER_TOKEN * 1024
    assert s.tpot == pytest.approx(t_dec + 9 * t_pre / 255)
    assert s.ttft == pytest.approx(OVERHEAD + t_pre + t_dec / 2)


def test_a_wave_of_whole_step_prompts_splits_its_prefills_between_ttft_and_tpot():
    """39 users of I = 8,192 under an 8,192-token chunk (a saturated SGLang card): the wave's 39 prompts run one a
    step, back to back, before any decode; the k-th request's first token comes after k of them and the other
    39 − k fall in its decode gaps — on average (39 + 1)/2 = 20 before and 19 after: TPOT = t_decode + 19·t_pre/1,023,
    TTFT = 20 ms + 20·t_pre + t_decode/2. By Little's law the requests decoding at a time are then
    λ·(O − 1)·TPOT = 39·(1,023·t_decode + 19·t_pre)/E2E, fewer than the 39 running (37.6 here, where a
    prefill step costs less than two decode steps)."""
    s = steady_state(39, 8192, 1024, SGLANG, cost, OVERHEAD)
    t_pre, t_dec = BASE + PER_TOKEN * 8192, BASE + PER_TOKEN * 39
    assert s.prefill_steps == 20
    assert s.tpot == pytest.approx(t_dec + 19 * t_pre / 1023)
    assert s.ttft == pytest.approx(OVERHEAD + 20 * t_pre + t_dec / 2)
    decoding = s.rate * 1023 * s.tpot
    assert decoding == pytest.approx(39 * (1023 * t_dec + 19 * t_pre) / (OVERHEAD + t_dec / 2 + 39 * t_pre
                                                                         + 1023 * t_dec))
    assert decoding < 38


@pytest.mark.parametrize("n, inp, budget, expected", [
    (39, 8192, 8192, 20.0),  # one prompt a step: (1 + … + 39)/39
    (4, 4096, 8192, 1.5),  # two a step: steps 1, 1, 2, 2
    (3, 10000, 8192, 3.0),  # chunked across steps: ⌈10,000/8,192⌉, ⌈20,000/8,192⌉, ⌈30,000/8,192⌉ = 2, 3, 4
    (1, 100, 8192, 1.0),
])
def test_wave_position_by_hand(n, inp, budget, expected):
    assert wave_position(n, inp, budget) == pytest.approx(expected)


def test_floor_sum_equals_the_sum_it_stands_for():
    """Σ ⌊(a·i + b)/m⌋ over i < n, against the plain sum on a grid of small values (zeros and a ≥ m, b ≥ m too)."""
    for n in range(0, 13):
        for m in (1, 2, 7, 16):
            for a in (0, 1, 5, 16, 33):
                for b in (0, 3, 15, 40):
                    assert floor_sum(n, m, a, b) == sum((a * i + b) // m for i in range(n)), (n, m, a, b)


def test_an_open_loop_counts_every_prompt_of_a_lifetime_as_anothers():
    """At a request rate the N = λ·E2E requests arriving in a lifetime are all others' (the request itself arrived
    before): SGLang, N spread arrivals each a one-step batch, TPOT = t_decode + N·t_pre/255 — never below the decode
    step, also below one user (N = 0.4: a closed loop of 0.4 users would take off a whole own step); vLLM's mixed
    steps carry prompts in the time-average fraction f (PASTA), TPOT = f·t_mixed + (1 − f)·t_decode."""
    for n in (0.4, 10):
        s = steady_state(n, 1024, 256, SGLANG, cost, OVERHEAD, burst=False, open_loop=True)
        t_pre, t_dec = BASE + PER_TOKEN * 1024, BASE + PER_TOKEN * n
        assert s.tpot == pytest.approx(t_dec + n * t_pre / 255)
        closed = steady_state(n, 1024, 256, SGLANG, cost, OVERHEAD, burst=False)
        assert closed.tpot == pytest.approx(t_dec + max(0.0, n - 1) * t_pre / 255) and closed.tpot >= t_dec
    s = steady_state(10, 1024, 256, VLLM, cost, OVERHEAD, burst=False, open_loop=True)
    assert s.after_fraction == s.mixed_fraction == pytest.approx(10 / 256)
    assert s.tpot == pytest.approx(s.mixed_fraction * s.t_mixed + (1 - s.mixed_fraction) * s.t_decode)
    low, _ = at_rate(0.05, 20_000, 2, SGLANG, cost, OVERHEAD)
    assert low.tpot >= low.t_decode > 0


def test_an_open_loop_arrival_waits_out_the_step_in_progress():
    """vLLM, 10 users' worth of spread arrivals, I = 1,024, O = 256: n_p = 1, a lifetime of 256 steps, 10 prompts in
    it, one a step, so f = 10/256 of the steps carry 1,024 prompt tokens beside d' = 10·255/256·9/10 decodes and
    the others d = 10·255/256 decodes. A Poisson arrival lands in a step with probability proportional to its length
    and waits out half of it on average: r = (f·t_m² + (1 − f)·t_d²) / (2·(f·t_m + (1 − f)·t_d)); a closed loop's
    request, sent when another ends, waits for none (its TTFT lacks r and its after-prompt mix differs)."""
    f, d = 10 / 256, 10 * 255 / 256
    t_m, t_d = BASE + PER_TOKEN * (1024 + d * 9 / 10), BASE + PER_TOKEN * d
    r = (f * t_m ** 2 + (1 - f) * t_d ** 2) / (2 * (f * t_m + (1 - f) * t_d))
    s = steady_state(10, 1024, 256, VLLM, cost, OVERHEAD, burst=False, open_loop=True)
    assert (s.t_mixed, s.t_decode, s.mixed_fraction) == (pytest.approx(t_m), pytest.approx(t_d), pytest.approx(f))
    tpot = f * t_m + (1 - f) * t_d
    assert s.ttft == pytest.approx(OVERHEAD + r + t_m + (256 - 255 - 1) * tpot, rel=1e-12)
    assert s.e2e == pytest.approx(s.ttft + 255 * tpot, rel=1e-12)
    assert 0.005 < r < 0.0052  # about half a 10 ms step: prompt steps are few and only 10 % longer


def test_bursts_fill_the_budget_spread_arrivals_do_not():
    """64 users, I = 1,024: d = 63.75, d' = 63.75 · 63/64 = 62.75390625 of them the other users'; bursts carry
    8,192 − d' = 8,129.24609375 prompt tokens in 65,536 / 8,129.24609375 of the 256 steps; spread arrivals one
    prompt in each of 64 steps."""
    burst = steady_state(64, 1024, 256, VLLM, cost, OVERHEAD)
    spread = steady_state(64, 1024, 256, VLLM, cost, OVERHEAD, burst=False)
    room = 8192 - 63.75 * 63 / 64
    assert burst.prefill_per_step == pytest.approx(room) and burst.mixed_fraction == pytest.approx(65536 / room / 256)
    assert spread.prefill_per_step == pytest.approx(1024) and spread.mixed_fraction == pytest.approx(64 / 256)
    assert burst.ttft > spread.ttft


def test_request_rate_is_the_closed_loop_at_littles_concurrency():
    s, saturated = at_rate(5.0, 1024, 256, VLLM, cost, OVERHEAD)
    assert not saturated
    assert s.rate == pytest.approx(5.0, rel=1e-6)
    assert s.users == pytest.approx(5.0 * s.e2e, rel=1e-6)  # C = λ · E2E
    top = steady_state(300, 1024, 256, VLLM, cost, OVERHEAD).rate
    s, saturated = at_rate(top * 1.5, 1024, 256, VLLM, cost, OVERHEAD)
    assert saturated and s.running == 300


def test_largest_concurrency_within_targets():
    """TPOT grows with the decode batch; the search returns the last count that meets it (checked both sides)."""
    target = 0.0105
    best = max_concurrency_at_slo(None, target, 1, 1024, 256, VLLM, cost, OVERHEAD)
    assert steady_state(best, 1024, 256, VLLM, cost, OVERHEAD).tpot <= target
    assert steady_state(best + 1, 1024, 256, VLLM, cost, OVERHEAD).tpot > target
    assert max_concurrency_at_slo(None, 0.001, 1, 1024, 256, VLLM, cost, OVERHEAD) == 0
    assert max_concurrency_at_slo(10.0, None, 2, 1024, 256, VLLM, cost, OVERHEAD) == 600  # every running slot


def test_a_batch_sent_at_once():
    """10 requests at once (I = 1,024, O = 256): W₀ = 10,240/8,192 = 1.25 steps, so the prefill phase decodes
    d̄ = 10/2 = 5 and carries 8,192 − 5 = 8,187 prompt tokens a step for W = 10,240/8,187 steps. The median request
    (j = 5) is in the first step: TTFT = 20 ms + t_W, t_W = 10 ms + (5 + 8,187) µs; its decode rides the rest of
    the phase, W − 1 steps of t_W, then decode steps of all 10 (10 ms + 10 µs); the batch lasts W·t_W + 255·t_decode."""
    from shardsim.speed.batch import batch

    s = batch(10, 1024, 256, VLLM, cost, OVERHEAD)
    steps = 10240 / 8187
    t_w, t_dec = BASE + PER_TOKEN * (5 + 8187), BASE + PER_TOKEN * 10
    assert s.ttft == pytest.approx(OVERHEAD + t_w)
    during = steps - 1
    assert s.tpot == pytest.approx((during * t_w + (255 - during) * t_dec) / 255)
    assert s.rate == pytest.approx(10 / (steps * t_w + 255 * t_dec))


def test_a_batch_beyond_the_cap_waits_for_slots():
    """1,000 at once, 300 run: the median request (j = 500) is admitted at the 200th completion after the wave's
    first one, at the closed loop's rate λ₃₀₀, then served as its requests are."""
    from shardsim.speed.batch import batch

    s = batch(1000, 1024, 256, VLLM, cost, OVERHEAD)
    run = steady_state(300, 1024, 256, VLLM, cost, OVERHEAD)
    assert s.tpot == pytest.approx(run.tpot)
    assert s.ttft > run.ttft + 200 / run.rate
    assert s.rate < run.rate


def test_a_wave_of_equal_requests_needs_whole_requests_of_kv():
    """A cache of 300 spread requests (I + O/2 each) but 250 whole ones (I + O): waves of equal requests reach
    I + O together, so ``whole`` runs 250; without a whole count it keeps its own."""
    sched = Scheduler(budget=8192, max_seqs=1024, kv_seqs=300, mixed=True, kv_seqs_whole=250)
    assert sched.whole().limit == 250 and sched.limit == 300
    assert VLLM.whole() is VLLM
