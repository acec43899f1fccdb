"""Every constant of shardsim's memory model, each with its source; fitted values come from ``shardsim.fitted``.

Change a figure here and every formula that uses it follows. Byte counts are ints.
"""

from __future__ import annotations

from shardsim.fitted import fitted
from shardsim.units import GiB, KiB, MiB

# --- PyTorch CUDA caching allocator (c10/cuda/CUDACachingAllocator.cpp) -----------------------------------
ALLOC_MIN_BLOCK = 512                # kMinBlockSize: every request rounds up to a multiple of 512 B
ALLOC_SMALL_SIZE = 1 * MiB           # kSmallSize: requests ≤ 1 MiB come from the small pool
ALLOC_SMALL_SEGMENT = 2 * MiB        # kSmallBuffer: small-pool segments are 2 MiB
ALLOC_LARGE_SEGMENT = 20 * MiB       # kLargeBuffer: requests of 1–10 MiB get 20 MiB segments
ALLOC_MIN_LARGE_ALLOC = 10 * MiB     # kMinLargeAlloc: above this a request gets its own segment …
ALLOC_ROUND_LARGE = 2 * MiB          # kRoundLarge: … rounded up to 2 MiB

# --- Process-level GPU memory outside PyTorch's allocator -------------------------------------------------
# CUDA context + loaded kernels of a PyTorch process on an H100 with CUDA 12 lazy loading: the llm-d benchmark's
# vLLM v0.11 logs show "Free memory on device 78.57/79.18 GiB on startup" (0.61 GiB used before any tensor).
# Source: github.com/llm-d/llm-d-benchmark config_explorer/empirical-vllm-memory-results.md.
CUDA_CONTEXT_BYTES = fitted("CUDA_CONTEXT_BYTES")
# cuBLAS workspace PyTorch reserves per handle/stream: ":4096:8" (8 × 4 MiB) on Hopper, ":4096:2:16:8" (8.125 MiB)
# before. Source: aten/src/ATen/cuda/CublasHandlePool.cpp (getChosenWorkspaceSize). Plus the cuBLASLt workspace
# (CUBLASLT_WORKSPACE_SIZE default 1 MiB; same file).
CUBLAS_WORKSPACE_BYTES = 32 * MiB + 1 * MiB
CUBLAS_WORKSPACE_PRE_HOPPER_BYTES = 8 * MiB + 128 * KiB + 1 * MiB
# NCCL per ring channel over P2P (NVLink or PCIe): receive buffers LL 0.5 MiB + LL128 4.6875 MiB + Simple 4 MiB
# (nccl src/init.cc@v2.27.7-1 DEFAULT_LL_BUFFSIZE / DEFAULT_LL128_BUFFSIZE / DEFAULT_BUFFSIZE with
# src/include/device.h constants) aligned to CUDA_IPC_MIN 2 MiB = 10 MiB, plus the sender's header, 2 MiB
# (src/transport/p2p.cc@v2.27.7-1 p2pRecvSetup / p2pSendSetup).
NCCL_P2P_CHANNEL_BYTES = 12 * MiB
# Over the network with GPUDirect RDMA: send LL128 + Simple 8.6875 MiB and receive LL + LL128 + Simple 9.1875 MiB on
# the GPU (src/transport/net.cc@v2.27.7-1, NCCL_NET_MAP_ADD_POINTER with useGdr), each rounded to 2 MiB: 10 + 10.
NCCL_NET_CHANNEL_BYTES = 20 * MiB
# cuMem (NCCL_CUMEM_ENABLE, default on with CUDA ≥ 12 drivers, src/misc/cudawrap.cc) rounds every device allocation
# to the 2 MiB granule (src/include/alloc.h ncclCuMemAlloc): three per-channel structures (src/channel.cc
# initChannel: devPeers, channel devPeers, devRingUserRanks) cost 6 MiB per channel.
NCCL_CUMEM_CHANNEL_BYTES = 6 * MiB
# Collective channels: 16 on 8-GPU NVSwitch nodes ("16 coll channels", NCCL_DEBUG=INFO of 8×H800,
# github.com/NVIDIA/nccl/issues/892); on PCIe one ring per path, duplicated by ncclTopoPostset
# (src/graph/connect.cc) = 2.
NCCL_CHANNELS_NVLINK = 16
NCCL_CHANNELS_PCIE = 2
# NVLS: NCCL_NVLS_CHUNKSIZE 128 KiB × NCCL_STEPS 8 = 1 MiB per buffer, 2 per channel and per GPU of the group,
# 16 NVLS channels on sm90 (src/transport/nvls.cc@v2.21.5-1 … v2.27.7-1, ncclNvlsBufferSetup; NVLS_NCHANNELS_SM90).
NCCL_NVLS_CHANNELS = 16
NCCL_NVLS_BYTES_PER_CHANNEL_PEER = 2 * MiB
# Pipeline send/recv across nodes: shared network buffers, 2 channels × NCCL_SHARED_STEPS 16 × 128 KiB
# (P2P_NET_CHUNKSIZE) (src/transport/net.cc, sharedBuffersInit; src/init.cc).
NCCL_NET_P2P_BYTES = 2 * 16 * 128 * KiB
# vLLM custom all-reduce: meta + buffer IPC allocations of max_size 8 MiB each, and the 8 MiB rank_data tensor
# (vllm/distributed/device_communicators/custom_all_reduce.py, CustomAllreduce.__init__).
CUSTOM_ALLREDUCE_BYTES = 3 * 8 * MiB
CUSTOM_ALLREDUCE_RANK_DATA_BYTES = 8 * MiB  # the torch tensor among them (inside the caching allocator)
# vLLM symmetric-memory all-reduce buffer per compute-capability major and TP size (vllm/distributed/
# device_communicators/all_reduce_utils.py SYMM_MEM_ALL_REDUCE_MAX_SIZES; symm_mem.py allocates max_size bytes).
SYMM_MEM_ALLREDUCE_BYTES = {9: {2: 64 * MiB, 4: 32 * MiB, 6: 64 * MiB, 8: 64 * MiB},
                            10: {2: 8 * MiB, 4: 32 * MiB, 6: 128 * MiB, 8: 128 * MiB}}
