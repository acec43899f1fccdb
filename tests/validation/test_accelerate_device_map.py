"""shardsim's ``--engine accelerate`` device map against transformers' own: the real Qwen3 / Qwen3-MoE model built on
the meta device exactly as ``from_pretrained`` builds it (``get_init_context``: load dtype, weights not yet tied),
then ``transformers.integrations.accelerate._get_device_map`` — the very call ``from_pretrained`` makes, with
``get_balanced_memory`` and ``infer_auto_device_map`` inside — must give the same device map, and the same bytes per
device summed from the real parameters and buffers."""

from __future__ import annotations

from functools import cache

import pytest

from shardsim.engines.accelerate import predict_device_map
from shardsim.presets import get_preset, preset_config
from shardsim.units import GB, GiB

torch = pytest.importorskip("torch")
pytest.importorskip("accelerate")
transformers = pytest.importorskip("transformers")
hf_acc = pytest.importorskip("transformers.integrations.accelerate")


@cache
def meta_model(name: str):
    """The model of preset ``name`` on the meta device, built inside ``from_pretrained``'s own init contexts."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING
    from transformers.utils.generic import ContextManagers

    cfg = dict(preset_config(name))
    config = transformers.AutoConfig.for_model(cfg.pop("model_type"), **cfg)
    cls = MODEL_FOR_CAUSAL_LM_MAPPING[type(config)]
    with ContextManagers(cls.get_init_context(torch.bfloat16, False, False, None)):
        return cls(config)


def real_device_bytes(model, device_map: dict) -> dict:
    """Bytes per device from the real tensors: every parameter and buffer (tied keys once) to its device_map entry."""
    tied = set(model.all_tied_weights_keys)
    out: dict = {}
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        if name in tied:
            continue
        parts = name.split(".")
        prefixes = [".".join(parts[:i]) for i in range(len(parts), -1, -1)]
        device = next(device_map[p] for p in prefixes if p in device_map)
        out[device] = out.get(device, 0) + tensor.numel() * tensor.element_size()
    return out


def gpus(n: int, size: int, cpu: int | None = 512 * GiB) -> dict:
    mem = {i: size for i in range(n)}
    if cpu is not None:
        mem["cpu"] = cpu
    return mem


CASES = [
    # (preset, device_map, max_memory, expect offload)
    ("0.6b", "auto", gpus(2, 10 * GiB), False),
    ("0.6b", "auto", gpus(3, 4 * GiB), False),
    ("0.6b", "auto", gpus(4, 300 * 10**6, cpu=400 * 10**6), True),     # embed on GPU 0, layers spill to cpu, disk
    ("0.6b", "auto", {0: 500 * 10**6, 1: 200 * 10**6}, True),           # no cpu key: straight to disk
    ("0.6b", "auto", {0: 600 * 10**6, 1: 300 * 10**6, "cpu": 10 * GiB}, True),  # the unit test's hand case
    ("0.6b", "auto", gpus(1, 80 * GiB), False),
    ("0.6b", "sequential", gpus(2, 80 * GiB), False),
    ("0.6b", "balanced_low_0", gpus(3, 80 * GiB), False),
    ("8b", "auto", gpus(2, 80 * GiB), False),
    ("8b", "auto", gpus(3, 24 * GiB), False),
    ("8b", "auto", gpus(4, 8 * GiB), False),
    ("8b", "auto", gpus(8, 80 * GiB), False),
    ("8b", "auto", gpus(2, 6 * GiB), True),
    ("8b", "balanced", {0: 20 * GB, 1: 5 * GB, 2: 30 * GB, "cpu": 64 * GB}, False),
    ("8b", "auto", {0: 8 * GiB, 1: 0, 2: 20 * GiB}, False),
    ("32b", "auto", gpus(4, 14 * GiB), True),
    ("32b", "auto", gpus(4, 24 * GiB), False),
    ("32b", "auto", gpus(8, 80 * GiB), False),
    ("32b", "auto", gpus(2, 24 * GiB, cpu=10 * GiB), True),            # cpu too small: disk too
    ("32b", "sequential", gpus(3, 16 * GiB), True),
    ("30b-a3b", "auto", gpus(2, 80 * GiB), False),
    ("30b-a3b", "auto", gpus(3, 40 * GiB), False),
    ("30b-a3b", "auto", gpus(4, 12 * GiB), True),
    ("235b", "auto", gpus(8, 80 * GiB), False),
    ("235b", "auto", gpus(4, 80 * GiB), True),
    ("235b", "auto", gpus(8, 141 * GB), False),
    ("235b", "balanced_low_0", gpus(8, 80 * GiB), False),
]


def test_the_reference_is_what_from_pretrained_calls():
    import transformers.modeling_utils as mu

    assert mu._get_device_map is hf_acc._get_device_map
    names = hf_acc._get_device_map.__code__.co_names
    assert "get_balanced_memory" in names and "infer_auto_device_map" in names


@pytest.mark.parametrize("name,mode,max_memory,offload", CASES, ids=lambda v: str(v)[:24])
def test_device_map_and_bytes_match_transformers(name, mode, max_memory, offload):
    model = meta_model(name)
    expected = hf_acc._get_device_map(model, mode, dict(max_memory), None)
    ours = predict_device_map(get_preset(name), "bf16", None, dict(max_memory), mode)
    assert ours.device_map == dict(expected)
    assert list(ours.device_map) == list(expected)  # the same order, too
    real = real_device_bytes(model, dict(expected))
    assert {d: b for d, b in ours.device_bytes.items() if b} == real
    assert bool(ours.offloaded) == offload


@pytest.mark.parametrize("name,n,free", [("0.6b", 1, 1 * GiB), ("8b", 1, 16 * GiB), ("8b", 2, 9 * GiB),
                                         ("30b-a3b", 4, 16 * GiB)])
def test_without_max_memory_the_unset_rules_match(name, n, free, monkeypatch):
    """No max_memory: transformers asks accelerate for the free memory (patched here to ``free`` per GPU and 64 GiB
    of RAM), then applies its 90 % rules; shardsim's ``given=False`` must apply the same."""
    found = {**{i: free for i in range(n)}, "cpu": 64 * GiB}
    real = hf_acc.accelerate_max_memory
    monkeypatch.setattr(hf_acc, "accelerate_max_memory", lambda m=None: dict(found) if m is None else real(m))
    model = meta_model(name)
    expected = hf_acc._get_device_map(model, "auto", None, None)
    ours = predict_device_map(get_preset(name), "bf16", None, dict(found), "auto", given=False)
    assert ours.device_map == dict(expected)



