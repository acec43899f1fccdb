"""Speed and cost: per-rank work of a forward step, its time on the GPU and the interconnect, and the serving
figures a workload gets from it (TTFT, TPOT, tokens/s, $ per million tokens), each with its held-out band.

- ``work``: FLOPs and bytes moved per forward step on one rank, from the tensor inventory and its shard rules;
- ``comm``: the step's collectives (TP all-reduce and all-gather, EP all-to-all, PP send/recv), sized exactly and
  timed with NCCL's own cost model on the link the cluster names;
- ``roofline``: the GPU's peaks and the step time (compute / memory roofline per op group, with the fitted
  efficiencies and overheads of ``fitted``);
- ``serving``: continuous batching in steady state (closed loop of C users, or an open-loop request rate through
  Little's law), TTFT, TPOT, throughput and the largest concurrency within targets;
- ``estimate``: the ``SpeedRequest`` record and the one entry point ``estimate(request)``; ``memo``: what many
  estimates of one model share (engine reports, stage costs), so a review's layouts are costed once;
- ``fitted`` / ``bands``: the fitted values (naming their rows) and the held-out error bands;
- ``calibration`` / ``vllm_result``: published serving benchmarks (``speed/data/serving_benchmarks.jsonl``) and a
  user's ``vllm bench serve`` result, predicted vs measured.

Pure arithmetic except ``calibration`` and ``vllm_result`` (which read files through ``shardsim.files``); no torch.

May import: shardsim.core, shardsim.engines, shardsim.hardware, shardsim.presets, shardsim.files,
shardsim.constants, shardsim.units, shardsim.errors.
"""
