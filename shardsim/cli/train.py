"""``shardsim plan MODEL --train``: training memory of every GPU, its verdict, and the cheapest strategy that fits."""

from __future__ import annotations

from typing import Any, Optional

from shardsim.cli import common
from shardsim.errors import ShardsimError

INFERENCE_ONLY = ("context", "engine", "kv_dtype", "block_size", "max_num_batched_tokens", "chunked_prefill_size",
                  "pp_split")
"""Options of a serving plan that mean nothing to a training one."""


def train_setup(options: dict[str, Any]) -> Any:
    """The TrainSetup from the command's options (None: the default)."""
    from shardsim.core.train.setup import TrainSetup
    from shardsim.units import parse_size

    names = {"framework": "framework", "zero": "zero", "fsdp": "fsdp", "cp": "cp",
             "sequence_parallel": "sequence_parallel", "distributed_optimizer": "distributed_optimizer",
             "micro_batch": "micro_batch", "seq_len": "seq_len", "grad_accum": "grad_accum",
             "recompute": "recompute", "optimizer": "optimizer", "lora_rank": "lora_rank", "qlora": "qlora",
             "offload_optimizer": "offload_optimizer", "offload_params": "offload_params",
             "schedule": "schedule", "virtual_stages": "virtual_stages", "capacity_factor": "capacity_factor"}
    values = {field: options[opt] for opt, field in names.items()
              if options.get(opt) is not None and options.get(opt) is not False}
    if options.get("host_memory") is not None:
        values["host_memory_bytes"] = parse_size(options["host_memory"])
    if options.get("eager_attention"):
        values["flash_attention"] = False
    return TrainSetup(**values)


def refuse_mixed(train: bool, serving: dict[str, Any], training: dict[str, Any]) -> None:
    """Serving options with --train, or training options without it, do nothing: refused, naming the option."""
    if train:
        for name in INFERENCE_ONLY:
            if serving.get(name) is not None and serving.get(name) is not False:
                raise ShardsimError(f"--{name.replace('_', '-')} does nothing with --train; it is a serving option")
    else:
        for name, value in training.items():
            if value is not None and value is not False:
                raise ShardsimError(f"--{name.replace('_', '-')} does nothing without --train; it is a training option")


def plan_train_command(model: Optional[str], config: Optional[str], layout_args: dict, hardware_args: dict,
                       options: dict[str, Any], as_json: bool) -> None:
    from shardsim.core.layout import Layout
    from shardsim.core.train.plan import plan_train
    from shardsim.presets import resolve_model

    spec = resolve_model(model, config)
    etp = options.pop("etp", None)
    layout = Layout(tp=layout_args["tp"], pp=layout_args["pp"], dp=layout_args["dp"], ep=layout_args["ep"])
    if options.get("grad_accum") is None and layout.pp > 1:
        options["grad_accum"] = layout.pp   # a pipeline step of fewer micro-batches than stages leaves stages idle
    setup = train_setup(options)
    if etp is not None and etp != layout.etp:
        raise ShardsimError(f"--etp {etp} is not what the layout gives: experts split over tp / ep = {layout.etp} "
                            "ranks here (accepted: that value, or leave --etp out)")
    world = layout.tp * layout.pp * layout.dp * setup.cp
    hw = common.hardware(hardware_args["cluster"], hardware_args["gpu"], hardware_args["gpu_memory"], world,
                         None, hardware_args["interconnect"])
    report = plan_train(spec, layout, setup, hw.capacity_bytes, fabric=hw.fabric)
    if as_json:
        return common.print_json(report.to_dict())
    from shardsim.render.train_text import render_train

    render_train(report, common.console(), hw.cluster.gpu.name)


TRAIN_OPTIONS = ("framework", "fsdp", "cp", "etp", "sequence_parallel", "distributed_optimizer", "micro_batch", "seq_len",
                 "grad_accum", "recompute", "optimizer", "lora_rank", "qlora", "offload_optimizer", "offload_params",
                 "host_memory", "schedule", "virtual_stages", "capacity_factor", "eager_attention")


def dispatch_train(args: dict[str, Any]) -> bool:
    """``plan``'s options: refuse the ones that mean nothing in this mode; with --train, plan training (True)."""
    training = {name: args[name] for name in TRAIN_OPTIONS}
    refuse_mixed(args["train"], {name: args[name] for name in INFERENCE_ONLY}, training)
    if not args["train"]:
        return False
    if args["batch"] != 1:
        raise ShardsimError("--batch does nothing with --train; use --micro-batch")
    plan_train_command(args["model"], args["config"], {k: args[k] for k in ("tp", "pp", "dp", "ep")},
                       {k: args[k] for k in ("cluster", "gpu", "gpu_memory", "interconnect")},
                       {**training, "zero": args["zero"]}, args["as_json"])
    return True
