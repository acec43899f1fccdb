"""A GPU check without Ray: one rank of ``shardsim validate``'s torch backend in this process on one CUDA device,
the planner's prediction beside what the device holds (weights and KV to the byte, the activation peak, and the
caching allocator's reserved bytes and the CUDA context against the planner's runtime terms).

    python benchmarks/device_check.py --model 8b --layers 4 --context 1024 --batch 4 --out results.json

Ray is not needed (the device machine has none): the worker class the Ray actors wrap (``launch.serve.worker``) is
instantiated here as rank 0 of a world of 1 (NCCL). Figures go to stdout and, as JSON, to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def nvidia_smi_used_mib() -> int | None:
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=20).stdout
        return int(out.split()[0])
    except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
        return None


def serve_check(model: str, layers: int, context: int, batch: int, decode_steps: int, build: Path,
                device: str = "cuda") -> dict:
    import torch

    cuda = device == "cuda"

    from shardsim.core.layout import Layout, validate_layout
    from shardsim.core.plan import Planner, Workload
    from shardsim.core.layout import rank_coords
    from shardsim.launch.checkpoints.prepare import prepare_checkpoint
    from shardsim.launch.serve.predict import predict
    from shardsim.launch.serve.worker import ServeWorker
    from shardsim.launch.session.request import ValidateRequest
    from shardsim.presets import get_preset, preset_config

    spec = get_preset(model).truncated(layers)
    layout = validate_layout(spec, Layout())
    req = ValidateRequest(model=spec, layout=layout, device=device, batch=batch, context=context,
                          decode_steps=decode_steps, layers=layers, source_config=preset_config(model))
    t0 = time.time()
    ckpt = prepare_checkpoint(req, spec, build, True, {})
    smi_before = nvidia_smi_used_mib()
    worker = ServeWorker(0, 1, {"MASTER_ADDR": "127.0.0.1"})
    worker.setup(free_port(), req)
    context_alloc = torch.cuda.memory_allocated() if cuda else 0
    load = worker.load(ckpt, "torch")
    allocated_after_load = torch.cuda.memory_allocated() if cuda else 0
    prompt_len = context - decode_steps
    prompt = [[(7919 * (b + 1) * (i + 1)) % spec.vocab_size for i in range(prompt_len)] for b in range(batch)]
    out = worker.forward(prompt, context, decode_steps, 16)
    measured = dict(worker.measure())
    predicted = predict(spec, layout, context, batch, prompt_len, "torch")[0]
    wl = Workload(context=context, batch=batch, prefill_chunk=prompt_len, step_tokens=None, kernels="eager").checked()
    terms = Planner(spec, layout, wl).rank_terms(rank_coords(0, layout), context, batch).bytes
    return {
        "model": spec.name, "layers": layers, "context": context, "batch": batch,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "predicted": predicted, "measured": {k: measured.get(k) for k in ("weights", "kv_cache", "activations")},
        "cuda": {"allocated_before_load": context_alloc, "allocated_after_load": allocated_after_load,
                 "max_allocated": torch.cuda.max_memory_allocated() if cuda else 0,
                 "reserved": torch.cuda.memory_reserved() if cuda else 0,
                 "nvidia_smi_used_mib_before": smi_before, "nvidia_smi_used_mib_after": nvidia_smi_used_mib()},
        "planner": {"allocated": terms.allocated, "reserved": terms.reserved, "runtime": terms.runtime,
                    "total": terms.total},
        "load": load, "forward_keys": sorted(out)[:12], "seconds": round(time.time() - t0, 1),
    }


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="8b")
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--context", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--decode-steps", type=int, default=4)
    ap.add_argument("--build", default=os.environ.get("SHARDSIM_CACHE", "/tmp/shardsim-cache"))
    ap.add_argument("--out", default="device_check.json")
    ap.add_argument("--device", default="cuda")
    a = ap.parse_args()
    result = serve_check(a.model, a.layers, a.context, a.batch, a.decode_steps, Path(a.build), a.device)
    text = json.dumps(result, indent=1, default=str)
    print(text)
    Path(a.out).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
