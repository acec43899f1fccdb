"""Validation backends other than shardsim's own torch modules: transformers' native TP/EP, DeepSpeed ZeRO-3.

May import: shardsim.launch, shardsim.core (and torch, transformers, DeepSpeed).
"""