# Relative uncertainty of the estimated terms (shown beside them): the runtime term varies with driver, NCCL
# version and engine (vLLM measures 0.13 GiB non-torch at TP1 and 0.54 GiB at TP2 for Qwen3-32B on H100:
# llm-d benchmark above), activations with kernel choices.
RUNTIME_UNCERTAINTY = 0.5
ACTIVATION_UNCERTAINTY = 0.25

# --- Quantized weight storage -----------------------------------------------------------------------------
FP8_SCALE_BYTES = 4     # block scales held in float32 (vLLM quantization/fp8.py, Fp8LinearMethod.create_weights)
GROUP_SCALE_BYTES = 2   # fp16 group scales (AutoGPTQ / AutoAWQ layouts; vLLM gptq.py, awq.py)
PACKED_INT_BYTES = 4    # int32 words holding 32/bits quantized values or zeros (same sources)
NVFP4_GROUP = 16        # NVFP4: one fp8 scale per 16 elements (NVIDIA ModelOpt; vLLM quantization/modelopt.py)

# --- Inference defaults -------------------------------------------------------------------------------------
KV_BLOCK_TOKENS = 16          # vLLM's default --block-size (vllm/config/cache.py)
# Tokens of one forward step (the step budget): vLLM V1 ``max_num_batched_tokens`` for `vllm serve` on ≥ 70 GiB GPUs
# (vllm/engine/arg_utils.py@v0.11.0, EngineArgs._set_default_args) and SGLang's ``chunked_prefill_size`` on
# 80 GB-class GPUs (srt/server_args.py@v0.5.2, ServerArgs.__post_init__). A step mixes decode tokens (one per running
# sequence) and prefill chunks up to this budget, so activations scale with it, not with batch × prompt.
STEP_TOKENS = 8192

