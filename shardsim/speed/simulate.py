"""vLLM V1's scheduler stepped through one run of equal requests sent at once: which tokens each step carries, when
each request gets its first token and its last, and which requests are preempted and recomputed.

Why: ``vllm bench serve --request-rate inf`` (or an offline batch) sends all N prompts at once. V1 admits a waiting
request when the blocks of its *next chunk* are free, not those of its whole answer, so the first wave can hold
more requests than the cache can finish; when a running request's next token needs a block and none is free, the
newest running request is preempted: its blocks are freed, it goes back to the head of the queue, and when
readmitted it recomputes what the prefix cache lost. The closed forms of ``serving`` and ``batch``, whose figures
``speed`` prints, have no preemption; ``estimate`` steps the run to say whether, and how often, it happens. The
trace depends on no time, only on the pool, the limits and the lengths.

The rules, from V1's ``vllm/v1/core/sched/scheduler.py`` ``Scheduler.schedule`` (the running loop's
``self.running.pop()`` under FCFS, ``num_computed_tokens = 0``, ``waiting.prepend_request``; waiting requests only
``if not preempted_reqs``) and ``vllm/v1/core/kv_cache_manager.py`` ``allocate_slots`` / ``get_computed_blocks``,
as public copies of the v0.10–v0.11 files read:

- A step has a budget of B tokens (``max_num_batched_tokens``). Running requests come first, in the order they
  were admitted: each takes its next tokens (1 when decoding; what is left of its prompt, or of a recompute, up to
  the budget left). Its blocks must cover its computed tokens plus the new ones; when the pool has too few free
  blocks the last running request is preempted (``self.running.pop()``, FCFS policy), until the allocation
  succeeds or the request preempted is the one allocating.
- Only in a step that preempted nothing, waiting requests are then admitted in queue order while the budget
  lasts and fewer than ``max_num_seqs`` run: each takes up to the budget left of its tokens still to compute (a
  preempted request: its prompt and its output so far); the queue stops at the first whose blocks cannot be had.
- A request whose computed tokens reach its length samples one token; at O tokens it finishes and frees its
  blocks. A hybrid model's request also takes its state groups' blocks at its first allocation.
- With prefix caching (V1's default for attention-only models) a preempted request's full blocks stay hashed in
  the free queue until evicted, front first; readmitted, it recomputes only what was evicted (``_Run.preempt``).

Not modelled: speculative decoding, prompts that share prefixes, and lengths that vary (``estimate`` steps only
runs of equal requests). Equal requests admitted in one step stay alike, so the state is kept as
*cohorts* (a count of identical requests), split when the budget or the pool separates them: a run of 1,000
requests takes thousands of steps but only tens of cohorts a step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from shardsim.speed.work import StepShape

MAX_STEPS = 200_000
"""A run longer than this many steps is not stepped (None): no more than about a second of work."""
MAX_VISITS = 600_000
"""... nor one whose steps visit more cohorts than this in all (about a second: runs whose chunked prompts leave
every request a cohort of its own)."""


@dataclass(slots=True)
class Cohort:
    """``count`` requests in the same state: ``length`` tokens known (prompt + output so far), ``computed`` of them
    in the cache, ``blocks`` held each, ``generated`` output tokens; the step of its first token."""

    count: int
    length: int
    computed: int = 0
    blocks: int = 0
    generated: int = 0
    first: int = -1
    cached: int = 0  # a preempted request: full blocks it left in the prefix cache
    evicted_after: int = 0  # ... which survive until this many more blocks are taken from the free queue

    def split(self, count: int) -> "Cohort":
        """Take ``count`` requests out of this cohort into a new one (same state)."""
        self.count -= count
        return Cohort(count, self.length, self.computed, self.blocks, self.generated, self.first,
                      self.cached, self.evicted_after)


@dataclass(frozen=True, slots=True)
class Pool:
    """The engine's limits: token budget, running cap, free blocks, tokens a block, blocks a request adds once."""

    budget: int
    max_seqs: int
    blocks: int
    block_tokens: int
    request_blocks: int = 0
    prefix_caching: bool = True


@dataclass(frozen=True, slots=True)
class Finished:
    count: int
    first: int
    finish: int


@dataclass
class Trace:
    """What a run did: each step's shape (as an index into ``shapes``, shapes shared by steps alike within
    ``SHAPE_BUCKET``), the finished cohorts, and how many requests were preempted in all."""

    steps: list[int] = field(default_factory=list)
    shapes: list[StepShape] = field(default_factory=list)
    finished: list[Finished] = field(default_factory=list)
    preemptions: int = 0
    max_running: int = 0