ACCELERATE_CASES = [
    ("8b", gpus(2, 80 * GiB)), ("8b", gpus(4, 8 * GiB)), ("32b", gpus(4, 24 * GiB)), ("32b", gpus(3, 16 * GiB)),
    ("30b-a3b", gpus(3, 40 * GiB)), ("235b", gpus(8, 80 * GiB)), ("8b", gpus(2, 6 * GiB)),
]


@pytest.mark.parametrize("name,max_memory", ACCELERATE_CASES, ids=[f"{n}-{len(m) - 1}gpu-{m[0] // GiB}" for n, m in ACCELERATE_CASES])
def test_accelerate_infer_auto_device_map_gives_the_same_placement(name, max_memory):
    """accelerate's own ``infer_auto_device_map`` (accelerate/utils/modeling.py@v1.15.0) on the meta model, given the
    per-GPU budgets transformers' balancing yields (shardsim's ``report.max_memory``) and the decoder layer kept
    whole: the same placement as shardsim's. (Untied models: with a tied lm_head transformers 5 places it beside
    embed_tokens itself, which the standalone function does not do; the transformers test above covers that. The
    standalone ``get_balanced_memory`` reserves 1.25 × the mean leaf module where transformers 5 reserves the largest
    leaf parameter, so the budgets come from shardsim's, which match transformers'.)"""
    import accelerate

    model = meta_model(name)
    predicted = predict_device_map(get_preset(name), "bf16", None, dict(max_memory), "auto")
    expected = accelerate.infer_auto_device_map(model, max_memory=dict(predicted.max_memory),
                                                no_split_module_classes=list(model._no_split_modules),
                                                dtype=torch.bfloat16)
    assert predicted.device_map == dict(expected)
