"""Per-framework validation code: transformers' native TP/EP and DeepSpeed ZeRO-3 inference (``hf_tp``, ``zero3``:
the runners of ``shardsim.launch.serve.registry``), DeepSpeed ZeRO, FSDP2 through accelerate, torch-native TP and
pipelining training (``train_ds``, ``train_fsdp``, ``train_tp``, ``train_pp``: the runners of
``shardsim.launch.train.registry``).

May import: shardsim.launch, shardsim.core (and torch, transformers, DeepSpeed).
"""
