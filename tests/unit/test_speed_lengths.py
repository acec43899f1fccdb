"""Which published runs have requests of equal lengths (``row_notes.lengths_vary``), and what that changes: a closed
loop or batch of equal requests keeps its first wave together, varied ones spread it (``serving``, ``batch``)."""

from __future__ import annotations

import pytest

from shardsim.speed.batch import batch
from shardsim.speed.calibration import ServingRow
from shardsim.speed.row_notes import lengths_vary
from shardsim.speed.serving import Scheduler, steady_state

SGLANG_CLIENT = "python3 -m sglang.bench_serving --backend sglang --dataset-name random --random-input-len 8192"
VLLM_CLIENT = "vllm bench serve --dataset-name random --random-input-len 1024 --random-output-len 128"


def _row(dataset: str, notes: str) -> ServingRow:
    return ServingRow(id="r", engine="sglang", model="Qwen/Qwen3-8B", gpu="H100", dataset=dataset, notes=notes)


@pytest.mark.parametrize("dataset, notes, vary", [
    # sglang.bench_serving draws lengths in [max(⌊I·r⌋, 1), I]: r = 0 (its default) varies them, r = 1 does not
    ("random", SGLANG_CLIENT, True),
    ("random", SGLANG_CLIENT + " --random-range-ratio 1.0", False),
    ("random", SGLANG_CLIENT + " --random-range-ratio 0.5", True),
    # vllm bench serve draws them in [I·(1 − r), I·(1 + r)]: r = 0 (its default) is equal lengths
    ("random", VLLM_CLIENT, False),
    ("random", VLLM_CLIENT + " --random-range-ratio 0.1", True),
    ("random", "", False),  # no client named: vllm bench serve's reading
    ("sharegpt", SGLANG_CLIENT + " --random-range-ratio 1", True),  # a dataset of its own lengths
])
def test_lengths_vary_by_client_and_range_ratio(dataset, notes, vary):
    assert lengths_vary(_row(dataset, notes)) is vary


def cost(shape) -> float:
    return 0.010 + 1e-6 * shape.tokens


def test_a_batch_beyond_its_first_wave_runs_as_the_closed_loop_of_its_lengths():
    """1,000 requests, at most 50 running (SGLang's separate prefill batches): the median request is admitted after
    the first wave and then served as the closed loop of 50 users — of equal requests (a wave) or of varied ones
    (spread arrivals), whose TPOT differ."""
    sched = Scheduler(budget=8192, max_seqs=50, kv_seqs=50, mixed=False)
    for burst in (True, False):
        run = steady_state(50, 4096, 256, sched, cost, 0.02, burst)
        assert batch(1000, 4096, 256, sched, cost, 0.02, burst).tpot == pytest.approx(run.tpot)
    assert steady_state(50, 4096, 256, sched, cost, 0.02, True).tpot != \
        pytest.approx(steady_state(50, 4096, 256, sched, cost, 0.02, False).tpot)
