"""N requests sent at once (``vllm bench serve --request-rate inf`` without ``--max-concurrency``; an offline
batch): the figures of the median request and the batch's throughput.

The engine admits M = min(N, its running cap) requests; the first wave's prompts are prefilled FIFO, a step at a
time, the rest of the N wait for free slots.

- *Mixed steps* (vLLM V1): each step carries the running decodes and B − d̄ prompt tokens, d̄ the decode batch of
  the wave's prefill phase (half the wave, or fewer when requests finish before it ends: d̄ = M·min(1, (O − 1)/W₀)/2,
  W₀ = M·I/B). The phase lasts W = M·I/(B − d̄) steps of t_W; the j-th request's first token comes after
  max(1, j·I/(B − d̄)) of them, and its decode tokens are W − j·I/(B − d̄) mixed steps, then decode steps of the
  full wave (t_decode at d = M).
- *Separate prefill batches* (SGLang: waiting prompts are prefilled first, decodes pause): W = M·I/B prefill
  steps of t_W; the j-th request's first token after max(1, j·I/B) of them, then it waits the rest of the phase and
  decodes O − 1 steps.

The wave lasts W·t_W + (O − 1)·t_decode. When N > M the remaining N − M are admitted as slots free up, at the
closed loop's rate λ_M (``serving.steady_state`` with M users, in waves where the requests are of equal lengths,
spread where they vary): the batch takes (N − M)/λ_M longer, and a request beyond the first wave is admitted
(j − M)/λ_M after the wave's first completion (its first request's lifetime), then runs as the steady state's
requests do. The figures are the median request's (j = N/2), as ``vllm bench serve`` reports
medians; throughput is N·O over the batch's duration.
"""

from __future__ import annotations

from dataclasses import replace

from shardsim.speed.serving import Scheduler, Steady, StepCost, steady_state
from shardsim.speed.work import StepShape, prefill_keys_per_token


def _wave(m: float, inp: int, out: int, sched: Scheduler, cost: StepCost) -> tuple[float, float, float, float]:
    """(W, t_W, t_decode, prompt tokens a step) of a wave of ``m`` requests arriving together."""
    budget = sched.budget
    first = m * inp / budget
    d_bar = m * min(1.0, (out - 1) / first) / 2 if sched.mixed and first > 0 else 0.0
    per_step = max(1.0, min(budget - d_bar, m * inp))
    steps = m * inp / per_step
    t_w = cost(StepShape(decode=d_bar, decode_keys=inp + out / 2, prefill=per_step,
                         prefill_keys=prefill_keys_per_token(inp), prefill_done=per_step / inp))
    t_dec = cost(StepShape(decode=m, decode_keys=inp + out / 2)) if out > 1 else 0.0
    return steps, t_w, t_dec, per_step


def batch(n: float, inp: int, out: int, sched: Scheduler, cost: StepCost, overhead: float,
          burst: bool = True) -> Steady:
    """The median request of ``n`` sent at once to one replica (formulas in the module docstring; ``burst``: requests
    of equal lengths, whose later waves stay together)."""
    m = min(n, sched.limit)
    steps, t_w, t_dec, per_step = _wave(m, inp, out, sched, cost)
    wave_time = steps * t_w + (out - 1) * t_dec
    j = min(n / 2, m)
    position = max(1.0, j * inp / per_step)
    ttft = overhead + position * t_w
    if sched.mixed:  # its decode tokens ride the rest of the prefill phase, then decode steps
        during = max(0.0, min(out - 1, steps - position))
        tpot = (during * t_w + (out - 1 - during) * t_dec) / (out - 1) if out > 1 else 0.0
        after = during / (out - 1) if out > 1 else 0.0
        first_done = t_w * (1 + min(out - 1, steps - 1)) + max(0.0, out - steps) * t_dec
    else:  # it waits for the rest of the prefill phase, then decodes
        tpot = ((steps - position) * t_w + (out - 1) * t_dec) / (out - 1) if out > 1 else 0.0
        after = (steps - position) / (steps - position + out - 1) if steps - position + out > 1 else 0.0
        first_done = wave_time
    if n <= m:
        return Steady(n, m, ttft, tpot, ttft + (out - 1) * tpot, n / wave_time, 0.0, m, position,
                      steps / (steps + out - 1), per_step, t_w, t_dec, steps + out - 1, after_fraction=after)
    run = steady_state(m, inp, out, sched, cost, overhead, burst)
    duration = wave_time + (n - m) / run.rate
    if n / 2 > m:  # admitted at the (j − M)-th completion, then served as the steady state's requests
        ttft, tpot = first_done + (n / 2 - m) / run.rate + run.ttft, run.tpot
    return replace(run, users=n, ttft=ttft, tpot=tpot, e2e=ttft + (out - 1) * tpot, rate=n / duration,
                   wait=max(0.0, ttft - run.ttft))
