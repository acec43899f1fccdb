"""A ``vllm serve`` start-up log read into the setup of a ``vllm bench serve`` result (``speed.server_log``): the
release, layout, formats and server flags, each from the line vLLM prints it on; contradictions refused."""

from __future__ import annotations

import pytest

from shardsim.errors import ShardsimError
from shardsim.speed.calibration import speed_request_of
from shardsim.speed.server_log import read_server_log
from shardsim.speed.vllm_result import ResultSetup, result_row, with_log

# the lines as vLLM 0.11.0 prints them (the configuration line shortened to the fields it always holds)
LOG = """\
(APIServer pid=1) INFO 10-20 10:00:01 [utils.py:233] non-default args: {'model': 'Qwen/Qwen3-30B-A3B-FP8', \
'tensor_parallel_size': 2, 'data_parallel_size': 2, 'enable_expert_parallel': True, 'max_num_seqs': 64, \
'gpu_memory_utilization': 0.85}
(APIServer pid=1) INFO 10-20 10:00:09 [scheduler.py:205] Chunked prefill is enabled with max_num_batched_tokens=8192.
(EngineCore_DP0 pid=7) INFO 10-20 10:00:15 [core.py:77] Initializing a V1 LLM engine (v0.11.0) with config: \
model='Qwen/Qwen3-30B-A3B-FP8', speculative_config=None, tokenizer='Qwen/Qwen3-30B-A3B-FP8', \
skip_tokenizer_init=False, tokenizer_mode=auto, revision=None, tokenizer_revision=None, trust_remote_code=False, \
dtype=torch.bfloat16, max_seq_len=16384, download_dir=None, load_format=auto, tensor_parallel_size=2, \
pipeline_parallel_size=1, data_parallel_size=2, disable_custom_all_reduce=False, quantization=fp8, \
enforce_eager=False, kv_cache_dtype=fp8, device_config=cuda
"""
RESULT = ('{"model_id": "Qwen/Qwen3-30B-A3B-FP8", "num_prompts": 400, "request_rate": "inf", "max_concurrency": 128, '
          '"completed": 400, "total_input_tokens": 409600, "total_output_tokens": 102400, "median_ttft_ms": 300.0, '
          '"median_tpot_ms": 25.0, "output_throughput": 4000.0}')


def test_the_log_gives_release_layout_formats_and_flags(tmp_path):
    path = tmp_path / "serve.log"
    path.write_text(LOG)
    log = read_server_log(path)
    assert (log.release, log.model, log.tp, log.pp, log.dp) == ("0.11.0", "Qwen/Qwen3-30B-A3B-FP8", 2, 1, 2)
    # --enable-expert-parallel with TP 2 × DP 2: the experts spread over the 4 ranks
    assert log.expert_parallel and log.ep == 4
    assert (log.quant, log.kv_cache_dtype) == ("fp8", "fp8")
    # max_num_seqs and the memory share from the flags given; the step budget from the scheduler's line;
    # max_model_len from the configuration's max_seq_len; CUDA graphs on (enforce_eager=False): no flag
    assert log.flags == {"max_num_seqs": 64, "gpu_memory_utilization": 0.85, "max_num_batched_tokens": 8192,
                         "max_model_len": 16384}


def test_the_log_completes_a_result_and_its_flags_reach_the_model(tmp_path):
    log_path, result = tmp_path / "serve.log", tmp_path / "result.json"
    log_path.write_text(LOG)
    result.write_text(RESULT)
    setup, notes = with_log(ResultSetup(gpu="h100"), ("--gpu",), read_server_log(log_path))
    row = result_row(result, setup, notes)
    assert (row.tp, row.dp, row.ep, row.release, row.kv_cache_dtype) == (2, 2, 4, "0.11.0", "fp8")
    knobs = speed_request_of(row).serve.engine.knobs
    assert (knobs.max_num_seqs, knobs.max_model_len, knobs.gpu_memory_utilization) == (64, 16384, 0.85)
    assert knobs.engine_version == "0.11.0"


def test_contradictions_and_non_logs_are_refused(tmp_path):
    log_path = tmp_path / "serve.log"
    log_path.write_text(LOG)
    log = read_server_log(log_path)
    with pytest.raises(ShardsimError, match="--tp 4 contradicts the server log"):
        with_log(ResultSetup(gpu="h100", tp=4), ("--gpu", "--tp"), log)
    # the same values spelled otherwise agree: fp8_e4m3 is the log's fp8 KV cache, v0.11 its 0.11.0
    same, _ = with_log(ResultSetup(gpu="h100", kv_cache_dtype="fp8_e4m3", engine_version="v0.11"),
                       ("--gpu", "--kv-cache-dtype", "--engine-version"), log)
    assert same.tp == 2 and same.kv_cache_dtype == "fp8_e4m3"
    with pytest.raises(ShardsimError, match="--engine-version 0.12.0 contradicts"):
        with_log(ResultSetup(gpu="h100", engine_version="0.12.0"), ("--gpu", "--engine-version"), log)
    # the command line's model wins without a word (the log may name a local folder)
    setup, _ = with_log(ResultSetup(model="Qwen/Qwen3-30B-A3B", gpu="h100"), ("--model", "--gpu"), log)
    assert setup.model == "Qwen/Qwen3-30B-A3B" and setup.tp == 2
    log_path.write_text("INFO starting\nnothing here\n")
    with pytest.raises(ShardsimError, match="not a vLLM start-up log"):
        read_server_log(log_path)
    log_path.write_text(LOG.replace("'max_num_seqs': 64", "'max_num_seqs': -3"))
    with pytest.raises(ShardsimError, match="positive whole number"):
        read_server_log(log_path)
    log_path.write_text(LOG.replace("tensor_parallel_size=2", "tensor_parallel_size=0"))
    with pytest.raises(ShardsimError, match="tensor_parallel_size is 0"):
        read_server_log(log_path)
    log_path.write_text(LOG.replace("{'model'", "{__import__('os')"))
    with pytest.raises(ShardsimError, match="not a Python dict literal"):
        read_server_log(log_path)
