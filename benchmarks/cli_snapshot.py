"""The refactor guard: run a fixed list of commands and compare their stdout, stderr and exit code byte for byte
with a stored snapshot (``benchmarks/cli_snapshot/``).

    python benchmarks/cli_snapshot.py record   # store today's outputs (before a refactor)
    python benchmarks/cli_snapshot.py check    # compare; prints each command that changed, exit 1 if any did

The commands cover serving plans (every engine, JSON and text), training plans (every framework), the review, the
sweep, the family report, the catalogs, the calibration and refusals. A change of output meant by an issue is
recorded again with ``record`` in the same commit, so the diff shows it.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STORE = ROOT / "benchmarks" / "cli_snapshot"
COMMANDS = [
    "plan 235b --tp 8 --pp 2",
    "plan 235b --tp 8 --pp 2 --json",
    "plan 32b --tp 2 --context 32768 --batch 8",
    "plan 30b-a3b --tp 2 --ep 2 --dp 2 --quant fp8 --kv-dtype fp8",
    "plan 8b --dp 2 --zero 3 --pp-split 20,16 --pp 2 --gpu a100-40gb",
    "plan 32b --engine vllm --gpu h100",
    "plan 32b --engine vllm --tp 2 --max-model-len 32768 --engine-version 0.10.1 --json",
    "plan 235b --engine vllm --tp 8 --quant fp8 --kv-cache-dtype fp8",
    "plan 30b-a3b --engine sglang --tp 2 --mem-fraction-static 0.85",
    "plan 8b --engine hf --prompt-tokens 512 --generate-tokens 128",
    "plan 14b --engine accelerate --pp 2 --max-memory 20GiB,cpu=64GiB --gpu-memory 24GiB",
    "plan 14b --train --zero 3 --dp 8 --seq-len 4096",
    "plan 32b --train --framework megatron --tp 4 --pp 2 --dp 2 --sequence-parallel --distributed-optimizer --json",
    "plan 8b --train --framework fsdp --dp 4 --recompute full --lora-rank 16",
    "plan 30b-a3b --train --framework megatron --tp 2 --ep 4 --dp 4 --cp 2",
    "plan 8b --train --framework torch --tp 2 --pp 2",
    "review --workload example --max-gpus 16",
    "review --workload train-example --json",
    "sweep 8b --contexts 4096,32768 --batches 1,16",
    "sweep 30b-a3b --gpus 4,8 --json",
    "report",
    "models",
    "gpus",
    "clusters",
    "calibrate tests/data/measurements.jsonl",
    "calibrate tests/data/train_measurements.jsonl --json",
    "speed 8b --gpu h100 --engine vllm --input-tokens 1024 --output-tokens 256 --concurrency 64",
    "speed 235b --tp 8 --pp 2 --engine vllm --concurrency 32 --tpot-ms 50 --json",
    "plan 235b --tp 3",
    "plan 8b --train --context 4096",
    "plan 8b --engine vllm --mem-fraction-static 0.8",
]


def run(command: str) -> bytes:
    exe = ROOT / ".venv" / "bin" / "shardsim"
    proc = subprocess.run([str(exe), *command.split()], capture_output=True, cwd=ROOT, env={"PATH": "/usr/bin:/bin",
                          "COLUMNS": "160", "NO_COLOR": "1", "HOME": str(Path.home())})
    return b"".join([b"$ shardsim ", command.encode(), b"\n", proc.stdout, b"\n--- stderr\n", proc.stderr,
                     f"\n--- exit {proc.returncode}\n".encode()])


def name_of(command: str) -> str:
    return hashlib.sha1(command.encode()).hexdigest()[:10] + ".txt"


def main(mode: str) -> int:
    STORE.mkdir(exist_ok=True)
    changed = 0
    for command in COMMANDS:
        out, path = run(command), STORE / name_of(command)
        if mode == "record":
            path.write_bytes(out)
        elif not path.exists() or path.read_bytes() != out:
            changed += 1
            print(f"changed: shardsim {command}")
    if mode == "check":
        print(f"{len(COMMANDS) - changed} of {len(COMMANDS)} commands unchanged")
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else "check"))
