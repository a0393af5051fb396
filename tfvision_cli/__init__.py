"""tfvision: train, evaluate and ship image classifiers with TensorFlow/Keras."""

import os as _os

__version__ = "0.1.0"

# oneDNN's convolutions, which TensorFlow turns on by itself only on CPUs with AVX-512 class
# features: on an AVX2 CPU they train the default net ~19% faster, deterministically
# (benchmarks/RESULTS.md). Set before anything imports TensorFlow; TF_ENABLE_ONEDNN_OPTS=0
# keeps them off.
_os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")
