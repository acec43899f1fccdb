"""``shardsim train MODEL``: training memory of every GPU, its verdict, and the cheapest strategy that fits.
``shardsim plan MODEL --train …`` is the same command (``cli.main`` rewrites it)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from shardsim.cli import build, common
from shardsim.cli.options import (
    CapacityOpt,
    ClusterOpt,
    ConfigOpt,
    CpOpt,
    DistOptOpt,
    DpOpt,
    EagerAttnOpt,
    EpOpt,
    EtpOpt,
    FrameworkOpt,
    FsdpOpt,
    GpuMemOpt,
    GpuOpt,
    GradAccumOpt,
    HostMemOpt,
    InterconnectOpt,
    JsonOpt,
    LoraRankOpt,
    MicroBatchOpt,
    ModelArg,
    OffloadOptOpt,
    OffloadParamsOpt,
    OptimizerOpt,
    PpOpt,
    QloraOpt,
    RecomputeOpt,
    ScheduleOpt,
    SeqLenOpt,
    SeqParOpt,
    TpOpt,
    VirtualOpt,
    ZeroOpt,
)

EXAMPLES = """Training memory of every GPU for MODEL (weights, master, gradients, optimizer, activations,
runtime) under DeepSpeed ZeRO, FSDP2, Megatron, DDP or torch-native TP / pipelining; the verdict, the largest
micro-batch and sequence, and the cheapest strategy of the framework that fits.

\b
Examples:
  shardsim train 14b --zero 3 --dp 8 --seq-len 4096
  shardsim train 32b --framework megatron --tp 4 --pp 2 --dp 2 \\
      --sequence-parallel --distributed-optimizer
  shardsim train 8b --framework fsdp --dp 4 --recompute full --lora-rank 16
  shardsim train 30b-a3b --framework megatron --tp 2 --ep 4 --dp 4 --cp 2 --json
  shardsim train next-80b-a3b --zero 3 --dp 8 --gpu h100 --seq-len 2048
(plan MODEL --train … is the same command.)"""


@dataclass(frozen=True)
class SetupOptions:
    """The training choices beyond the layout (``core.train.setup.TrainSetup`` by field name; None: default)."""

    framework: Optional[str] = None
    zero: int = 0
    fsdp: Optional[str] = None
    sequence_parallel: bool = False
    distributed_optimizer: bool = False
    micro_batch: Optional[int] = None
    seq_len: Optional[int] = None
    grad_accum: Optional[int] = None
    recompute: Optional[str] = None
    optimizer: Optional[str] = None
    lora_rank: Optional[int] = None
    qlora: bool = False
    offload_optimizer: bool = False
    offload_params: bool = False
    host_memory: Optional[str] = None
    schedule: Optional[str] = None
    virtual_stages: Optional[int] = None
    capacity_factor: Optional[float] = None
    eager_attention: bool = False

    def setup(self, layout):
        """The TrainSetup; a pipeline step defaults to pp micro-batches (fewer leave stages idle)."""
        from dataclasses import asdict

        from shardsim.core.train.setup import TrainSetup
        from shardsim.units import parse_size

        if self.lora_rank is not None and self.lora_rank < 1:   # 0 would silently plan full fine-tuning
            from shardsim.errors import ShardsimError

            raise ShardsimError(f"--lora-rank {self.lora_rank} trains no adapter; give a rank ≥ 1 (e.g. 16), or leave "
                                "--lora-rank out for full fine-tuning")
        values = {k: v for k, v in asdict(self).items() if v is not None and v is not False
                  and k not in ("host_memory", "eager_attention")}
        if self.grad_accum is None and layout.pp > 1:
            values["grad_accum"] = layout.pp
        if self.host_memory is not None:
            values["host_memory_bytes"] = parse_size(self.host_memory)
        if self.eager_attention:
            values["flash_attention"] = False
        return TrainSetup(**values)


def train_request(model: build.ModelOptions, layout: build.LayoutOptions, setup: SetupOptions,
                  hardware: build.HardwareOptions):
    """The ``TrainRequest``: model, layout (cp and etp included), setup, then hardware."""
    from shardsim.core.layout import Layout
    from shardsim.core.requests import TrainRequest
    from shardsim.errors import ShardsimError

    spec = model.spec()
    lay = Layout(tp=layout.tp, pp=layout.pp, dp=layout.dp, ep=layout.ep, cp=layout.cp)
    train_setup = setup.setup(lay)
    if layout.etp is not None and layout.etp != lay.etp:
        raise ShardsimError(f"--etp {layout.etp} is not what the layout gives: experts split over tp / ep = {lay.etp} "
                            "ranks here (accepted: that value, or leave --etp out)")
    hw = hardware.hardware(lay.world_size, lay)
    cluster_host = getattr(hw.cluster, "host_memory_bytes", None)
    if train_setup.host_memory_bytes is None and cluster_host:   # the cluster spec's host memory per node
        train_setup = train_setup.model_copy(update={"host_memory_bytes": cluster_host})
    return TrainRequest(spec, lay, train_setup, hw)


def train(
    model: ModelArg = None, config: ConfigOpt = None,
    tp: TpOpt = 1, pp: PpOpt = 1, dp: DpOpt = 1, ep: EpOpt = 1, cp: CpOpt = None, etp: EtpOpt = None,
    framework: FrameworkOpt = None, zero: ZeroOpt = 0, fsdp: FsdpOpt = None,
    sequence_parallel: SeqParOpt = False, distributed_optimizer: DistOptOpt = False,
    micro_batch: MicroBatchOpt = None, seq_len: SeqLenOpt = None, grad_accum: GradAccumOpt = None,
    recompute: RecomputeOpt = None, optimizer: OptimizerOpt = None, eager_attention: EagerAttnOpt = False,
    lora_rank: LoraRankOpt = None, qlora: QloraOpt = False,
    offload_optimizer: OffloadOptOpt = False, offload_params: OffloadParamsOpt = False, host_memory: HostMemOpt = None,
    schedule: ScheduleOpt = None, virtual_stages: VirtualOpt = None, capacity_factor: CapacityOpt = None,
    cluster: ClusterOpt = None, gpu: GpuOpt = None, gpu_memory: GpuMemOpt = None, interconnect: InterconnectOpt = None,
    as_json: JsonOpt = False,
) -> None:
    request = train_request(
        build.ModelOptions(model, config),
        build.LayoutOptions(tp, pp, dp, ep, cp=1 if cp is None else cp, etp=etp),
        SetupOptions(framework, zero, fsdp, sequence_parallel, distributed_optimizer, micro_batch, seq_len,
                     grad_accum, recompute, optimizer, lora_rank, qlora, offload_optimizer, offload_params,
                     host_memory, schedule, virtual_stages, capacity_factor, eager_attention),
        build.HardwareOptions(cluster, gpu, gpu_memory, interconnect),
    )
    run_train(request, as_json)


train.__doc__ = EXAMPLES


def run_train(request, as_json: bool) -> None:
    from shardsim.core.train.plan import plan_train

    hw = request.hardware
    report = plan_train(request.model, request.layout, request.setup, hw.capacity_bytes, fabric=hw.fabric)
    if as_json:
        return common.print_json(report.to_dict())
    from shardsim.render.train_text import render_train

    render_train(report, common.console(), hw.gpu_name)


def register(app) -> None:
    from shardsim.cli.help import GroupedCommand

    app.command(help=EXAMPLES, cls=GroupedCommand)(train)