ACTIVATION_BYTES = 2          # bf16 hidden states in inference
LOGITS_BYTES = 4              # logits are upcast to fp32 before sampling (vLLM LogitsProcessor / HF generate)
ROUTER_LOGITS_BYTES = 4       # MoE router logits in fp32 (vLLM fused_moe topk softmax)

# DeepSpeed ZeRO-3 prefetches up to this many parameter elements ahead of the module being run
# (stage3_prefetch_bucket_size default 5e7, deepspeed/runtime/zero/config.py).
ZERO3_PREFETCH_BUCKET_ELEMENTS = 50_000_000

# --- vLLM (V1, v0.10–v0.11) ----------------------------------------------------------------------------------
# Defaults by GPU (vllm/engine/arg_utils.py, EngineArgs._set_default_args): `vllm serve` on a GPU with ≥ 70 GiB
# whose name is not an A100 gets max_num_seqs 1024 and max_num_batched_tokens 8192; other GPUs 256 / 2048.
VLLM_BIG_GPU_BYTES = 70 * GiB
VLLM_DEFAULT_SEQS_BIG, VLLM_DEFAULT_BATCHED_TOKENS_BIG = 1024, 8192
VLLM_DEFAULT_SEQS_SMALL, VLLM_DEFAULT_BATCHED_TOKENS_SMALL = 256, 2048
# The offline ``vllm.LLM`` class (UsageContext.LLM_CLASS): 16,384 tokens on the big GPUs, 8,192 on others; the same
# max_num_seqs (engine/arg_utils.py@v0.10.2 _set_default_args_v1; @v0.33.0 get_batch_defaults).
VLLM_LLM_BATCHED_TOKENS_BIG, VLLM_LLM_BATCHED_TOKENS_SMALL = 16384, 8192
# The profiling run's peak is the sampler's dummy run over max_num_seqs × vocab logits: bf16 logits 2, fp32
# copy 4, sorted values 4, int64 indices 8 and reverse indices 8, cub's temporary key/value buffers 12 = 38 B per
# logit with the PyTorch-native top-k/top-p sampler (vllm/v1/sample/ops/topk_topp_sampler.py; ATen Sort.cu
# segmented sort); FlashInfer's sampler keeps ~14 B. Check: 0.6B and 32B on H100 log 5.56 and 5.64 GiB.
VLLM_SAMPLER_BYTES_PER_LOGIT = 38
# FlashInfer and, from vLLM 0.17, the in-place Triton top-k/top-p kernel keep no sort buffers: bf16 logits 2, fp32
# copy 4, softmax probabilities 4 and the exponential noise of the sampling step 4 = 14 B per logit
# (v1/sample/ops/topk_topp_sampler.py@v0.17.0, random_sample: probs.div_(q) with q = empty_like(probs).exponential_()).
VLLM_FLASHINFER_SAMPLER_BYTES_PER_LOGIT = 14
# Model Runner V2's dummy sampler (v1/worker/gpu/model_runner.py@v0.27.1 _dummy_sampler_run; sample/sampler.py
# apply_sampling_params): the dummy requests need no logits processing, so no fp32 copy is made and the Triton
# Gumbel sampler reads the bf16 logits in place: 2 B per logit, plus the vocab shard before the all-gather at TP > 1.
VLLM_V2_SAMPLER_BYTES_PER_LOGIT = 2
# FlashInfer attention's workspace buffer (vllm/envs.py@v0.27.1 VLLM_FLASHINFER_WORKSPACE_BUFFER_SIZE default).
VLLM_FLASHINFER_WORKSPACE_BYTES = 394 * MiB
# Non-torch memory growth during profiling (lazily loaded kernels, cuBLAS handles; at TP > 1 the logits
# all-gather creates a second NCCL communicator): 0.13 GiB at TP1, 0.54 GiB at TP2 (Qwen3-32B, H100, v0.11,
# llm-d benchmark's empirical-vllm-memory-results.md); V0 0.8.5 logs 0.06 GiB at TP1 (vllm#17327).
VLLM_NON_TORCH_BYTES = fitted("VLLM_NON_TORCH_BYTES")
VLLM_V0_NON_TORCH_BYTES = fitted("VLLM_V0_NON_TORCH_BYTES")
# CUDA graphs (engines/vllm_profile.py): the sizes, pieces and pool come from the model and the release; what the
# driver keeps per captured graph does not, so it is fitted (one vLLM 0.26 log on H100, fitted.py names it).
VLLM_CUDA_GRAPH_BYTES_PER_GRAPH = fitted("VLLM_CUDA_GRAPH_BYTES_PER_GRAPH")

