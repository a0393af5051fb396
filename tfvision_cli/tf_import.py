"""Importing TensorFlow lazily and quietly: the only place that does `import tensorflow`."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager

_verbose = False


def set_verbose(verbose: bool) -> None:
    """--debug: let TensorFlow's C++ logs through."""
    global _verbose
    _verbose = verbose


@contextmanager
def quiet_stderr():
    # TensorFlow's C++ runtime writes to fd 2 directly while it loads (CUDA probing, CPU
    # feature notes, absl's "log messages before InitializeLog" banner). Python exceptions
    # are unaffected: they propagate after fd 2 is restored.
    if _verbose:
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def tf():
    """The tensorflow module, imported once with its log noise hidden."""
    if "tensorflow" in sys.modules and hasattr(sys.modules["tensorflow"], "function"):
        return sys.modules["tensorflow"]
    if not _verbose:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with quiet_stderr():
        import keras  # noqa: F401  (keras 3 registers its TF backend here)
        import tensorflow

        # The first device query probes CUDA, which complains on machines without a driver.
        tensorflow.config.list_physical_devices("GPU")
    if not _verbose:
        import logging

        tensorflow.get_logger().setLevel(logging.ERROR)
        logging.getLogger("absl").setLevel(logging.ERROR)
    return tensorflow


def tfds():
    """tensorflow_datasets, imported after TensorFlow is (quietly)."""
    tf()
    with quiet_stderr():
        import tensorflow_datasets
    return tensorflow_datasets
