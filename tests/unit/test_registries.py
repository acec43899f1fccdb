"""Engines, training frameworks and review evaluators are dispatched through registries: adding one is a module and
a registry line, and every name a command's help lists is in its registry."""

from __future__ import annotations

import json
import sys
import textwrap

from shardsim.cli import main
from shardsim.engines.registry import ENGINE_MODULES, engine_names, get_engine

TOY_ENGINE = '''
"""A toy engine for the registry test: it takes half the card and keeps the weights."""
from pydantic import BaseModel, ConfigDict

from shardsim.engines.common import EngineRankReport, EngineReport, rank_weights
from shardsim.engines.registry import Engine


class ToyKnobs(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    gpu_memory_utilization: float = 0.5


def predict(request):
    budget = int(request.hardware.capacity_bytes * request.engine.knobs.gpu_memory_utilization)
    ranks = [EngineRankReport(rank=r.rank, layers=r.layers, model_loading_bytes=r.weight_bytes,
                              available_kv_cache_bytes=budget - r.weight_bytes)
             for r in rank_weights(request.model, request.layout, request.workload.dtype, request.quant)]
    starts = all(r.available_kv_cache_bytes > 0 for r in ranks)
    return EngineReport(engine="toy", version="toy 1", knobs=request.engine.given(), ranks=ranks, starts=starts,
                        refusal=None if starts else "the weights take more than the budget")


ENGINE = Engine("toy", ToyKnobs, predict)
'''


def test_a_toy_engine_is_one_module_and_one_registry_line(tmp_path, monkeypatch, capsys):
    (tmp_path / "toy_engine.py").write_text(textwrap.dedent(TOY_ENGINE))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(ENGINE_MODULES, "toy", "toy_engine")          # the one registry line
    assert main(["plan", "8b", "--engine", "toy", "--gpu-memory-utilization", "0.6", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    capacity = out["cluster"]["capacity_bytes"]
    # 8B in bf16 on one GPU: the published 16,381,470,720 B (untied lm_head counted), budget 0.6 × the card
    rank = out["engine"]["ranks"][0]
    assert rank["model_loading_bytes"] == 16_381_470_720
    assert rank["available_kv_cache_bytes"] == int(capacity * 0.6) - 16_381_470_720
    assert out["engine"]["starts"] is True and out["engine"]["knobs"] == {"gpu_memory_utilization": 0.6}
    # a knob the toy does not read is refused with the engines that do
    assert main(["plan", "8b", "--engine", "toy", "--max-num-seqs", "8"]) == 2
    assert "it is a knob of --engine vllm" in capsys.readouterr().err
    sys.modules.pop("toy_engine", None)


def test_every_engine_the_help_lists_is_registered():
    from shardsim.cli.options import PANELS

    engines_heading = next(h for h in PANELS if h.startswith("Engine:"))
    listed = [name.strip(" ,") for name in engines_heading.split("--engine", 1)[1].split(",")[0].split("|")]
    assert listed == list(engine_names())
    for name in listed:
        engine = get_engine(name)
        assert engine.name == name and engine.knob_names()


def test_every_review_engine_is_an_evaluator():
    from shardsim.capacity.evaluators import EVALUATORS
    from shardsim.capacity.workload import WorkloadSpec

    assert set(EVALUATORS) == set(WorkloadSpec.model_fields["engine"].annotation.__args__)