SHAPE_BUCKET = 0.05
"""Steps whose decode count, prompt tokens and keys each agree within 5 % (log buckets) share one shape record, the
mean of theirs, so a trace of thousands of steps stays small."""


def _bucket(x: float) -> int:
    return -1 if x <= 0 else int(math.floor(math.log(x) / math.log1p(SHAPE_BUCKET)))


class _Run:
    def __init__(self, pool: Pool, inp: int, out: int):
        self.pool, self.inp, self.out = pool, inp, out
        self.free = pool.blocks
        self.taken = 0  # blocks taken from the free queue so far (its front is evicted first)
        self.running: list[Cohort] = []
        self.waiting: list[Cohort] = []
        self.trace = Trace()
        self._acc: dict[tuple, list] = {}

    def blocks_for(self, c: Cohort, tokens: int) -> int:
        need = -(-tokens // self.pool.block_tokens) + (self.pool.request_blocks if c.blocks == 0 else 0)
        return max(0, need - c.blocks)

    def take(self, blocks: int) -> None:
        self.free -= blocks
        self.taken += blocks

    def preempt(self, one: Cohort) -> None:
        """Free one request's blocks and put it at the head of the queue. With prefix caching its full blocks keep
        their hashes in the free queue, behind the ``free`` blocks already there, freed last block first
        (``KVCacheManager.free`` → ``BlockPool.free_blocks`` of ``reversed`` blocks): its leading blocks survive
        until more than ``free`` plus its later blocks have been taken."""
        if self.pool.prefix_caching:
            one.cached = min(one.blocks - self.pool.request_blocks, one.computed // self.pool.block_tokens)
            one.evicted_after = self.taken + self.free
        self.free += one.blocks
        one.computed, one.blocks = 0, 0
        self.trace.preemptions += 1
        if self.waiting and _same(self.waiting[0], one):
            self.waiting[0].count += one.count
        else:
            self.waiting.insert(0, one)

    def preempt_tail(self) -> None:
        """Preempt the newest running request."""
        tail = self.running[-1]
        self.preempt(tail.split(1) if tail.count > 1 else self.running.pop())

    def hits(self, c: Cohort) -> int:
        """A waiting request's blocks still in the prefix cache, which it need not compute again (at most all
        tokens but the last, recomputed to sample: ``KVCacheManager.get_computed_blocks``). They count against
        the free blocks as new ones do (``allocate_slots`` counts the evictable hits it touches), but taking them
        evicts nothing."""
        if not c.cached:
            return 0
        alive = max(0, c.cached - max(0, self.taken - c.evicted_after))
        return min(alive, (c.length - 1) // self.pool.block_tokens)

    def step(self, index: int) -> list[tuple[Cohort, int]]:
        """Schedule one step; returns (cohort, tokens each) for every scheduled cohort."""
        budget, sched, preempted = self.pool.budget, [], False
        i = 0
        while i < len(self.running) and budget > 0:
            c = self.running[i]
            want = min(c.length - c.computed, budget)
            if want <= 0:
                i += 1
                continue
            full = min(c.count, budget // want) if want == c.length - c.computed else 1
            if full < c.count:  # the budget separates them: the rest of this cohort waits a step
                self.running.insert(i + 1, c.split(c.count - full))
            nb = self.blocks_for(c, c.computed + want)
            if nb * c.count <= self.free:
                self.take(nb * c.count)
                c.blocks += nb
                sched.append((c, want))
                budget -= want * c.count
                i += 1
                continue
            fits = self.free // nb if nb else c.count
            if fits:
                self.running.insert(i + 1, c.split(c.count - fits))
                self.take(nb * fits)
                c.blocks += nb
                sched.append((c, want))
                budget -= want * fits
                i += 1
                continue
            # not one of this cohort fits: preempt the newest until one does, or this one is the newest
            preempted = True
            while self.free < nb and not (len(self.running) == i + 1 and c.count == 1):
                self.preempt_tail()
            if self.free < nb:  # it is the newest and still does not fit: preempt it
                self.preempt(self.running.pop())
                break
        if not preempted:
            budget = self._admit(budget, sched, index)
        return sched

    def _admit(self, budget: int, sched: list, index: int) -> int:
        running = sum(c.count for c in self.running)
        while self.waiting and budget > 0 and running < self.pool.max_seqs:
            c = self.waiting[0]
            hit = self.hits(c)
            computed = hit * self.pool.block_tokens
            want = min(c.length - computed, budget)
            nb = self.blocks_for(c, computed + want)  # a waiting request holds none: its hits are among these
            full = min(c.count, budget // want) if want == c.length - computed else 1
            full = min(full, self.pool.max_seqs - running, self.free // nb if nb else full)
            if full <= 0:
                break
            take = c.split(full) if full < c.count else self.waiting.pop(0)
            self.free -= nb * full
            self.taken += (nb - hit) * full
            take.computed, take.blocks, take.cached = computed, nb, 0
            self.running.append(take)
            sched.append((take, want))
            budget -= want * full
            running += full
        return budget

    def apply(self, sched: list[tuple[Cohort, int]], index: int) -> int:
        """Run the step: shapes, samples, finishes; returns the requests finished."""
        decode = decode_keys = prefill = prefill_keys = done = kv_read = 0.0
        for c, want in sched:
            if c.generated >= 1 and c.computed == c.length - 1 and want == 1:
                decode += c.count
                decode_keys += c.count * c.length
            else:
                prefill += c.count * want
                prefill_keys += c.count * want * (c.computed + (want + 1) / 2)
                kv_read += c.count * c.computed
                if c.computed + want == c.length:
                    done += c.count
            c.computed += want
        shape = StepShape(decode, decode_keys / decode if decode else 0.0, prefill,
                          prefill_keys / prefill if prefill else 0.0, done, kv_read)
        self._record(shape)
        finished = 0
        self.trace.max_running = max(self.trace.max_running, sum(c.count for c in self.running))
        for c, _ in sched:
            if c.computed == c.length:
                c.generated += 1
                c.length += 1
                if c.first < 0:
                    c.first = index
        keep = []
        for c in self.running:
            if c.generated >= self.out:
                self.free += c.blocks * c.count
                self.trace.finished.append(Finished(c.count, c.first, index))
                finished += c.count
            elif c.count:
                keep.append(c)
        self.running = _merged(keep)
        return finished

    def _record(self, s: StepShape) -> None:
        key = (_bucket(s.decode), _bucket(s.decode_keys), _bucket(s.prefill), _bucket(s.prefill_keys),
               _bucket(s.prefill_done), _bucket(s.prefill_kv_read))
        acc = self._acc.get(key)
        if acc is None:
            acc = self._acc[key] = [len(self._acc), 0, [0.0] * 6]
        acc[1] += 1
        for j, v in enumerate((s.decode, s.decode_keys, s.prefill, s.prefill_keys, s.prefill_done,
                               s.prefill_kv_read)):
            acc[2][j] += v
        self.trace.steps.append(acc[0])

    def shapes(self) -> list[StepShape]:
        out = [StepShape()] * len(self._acc)
        for index, n, sums in self._acc.values():
            out[index] = StepShape(*(v / n for v in sums))
        return out


def _same(a: Cohort, b: Cohort) -> bool:
    return (a.length, a.computed, a.blocks, a.generated, a.first, a.cached) == \
        (b.length, b.computed, b.blocks, b.generated, b.first, b.cached)


def _merged(cohorts: list[Cohort]) -> list[Cohort]:
    """Neighbouring cohorts in the same state, joined (the order of requests is kept)."""
    out: list[Cohort] = []
    for c in cohorts:
        if out and _same(out[-1], c):
            out[-1].count += c.count
        else:
            out.append(c)
    return out


def simulate(requests: int, inp: int, out: int, pool: Pool) -> Trace | None:
    """Step through ``requests`` requests of ``inp`` prompt and ``out`` output tokens, all sent at once; None when
    the run would exceed ``MAX_STEPS`` or ``MAX_VISITS`` or a request can never be admitted (the pool holds no
    whole one)."""
    if inp < 1 or out < 1 or requests < 1:
        return None
    if -(-(inp + out) // pool.block_tokens) + pool.request_blocks > pool.blocks:
        return None
    if requests * (out - 1) / max(1, min(pool.max_seqs, requests)) + requests * inp / pool.budget > MAX_STEPS:
        return None  # at least this many steps: decodes at the running cap, prompts at the budget
    run = _Run(pool, inp, out)
    run.waiting.append(Cohort(requests, inp))
    done, index, visits = 0, 0, 0
    while done < requests:
        visits += len(run.running) + 1
        if index >= MAX_STEPS or visits > MAX_VISITS:
            return None
        sched = run.step(index)
        finished = run.apply(sched, index) if sched else 0
        if not sched and not run.running:
            return None
        done += finished
        index += 1
    run.trace.shapes = run.shapes()
    return run.trace
