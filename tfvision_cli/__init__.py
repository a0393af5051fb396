"""tfvision: train, evaluate and ship image classifiers with TensorFlow/Keras."""

import os as _os

__version__ = "0.1.0"

# oneDNN's kernels, which TensorFlow turns on by itself only on CPUs with AVX-512 class
# features: on an AVX2 CPU they train the default net ~19% faster, deterministically
# (benchmarks/RESULTS.md). Set before anything imports TensorFlow, unless the user chose
# (TF_ENABLE_ONEDNN_OPTS=0 keeps them off), and not in a multi-worker cluster (TF_CONFIG): a
# worker evaluates empty batches at the end of a split, and oneDNN's Conv2D gives an empty
# batch its input's shape (TensorFlow 2.21: [0, 28, 28, 1] in, the same out), which the next
# layer rejects. TFVISION_ONEDNN=default marks the setting as tfvision's, not the user's, for
# the processes tfvision starts (a cluster's workers).
if "TF_ENABLE_ONEDNN_OPTS" not in _os.environ or _os.environ.get("TFVISION_ONEDNN") == "default":
    if _os.environ.get("TF_CONFIG"):
        # off, not TensorFlow's default: on CPUs with AVX-512 class features that default is on
        _os.environ["TF_ENABLE_ONEDNN_OPTS"] = "0"
    else:
        _os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1"
    _os.environ["TFVISION_ONEDNN"] = "default"
