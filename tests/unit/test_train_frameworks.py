"""The registry of training frameworks: a framework is one record plus one registry line, and the planner, the
refusals and the verdict reach every framework through it."""

import re
import typing

import pytest

from shardsim.core.layout import Layout
from shardsim.core.tensors import parameter_count
from shardsim.core.train import frameworks
from shardsim.core.train.frameworks import FRAMEWORKS
from shardsim.core.train.frameworks.base import Framework, StateBytes
from shardsim.core.train.plan import plan_train
from shardsim.core.train.setup import TrainSetup, check_setup
from shardsim.errors import ShardsimError
from shardsim.presets import get_preset
from shardsim.render.train_text import strategy_text

GiB = 1 << 30


def _fp32_no_optimizer(p, s, sharding):
    """A toy framework: every rank keeps the trained parameters in fp32 and nothing else (no gradients kept, no
    optimizer, no master copy, no buffers, no step transient)."""
    trained = p.lora if s.lora else p.total
    return StateBytes(4 * trained, 0, 0, 0, 0, 0)


TOY = Framework("toy", _fp32_no_optimizer, lambda s, layout: f"Toy fp32 × {layout.dp}")


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setitem(FRAMEWORKS, TOY.name, TOY)   # the one registry line
    return TOY


def test_a_registered_framework_plans_through_the_registry(toy):
    spec = get_preset("0.6b")
    report = plan_train(spec, Layout(dp=2), TrainSetup(framework="toy", seq_len=1024), 80 * GiB)
    # Qwen3-0.6B: 596,049,920 parameters (the tied embedding counted once), every one on each rank (tp = pp = 1)
    n = parameter_count(spec)
    assert n == 596_049_920
    ddp = plan_train(spec, Layout(dp=2), TrainSetup(framework="ddp", seq_len=1024), 80 * GiB)
    for mine, theirs in zip(report.ranks, ddp.ranks, strict=True):
        b = mine.bytes
        assert b.weights == 4 * n == 2_384_199_680
        assert (b.master_weights, b.grads, b.optimizer, b.buffers) == (0, 0, 0, 0)
        # the transformers model's activations, as for DDP; the peak is the states plus them (no step transient)
        assert b.activations == theirs.bytes.activations
        assert b.peak_allocated == 4 * n + b.activations
        assert mine.host_bytes == 0
    assert report.fits and report.alternative is None
    assert strategy_text(report) == "Toy fp32 × 2"


def test_a_registered_framework_is_accepted_and_listed(toy):
    spec = get_preset("0.6b")
    check_setup(spec, Layout(), TrainSetup(framework="toy"))
    with pytest.raises(ShardsimError) as refused:
        check_setup(spec, Layout(), TrainSetup(framework="nope"))
    assert str(refused.value) == "--framework 'nope' is not known; accepted: deepspeed, fsdp, megatron, ddp, torch, toy"
    # the generic rules ask the record's facts: no context parallelism, no offload, LoRA allowed
    with pytest.raises(ShardsimError, match="--cp is Megatron's"):
        check_setup(spec, Layout(cp=2), TrainSetup(framework="toy"))
    with pytest.raises(ShardsimError, match="--offload-optimizer is modelled for"):
        check_setup(spec, Layout(), TrainSetup(framework="toy", offload_optimizer=True, host_memory_bytes=GiB))
    lora = plan_train(spec, Layout(), TrainSetup(framework="toy", lora_rank=16, seq_len=512), 80 * GiB)
    assert lora.ranks[0].bytes.weights == 4 * 16 * 22_528 * 28   # r · (in + out) summed over a layer, 28 layers


def test_the_registry_order_is_the_accepted_order():
    from shardsim.core.train.setup import FRAMEWORKS as NAMES

    assert NAMES == tuple(FRAMEWORKS) == ("deepspeed", "fsdp", "megatron", "ddp", "torch")
    assert all(name == fw.name for name, fw in FRAMEWORKS.items())
    assert frameworks.FRAMEWORKS is FRAMEWORKS


def test_every_framework_the_help_lists_is_registered():
    from shardsim.cli.options import FrameworkOpt

    help_text = typing.get_args(FrameworkOpt)[1].help
    default = re.search(r"\[(\w+)\]", help_text)
    listed = re.sub(r"\\?\[.*$", "", help_text).split(":")[-1]
    names = [w for w in re.split(r"[\s|,]+", listed) if w]
    assert names, help_text
    assert set(names) <= set(FRAMEWORKS), f"{help_text!r} lists a framework the registry lacks"
    assert default is None or default.group(1) in FRAMEWORKS
