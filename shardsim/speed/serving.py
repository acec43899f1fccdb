"""Serving figures of a workload in steady state: TTFT, TPOT, throughput, and the largest concurrency within targets.

The model, per data-parallel replica (replicas share the users evenly and do not interact):

**Closed loop of C users** (``vllm bench serve --max-concurrency C --request-rate inf``): each user sends a request
of I prompt tokens for O output tokens and sends the next as soon as it ends. The engine runs at most
N = min(C, the engine's request cap, the sequences of I + O tokens its KV cache holds) at once (the KV figure is the
memory plan's: ``engines`` report or ``core.planner``); the other C − N wait, and by Little's law (Little 1961,
Operations Research 9(3)) each request then spends C / λ in the system, λ = N / E2E being the completions per
second, so the wait C/λ − E2E is added to TTFT. A request lives n_p prefill steps and O − 1 decode steps (its first
token comes out of its last prefill step; TPOT = (E2E − TTFT)/(O − 1), the definition of ``vllm bench serve``,
``vllm/benchmarks/serve.py`` ``calculate_metrics``).

Arrivals. In a closed loop of equal requests (``--dataset-name random``: every prompt I tokens, every answer O) all
C prompts arrive at once at the start and are prefilled as the budget allows; the requests prefilled in one step
finish together O − 1 steps later and their users send the next ones together, so the steady state keeps the
first wave's *bursts*: prompts fill whole steps (the budget left after the decodes). Under a request rate arrivals
are random and *spread*: one prompt to a step at a time.

- *Mixed steps* (vLLM V1: each step schedules every running request's next token, then prompt chunks FIFO in the
  token budget B left, ``v1/core/sched/scheduler.py`` ``schedule``): with d decoding requests, of which
  d' = d·(N − 1)/N belong to the other requests (a request does not decode while its own prompt runs: one user
  alone has prompt-only steps), a prompt takes n_p = ⌈I / (B − d')⌉ steps, and B − d' stands for B − d below. A request lives L = max(n_p + O − 1, N(I + O − 1)/B) steps (the second term: the budget
  must carry every token, N(I + O − 1) per lifetime; when it binds, prompts wait for budget); then d = N(O − 1)/L.
  A lifetime's N·I prompt tokens ride in a fraction f of the steps: bursts fill min(B − d, N·I) tokens a step,
  f = max(1, N·I/(B − d))/L; spread arrivals take f = min(1, max(N·n_p/L, N·I/(L(B − d)))). A request's own n_p
  prompt steps come before its first token, so the steps after them carry prompts in the fraction
  f' = max(0, f·L − n_p)/(L − n_p) in a closed loop (one user alone: f' = 0, TPOT is the decode step); an open
  loop's arrivals are none of them the request's own, and a Poisson arrival sees the time average (PASTA, Wolff
  1982, Operations Research 30(2)): f' = f. TPOT = f'·t_mixed +
  (1 − f')·t_decode, TTFT = o_request + r + n_p·t_mixed + (L − O + 1 − n_p)·TPOT, so E2E = L steps of the
  lifetime's mix (and r). r: an open loop's arrival waits out the step in progress, the mean residual life
  E[T²]/(2·E[T]) = (f·t_mixed² + (1 − f)·t_decode²) / (2·(f·t_mixed + (1 − f)·t_decode)) (renewal theory, e.g.
  Kleinrock 1975, Queueing Systems I §5.2); a closed loop's request is sent when one ends, at a step's end: r = 0.
  d, n_p and L are solved by iteration.
- *Separate prefill batches* (SGLang by default: a prefill batch of waiting requests, up to the chunked prefill
  size B per step, runs between decode batches, and first whenever one can be formed — ``srt/managers/
  scheduler.py`` ``get_next_batch_to_run``, "Run prefill first if possible", through 0.5.15 at least; mixing is
  ``--enable-mixed-chunk``, off by default, ``srt/server_args.py``): bursts prefill a lifetime's N·I tokens in
  ⌈N·I/B⌉ full steps, back to back, before the wave decodes; its requests then decode together and, of equal
  lengths, end together and come back as the next wave. The k-th prompt of a wave ends in step ⌈k·I/B⌉: its
  request waits for those steps before its first token and sees the wave's other steps in its decode gaps
  (``wave_position``: on average (N + 1)/2 before and (N − 1)/2 after where prompts take a step each). Spread
  arrivals (N/(O − 1) per decode step) are batches of one prompt when at most one arrives per gap, else one batch
  per gap, the request's own batch before its first token. TPOT = t_decode + the lifetime's prefill steps after
  the request's first token over its O − 1 decode steps (an open loop's lifetime holds λ·E2E = N others'
  arrivals, so none is taken off); TTFT = o_request + the prefill steps up to its first token + half a decode
  step.

Step times t come from the caller (``estimate``: roofline, collectives, pipeline stages, per-step overhead). Decode
tokens attend I + O/2 keys on average, prompt tokens (I + 1)/2 (``work.prefill_keys_per_token``).

**Open loop at a request rate R** (``--request-rate R``): the concurrency C at which the closed loop completes R
requests per second (Little's law, C = R·E2E) with spread arrivals, found by bisection; Poisson arrivals queue more than this mean-field
figure says, so TTFT is a lower bound there. A rate above what N running requests complete is reported as
saturated (queues grow without bound).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Callable

from shardsim.speed.work import StepShape, prefill_keys_per_token

ITERATIONS = 40
"""Fixed-point iterations for d, n_p and L (each moves L monotonically; 40 is far past convergence)."""


@dataclass(frozen=True, slots=True)
class Scheduler:
    """How the engine batches: its step budget, its running-request cap, the sequences of I + O tokens its KV cache
    holds, and whether decodes and prompt chunks share a step."""

    budget: int
    max_seqs: int
    kv_seqs: int
    mixed: bool
    source: str = ""
    kv_seqs_whole: int | None = None  # the KV-bound count when every request holds its whole I + O (None: kv_seqs)
    pool: object = None  # vLLM: its block pool (``simulate.Pool``), which a run sent at once is stepped on
    graph_decode_max: int = 0  # the largest batch of decodes alone replayed as one CUDA graph, where ``pipeline``
    # drops the per-layer floor (``estimate``: vLLM's FULL graphs; 0: none)

    @property
    def limit(self) -> int:
        return min(self.max_seqs, self.kv_seqs)

    def whole(self) -> "Scheduler":
        """This scheduler for waves of equal requests, which reach I + O together (``estimate.held_tokens``)."""
        if self.kv_seqs_whole is None:
            return self
        return replace(self, kv_seqs=min(self.kv_seqs, self.kv_seqs_whole))


@dataclass(frozen=True, slots=True)
class Steady:
    """One replica in steady state (times in seconds)."""

    users: float  # concurrency asked (per replica)
    running: float  # requests the engine runs at once
    ttft: float
    tpot: float
    e2e: float
    rate: float  # completed requests per second
    wait: float  # queueing before the engine takes a request
    decode_batch: float
    prefill_steps: float  # n_p (mixed) or steps of the request's prefill batch
    mixed_fraction: float  # steps that carry prompt tokens
    prefill_per_step: float  # prompt tokens in such a step
    t_mixed: float
    t_decode: float
    lifetime_steps: float
    decode_shape: StepShape = StepShape()
    prefill_shape: StepShape = StepShape()
    after_fraction: float = 0.0  # of the steps after a request's own prompt, those carrying others' prompt tokens


StepCost = Callable[[StepShape], float]


def _mixed(n: float, inp: int, out: int, sched: Scheduler, cost: StepCost, overhead: float, burst: bool,
           open_loop: bool = False) -> Steady:
    budget, d = sched.budget, n * (out - 1) / max(out, 1)
    others = max(0.0, n - 1) / max(n, 1e-9)  # a prompt shares its steps with the other requests' decodes only
    for _ in range(ITERATIONS):
        room = max(1.0, budget - d * others)
        n_p = math.ceil(inp / room)
        life = max(n_p + out - 1, n * (inp + out - 1) / budget)
        d = n * (out - 1) / life
    room = max(1.0, budget - d * others)
    arrivals = n / life
    if burst:
        frac = min(1.0, max(1.0, n * inp / room) / life)
    else:
        frac = min(1.0, max(arrivals * n_p, arrivals * inp / room))
    per_step = arrivals * inp / frac
    keys = inp + out / 2
    mixed = StepShape(decode=d * others, decode_keys=keys, prefill=per_step, prefill_keys=prefill_keys_per_token(inp),
                      prefill_done=per_step / inp, prefill_kv_read=per_step * (n_p - 1) / 2)
    decode = StepShape(decode=d, decode_keys=keys)
    t_mix = cost(mixed)
    t_dec = cost(decode) if d > 0 else t_mix
    # after its own n_p prompt steps a closed loop's request sees the lifetime's other prompt-carrying steps:
    # f·L − n_p of L − n_p; an open loop's arrivals are all others' and see the time average f (PASTA)
    after = life - n_p
    if open_loop:
        frac_after = frac
    else:
        frac_after = min(1.0, max(0.0, frac * life - n_p) / after) if after > 0 else frac
    tpot = frac_after * t_mix + (1 - frac_after) * t_dec
    # an open loop's arrival lands inside a step and waits out what is left of it: E[T²] / (2 E[T]) over the steps'
    # mix (the mean residual life of a renewal process; PASTA: arrivals see the time average); a closed loop's user
    # sends the next request when one ends, at a step's end
    residual = (frac * t_mix ** 2 + (1 - frac) * t_dec ** 2) / (2 * (frac * t_mix + (1 - frac) * t_dec)) \
        if open_loop else 0.0
    ttft = overhead + residual + n_p * t_mix + (life - (out - 1) - n_p) * tpot
    e2e = ttft + (out - 1) * tpot
    return Steady(n, n, ttft, tpot if out > 1 else 0.0, e2e, n / e2e, 0.0, d, n_p, frac, per_step, t_mix, t_dec, life,
                  decode, mixed, frac_after)


def _separate(n: float, inp: int, out: int, sched: Scheduler, cost: StepCost, overhead: float, burst: bool,
              open_loop: bool = False) -> Steady:
    gaps = max(out - 1, 1)
    arrivals = n / gaps
    batches = 1 if burst else (n if arrivals <= 1 else gaps)
    tokens = n * inp / batches
    steps = math.ceil(tokens / sched.budget)
    per_step = tokens / steps
    prefill = StepShape(prefill=per_step, prefill_keys=prefill_keys_per_token(inp), prefill_done=per_step / inp,
                        prefill_kv_read=per_step * (math.ceil(inp / sched.budget) - 1) / 2)
    decode = StepShape(decode=n, decode_keys=inp + out / 2)
    t_pre = cost(prefill)
    t_dec = cost(decode) if out > 1 else 0.0
    own = wave_position(n, inp, sched.budget) if burst else steps
    # the decode gaps carry the lifetime's prefill steps but those up to the request's first token (a closed loop:
    # its place in the wave, or its own batch); an open loop's λ·E2E = n arrivals in a lifetime are all others'
    others = batches * steps if open_loop else max(0.0, batches * steps - own)
    tpot = t_dec + others * t_pre / gaps if out > 1 else 0.0
    ttft = overhead + own * t_pre + t_dec / 2
    e2e = ttft + (out - 1) * tpot
    frac = batches * steps / (batches * steps + gaps)
    return Steady(n, n, ttft, tpot, e2e, n / e2e, 0.0, n, own, frac, per_step, t_pre, t_dec, gaps + batches * steps,
                  decode, prefill, others / (gaps + others))


def floor_sum(n: int, m: int, a: int, b: int) -> int:
    """Σ_{i=0}^{n−1} ⌊(a·i + b)/m⌋ for n ≥ 0, m ≥ 1, a, b ≥ 0, in O(log) steps: the terms' whole parts taken out,
    then the sum counted by columns instead of rows, which swaps a and m as Euclid's algorithm does (Graham, Knuth,
    Patashnik, Concrete Mathematics, 2nd ed., §3.5, the sum of ⌊(mx + y)/n⌋)."""
    total = 0
    while n > 0:
        if a >= m:
            total += (n - 1) * n // 2 * (a // m)
            a %= m
        if b >= m:
            total += n * (b // m)
            b %= m
        top = a * n + b
        if top < m:
            break
        n, b, m, a = top // m, top % m, a, m
    return total


def wave_position(n: float, inp: int, budget: int) -> float:
    """The prefill steps a request of a wave waits for its first token, on average over the wave: ``n`` prompts of
    ``inp`` tokens prefilled back to back in steps of ``budget`` tokens (chunked: a prompt that crosses a step's end
    goes on in the next), the k-th (k = 1 … n) ending in step ⌈k·I/B⌉ = 1 + ⌊(k·I − 1)/B⌋."""
    count = max(1, round(n))
    return 1 + floor_sum(count, budget, inp, inp - 1) / count


def steady_state(users: float, inp: int, out: int, sched: Scheduler, cost: StepCost, overhead: float,
                 burst: bool = True, open_loop: bool = False) -> Steady:
    """One replica with ``users`` concurrent users (``overhead``: the per-request TTFT overhead, seconds; ``burst``:
    the closed loop's bursts, else spread arrivals; ``open_loop``: users is λ·E2E of a request rate, every
    request in a lifetime another's)."""
    n = min(users, sched.limit)
    run = (_mixed if sched.mixed else _separate)(n, inp, out, sched, cost, overhead, burst, open_loop)
    if users <= n:
        return run
    in_system = users / run.rate  # Little: every user's request spends users / λ in the system
    wait = in_system - run.e2e
    return replace(run, users=users, ttft=run.ttft + wait, e2e=in_system, wait=wait)


def at_rate(rate: float, inp: int, out: int, sched: Scheduler, cost: StepCost, overhead: float) -> tuple[Steady, bool]:
    """The steady state at ``rate`` requests per second (one replica): the concurrency whose closed loop completes
    that many (bisection), and whether the rate is beyond what the running cap completes (saturated)."""
    top = steady_state(sched.limit, inp, out, sched, cost, overhead, False, True)
    if rate >= top.rate:
        return top, True
    lo, hi = 0.0, float(sched.limit)
    for _ in range(60):
        mid = (lo + hi) / 2
        if mid > 0 and steady_state(mid, inp, out, sched, cost, overhead, False, True).rate < rate:
            lo = mid
        else:
            hi = mid
    return steady_state(max(hi, 1e-9), inp, out, sched, cost, overhead, False, True), False


def max_concurrency_at_slo(ttft_s: float | None, tpot_s: float | None, replicas: int, inp: int, out: int,
                           sched: Scheduler, cost: StepCost, overhead: float) -> int:
    """The largest number of users (all replicas together, shared evenly) whose TTFT and TPOT stay within the
    targets (None: no target), searched up to the engines' running caps; 0 when even one user misses."""

    def meets(users: int) -> bool:
        per = math.ceil(users / replicas)
        s = steady_state(per, inp, out, sched, cost, overhead)
        return (ttft_s is None or s.ttft <= ttft_s) and (tpot_s is None or s.tpot <= tpot_s)

    if not meets(1):
        return 0
    lo, hi = 1, replicas * sched.limit
    if meets(hi):
        return hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if meets(mid) else (lo, mid)
    return lo
