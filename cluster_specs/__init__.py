"""Data: the GPU catalog (gpus.yaml) and one YAML file per cluster, installed as ``shardsim.cluster_specs``.

May import: nothing (the data is read by the hardware catalog).
"""
