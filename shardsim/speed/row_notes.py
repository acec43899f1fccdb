"""What a published row's notes say about the run beyond its fields: the server flags the speed model reads, and
whether its client drew requests of equal lengths. Rows are ``calibration.ServingRow``; the notes quote the
server's and the client's command lines as the source printed them."""

from __future__ import annotations

import re

VLLM_SERVER_FLAGS = (
    # (the ``vllm serve`` flag as a row's notes quote it, the knob it sets, how its value reads); argparse takes a
    # flag's unambiguous prefix (``allow_abbrev``), so ``--max-num-seq 30`` is ``--max-num-seqs 30``
    (r"--max-model-len[= ]([0-9]{1,9})\b", "max_model_len", int),
    (r"--max-num-seqs?[= ]([0-9]{1,7})\b", "max_num_seqs", int),
    (r"--max-num-batched-tokens[= ]([0-9]{1,9})\b", "max_num_batched_tokens", int),
    (r"--gpu-memory-utilization[= ]([0-9]*\.?[0-9]+)\b", "gpu_memory_utilization", float),
    (r"--enforce-eager\b()", "enforce_eager", lambda _: True),
)
"""The server flags a row's notes state that the speed model reads: the step budget, the running cap, the KV
cache's share of memory and CUDA graphs off all change the step times and the running requests."""
SGLANG_SERVER_FLAGS = (
    # (the ``sglang.launch_server`` flag as a row's notes quote it, the knob it sets, how its value reads)
    (r"--mem-fraction-static[= ]([0-9]*\.?[0-9]+)\b", "mem_fraction_static", float),
    (r"--context-length[= ]([0-9]{1,9})\b", "context_length", int),
    (r"--chunked-prefill-size[= ]([0-9]{1,9})\b", "chunked_prefill_size", int),
    (r"--max-running-requests[= ]([0-9]{1,7})\b", "max_running_requests", int),
    (r"--max-total-tokens[= ]([0-9]{1,10})\b", "max_total_tokens", int),
    (r"--disable-radix-cache\b()", "disable_radix_cache", lambda _: True),
)
"""As ``VLLM_SERVER_FLAGS``, SGLang's: the KV pool's share of memory, the context length (a hybrid's state slots and
running cap follow from both), the prefill chunk, the running cap and the radix cache."""
SERVER_FLAGS = {"vllm": VLLM_SERVER_FLAGS, "sglang": SGLANG_SERVER_FLAGS}


def server_flags(engine: str, notes: str) -> dict:
    """The knobs of ``engine`` that the server flags quoted in ``notes`` set (``SERVER_FLAGS``)."""
    out = {}
    for pattern, knob, read in SERVER_FLAGS.get(engine, ()):
        stated = re.search(pattern, notes)
        if stated:
            out[knob] = read(stated.group(1))
    return out


FIXED_LENGTHS = ("random", "synthetic-fixed")
"""Datasets whose requests can all have the stated lengths (``random``: as its client's range ratio says,
``RANGE_RATIO_CLIENTS``); others (ShareGPT) vary, and their closed loop spreads arrivals (``serving``)."""
RANGE_RATIO = re.compile(r"--random-range-ratio[= ]([0-9]*\.?[0-9]+)")
RANGE_RATIO_CLIENTS = (
    # (how a row's notes name the client, whether range ratio r draws every request at the stated lengths);
    # r is 0.0 unless the notes quote --random-range-ratio (the default of both clients)
    # sglang/bench_serving.py sample_random_requests: lengths uniform in [max(⌊I·r⌋, 1), I]: equal only at r = 1
    # (ATOM's atom.benchmarks.benchmark_serving, "vLLM-style", draws as vLLM's benchmark_serving.py did before its
    # RandomDataset: the same range; its rows' notes: 1.0 is fixed lengths)
    (("sglang.bench_serving", "sglang.benchmark.serving", "atom.benchmarks.benchmark_serving"), lambda r: r >= 1.0),
    # vllm/benchmarks/datasets.py RandomDataset: lengths uniform in [I·(1 − r), I·(1 + r)]: equal at r = 0
    ((), lambda r: r == 0.0),
)
"""How each benchmark client's ``--random-range-ratio`` draws the lengths of a random dataset; the last entry
(``vllm bench serve``, and clients that follow it) where the notes name none of the others."""


def lengths_vary(row) -> bool:
    """Whether the row's requests have lengths of their own (a dataset not in ``FIXED_LENGTHS``, or a random one whose
    client's range ratio draws them, ``RANGE_RATIO_CLIENTS``) rather than all the stated ones: equal requests keep
    a closed loop's first wave together, varied ones spread it (``serving``)."""
    if str(row.dataset or "random").lower() not in FIXED_LENGTHS:
        return True
    text = f"{getattr(row, 'notes', '') or ''} {getattr(row, 'quote', '') or ''}"
    stated = RANGE_RATIO.search(text)
    ratio = float(stated.group(1)) if stated else 0.0
    equal = next(rule for names, rule in RANGE_RATIO_CLIENTS if not names or any(n in text for n in names))
    return not equal(ratio)