# --- SGLang (sglang ≤ 0.5.2, srt/server_args.py and srt/model_executor/model_runner.py) ---------------------
# mem_fraction_static = round((gpu_mem − reserved) / gpu_mem, 3) with gpu_mem the nvidia-smi total in MiB and
# reserved (MiB) by GPU size: < 35 GiB: (2.8 + tp·pp/10)·1024; < 90 GiB: (9.5 + tp·pp/2)·1024;
# < 160 GiB: (12 + tp·pp/2)·1024; else 32·1024.
SGLANG_RESERVE_TABLE = ((35 * 1024, 2.8, 0.1), (90 * 1024, 9.5, 0.5), (160 * 1024, 12.0, 0.5))
SGLANG_RESERVE_LARGE_MIB = 32 * 1024
# sglang 0.4.6 (srt/server_args.py@v0.4.6 __post_init__): on GPUs ≤ 80 GiB, mem_fraction_static by tp:
# tp ≥ 16: 0.79, ≥ 8: 0.81, ≥ 4: 0.85, ≥ 2: 0.87, else 0.88 (first match wins).
SGLANG_TP_TABLE = ((16, 0.79), (8, 0.81), (4, 0.85), (2, 0.87), (1, 0.88))
# The request-to-token table: int32 [max_num_reqs, context_len + 4], max_num_reqs = min(max(tokens/ctx·512,
# 2048), 4096) (model_runner.py init_memory_pool).
SGLANG_MIN_REQS, SGLANG_MAX_REQS = 2048, 4096
# "Load weight end: mem usage" beyond the weights and the fp32 rotary cache: device-level side effects of loading
# (cuBLAS/cuDNN handles, kernels). One published log: Qwen3-0.6B on an RTX 5080, 1.25 GiB logged vs 1.13 GiB of
# weights and rotary cache (sglang README 'MinerU images for Blackwell').
SGLANG_LOAD_OVERHEAD_BYTES = fitted("SGLANG_LOAD_OVERHEAD_BYTES")

