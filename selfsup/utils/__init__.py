"""The bottom layer: small utilities every other package may use, importing nothing of selfsup above.

errors (exit-code exceptions), registry (name -> builder), runtime (device, seeds, run folder),
checkpoint (atomic safetensors/JSON I/O), distributed (torchrun/DDP context and collectives),
monitor (collapse statistics and watches), knn (the weighted kNN classifier).
"""
