"""The tensor inventories of the parts a plain Qwen3 decoder does not have, one module per part: Gated-DeltaNet
(linear attention) layers and the vision tower (the MTP head reuses the decoder layer, ``core.tensors.mtp_tensors``). ``core.tensors`` assembles them into the checkpoint's
inventory with the shard rules; every shape is a formula of the config, cited to the transformers modeling file.

May import: shardsim.core, shardsim.units, shardsim.errors.
"""
