"""Hostile input, one sample of every failure kind the fuzz harness found (``../shared/tools/fuzz_cli.py``): each is
refused with exit 2 and one line, within seconds, with no traceback. About 25 s for the module (0.4 s an input).

The whole harness (2,300 inputs, about 40 min on 2 cores) is a documented command, not a test:
``python3 ../shared/tools/fuzz_cli.py .venv/bin/shardsim`` (README, "Hostile input").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PRESETS_DIR

EXE = str(Path(sys.executable).parent / "shardsim")
BOMB = "a0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10))
CLUSTER = ("name: c\ngpu: h100\nnodes: 1\ngpus_per_node: 8\nintra_node_link:\n  kind: NVLink\n  bandwidth_GBps: {bw}\n"
           "  source: x\n")


def config(tmp: Path, name: str, **changes) -> str:
    data = json.loads((PRESETS_DIR / "Qwen3-8B.json").read_text())
    data.update(changes)
    path = tmp / f"{name}.json"
    path.write_text(json.dumps(data))
    return str(path)


def write(tmp: Path, name: str, text: str) -> str:
    path = tmp / name
    path.write_text(text)
    return str(path)


def fixtures(tmp: Path) -> dict[str, list[str]]:
    """Each failure kind → the command line that once broke (a traceback, a hang, an absurd answer or silence)."""
    fifo = tmp / "fifo.json"
    os.mkfifo(fifo)
    row = {"model": "Qwen/Qwen3-8B", "dtype": "bf16", "engine": "vLLM", "gpu": "NVIDIA H100 80GB", "tp": 1,
           "context": 8192, "measured": {"Model loading took": "15.26 GiB"}}
    return {
        # tracebacks: unbounded reads, recursion, huge integers, wrong types, unreadable names
        "config /dev/zero": ["plan", "--config", "/dev/zero"],
        "config FIFO": ["plan", "--config", str(fifo)],
        "config nested 100k deep": ["plan", "--config", write(tmp, "deep.json", "[" * 100_000 + "]" * 100_000)],
        "config int of 5000 digits": ["plan", "--config", write(tmp, "int.json", '{"hidden_size": ' + "9" * 5000 + "}")],
        "quantization_config of a wrong type": ["plan", "--config", config(
            tmp, "q", quantization_config={"quant_method": "fp8", "modules_to_not_convert": 5})],
        "file name too long": ["plan", "8b", "--cluster", "/" + "a" * 300 + "/x.yaml"],
        "calibration NaN": ["calibrate", write(tmp, "nan.jsonl", json.dumps({**row, "context": "NaN"}).replace(
            '"NaN"', "NaN") + "\n")],
        "calibration string where a number belongs": ["calibrate", write(tmp, "s.jsonl", json.dumps({**row, "tp": "2"}))],
        "calibration number of dots": ["calibrate", write(tmp, "d.jsonl", json.dumps(
            {**row, "measured": {"Model loading took": ". GiB"}}))],
        # hangs: work bounded before it starts
        "num_hidden_layers 1e9": ["plan", "--config", config(tmp, "layers", num_hidden_layers=10**9)],
        "num_attention_heads 1e9": ["plan", "--config", config(tmp, "heads", num_attention_heads=10**9)],
        "huge --dp": ["plan", "8b", "--dp", "1000000000"],
        "YAML alias bomb (workload)": ["review", "--workload", write(tmp, "bomb.yaml", BOMB)],
        "9-million-point sweep": ["sweep", "8b", "--contexts", ",".join(map(str, range(1, 3001))),
                                  "--batches", ",".join(map(str, range(1, 3001)))],
        "layouts of a 4,096-GPU sweep": ["sweep", "235b", "--gpus", "4096"],
        # absurd answers
        "GPU of 1e12 TiB": ["plan", "8b", "--gpu-memory", "1000000000000TiB"],
        "negative link bandwidth": ["plan", "8b", "--cluster", write(tmp, "neg.yaml", CLUSTER.format(bw=-450))],
        "infinite link bandwidth": ["plan", "8b", "--cluster", write(tmp, "inf.yaml", CLUSTER.format(bw=".inf"))],
        "group size 5": ["plan", "8b", "--quant", "int4", "--group-size", "5"],
        # accepted silently before
        "tie_word_embeddings as a string": ["plan", "--config", config(tmp, "tie", tie_word_embeddings="false")],
        "null where a number belongs": ["plan", "--config", config(tmp, "null", num_key_value_heads=None)],
        "duplicate JSON keys": ["plan", "--config", write(tmp, "dup.json", '{"hidden_size": 1, "hidden_size": 2}')],
        "duplicate YAML keys": ["plan", "8b", "--cluster", write(tmp, "dupkeys.yaml", CLUSTER.format(bw=450)
                                                                 + "nodes: 2\n")],
        "engine knob without --engine": ["plan", "8b", "--max-num-seqs", "8"],
        "duplicate flag": ["plan", "8b", "--tp", "2", "--tp", "4"],
        "junk argument to gpus": ["gpus", "junk"],
        "empty value": ["plan", "8b", "--gpu-memory", ""],
        "bare number of bytes": ["plan", "8b", "--gpu-memory", "80"],
        "underscored integer": ["plan", "8b", "--tp", "1_0"],
        "model and --config": ["plan", "8b", "--config", config(tmp, "both")],
        "--group-size without a group format": ["plan", "8b", "--group-size", "64"],
    }


CASES = [
    "config /dev/zero", "config FIFO", "config nested 100k deep", "config int of 5000 digits",
    "quantization_config of a wrong type", "file name too long", "calibration NaN",
    "calibration string where a number belongs", "calibration number of dots", "num_hidden_layers 1e9",
    "num_attention_heads 1e9", "huge --dp", "YAML alias bomb (workload)", "9-million-point sweep",
    "layouts of a 4,096-GPU sweep", "GPU of 1e12 TiB", "negative link bandwidth", "infinite link bandwidth",
    "group size 5", "tie_word_embeddings as a string", "null where a number belongs", "duplicate JSON keys",
    "duplicate YAML keys", "engine knob without --engine", "duplicate flag", "junk argument to gpus", "empty value",
    "bare number of bytes", "underscored integer", "model and --config", "--group-size without a group format"]


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> dict[str, list[str]]:
    return fixtures(tmp_path_factory.mktemp("hostile"))


def test_every_case_is_listed(hostile):
    assert sorted(hostile) == sorted(CASES)


@pytest.mark.parametrize("case", CASES)
def test_hostile_input_is_one_line_exit_2(hostile, case):
    proc = subprocess.run([EXE, *hostile[case]], capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, (proc.returncode, proc.stdout[-500:], proc.stderr[-2000:])
    assert len(lines) == 1 and lines[0].startswith("shardsim: error: "), proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