# --- Sanity limits for user input ------------------------------------------------------------------------------
# Not facts about any system: bounds that keep every command's work finite and refuse implausible input with a
# line naming the limit. The Qwen3 family's largest figures (94 layers, 64 query heads, 4,096 hidden, 151,936 vocab,
# 128 experts, 40,960 positions; the presets' config.json) sit far inside them.
MAX_CONTEXT_TOKENS = 10_000_000
MAX_BATCH = 1_000_000
MAX_LAYERS = 1_024
MAX_HIDDEN = 131_072
MAX_HEADS = 1_024
MAX_HEAD_DIM = 1_024
MAX_INTERMEDIATE = 1_048_576
MAX_VOCAB = 4_194_304
MAX_EXPERTS = 4_096
MAX_WORLD_SIZE = 16_384          # GPUs in one layout or cluster (every rank is reported one by one)
MAX_REVIEW_LAYOUTS = 200_000     # layouts one review or sweep may enumerate (per model and cluster)
MAX_SWEEP_POINTS = 10_000        # points of one sweep (contexts × batches × layouts)
# Entries (models) of one workload file. Each entry is a review of its own (every layout × quant × KV dtype on
# every cluster, and with speed targets every fitting option through the speed model): measured on 2 cores, 32
# entries of 235B with three quants × two KV dtypes take 31 s and 0.6 GB, with targets about 10 s an entry; 5,000
# rows (250 KB) ran for minutes and died of MemoryError. A deployment serving more models at once is reviewed in
# several files.
MAX_WORKLOAD_MODELS = 32
MIN_GPU_BYTES = 1 * GiB          # a GPU's memory: at least 1 GiB …
MAX_GPU_BYTES = 16 * 1024 * GiB  # … and at most 16 TiB (the largest card sold, B300, has 288 GB)
MAX_BANDWIDTH_GBPS = 1_000_000.0  # a link's GB/s per direction (NVLink 5: 900 both ways)
MAX_PRICE_USD = 1e12
# Input files: sizes before reading, nesting, integer digits, what YAML aliases may expand to.
MAX_CONFIG_BYTES = 4 * MiB
MAX_YAML_BYTES = 1 * MiB
MAX_JSONL_BYTES = 64 * MiB
MAX_INPUT_DEPTH = 64
MAX_INT_DIGITS = 30
MAX_YAML_NODES = 100_000
# A safetensors file is an 8-byte little-endian header length N, N bytes of UTF-8 JSON, then the tensor data
# (github.com/huggingface/safetensors README, "Format"). The library refuses a header over 100 MB
# (safetensors/src/tensor.rs: MAX_HEADER_SIZE = 100_000_000); shardsim reads only headers and refuses the same.
SAFETENSORS_LENGTH_BYTES = 8
MAX_SAFETENSORS_HEADER_BYTES = 100_000_000
# A header nests three levels: {name: {"dtype", "shape": [...], "data_offsets": [...]}} (README "Format").
MAX_SAFETENSORS_HEADER_DEPTH = 3
# model.safetensors.index.json maps each tensor name to its shard file, ~100 bytes a tensor: 16 MiB allows
# ~160k tensors, over four times Qwen3-235B-A22B's 94 layers × 128 experts × 3 projections = 36,096 expert tensors.
MAX_CHECKPOINT_INDEX_BYTES = 16 * MiB
# Bits per element of each safetensors dtype (safetensors 0.8, safetensors/src/tensor.rs ``Dtype`` and
# ``Dtype::bitsize``; the FNUZ float8 variants are 8 bits, safetensors/torch.py ``_SIZE``). F4 and F6 pack several
# elements per byte.
SAFETENSORS_DTYPE_BITS: dict[str, int] = {
    "BOOL": 8, "U8": 8, "I8": 8, "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32,
    "I64": 64, "U64": 64, "F64": 64, "C64": 64,
}
# vLLM runs fused MoE over at most this many tokens at a time (envs.VLLM_FUSED_MOE_CHUNK_SIZE, vllm/envs.py),
# so the MoE transient of a long prefill stops growing here.
MOE_CHUNK_TOKENS = 32768
# The vision processors' pixel budgets as published with the checkpoints: preprocessor_config.json
# "size": {"longest_edge": 16777216, "shortest_edge": 65536} (4096² pixels; Qwen/Qwen3-VL-8B-Instruct,
# Qwen/Qwen3.5-2B-Base, Qwen/Qwen3.6-35B-A3B-FP8) and video_preprocessor_config.json "longest_edge": 25165824
# (it includes the temporal patch of 2 frames). vLLM reads them as the largest item it profiles
# (models/qwen2_vl.py@v0.33.0 ``_get_vision_size``); ``--mm-max-pixels`` overrides the image's.
QWEN_VL_IMAGE_MAX_PIXELS = 16_777_216
QWEN_VL_VIDEO_MAX_PIXELS = 25_165_824
# vLLM's items per prompt for a modality --limit-mm-per-prompt does not name (config/multimodal.py@v0.33.0
# ``get_limit_per_prompt``: "Unspecified modality is set to 999 by default").
VLLM_MM_DEFAULT_LIMIT = 999
