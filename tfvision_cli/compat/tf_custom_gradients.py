"""Memory that TensorFlow keeps after a model is gone: custom gradients in graph mode.

Every trace of a train step under a `tf.distribute` strategy goes through
`ReplicaContext.all_reduce`, a `@tf.custom_gradient`. In graph mode TensorFlow registers that
gradient in its global gradient registry under a fresh name ("CustomGradient-<uid>") and never
removes it; the registered closure holds the traced graph, so each training in one process keeps
its train step's graphs (about 12,000 Python objects and 15 MB a run for a small CNN) for ever
(tensorflow/tensorflow#97697 and #80895, open; #27492 for TF 1). Only a process that trains
many models (`tfvision tune`) notices.

`released()` drops the entries registered inside its block. Call it only around work whose
graphs are dead at its end (a whole training whose model is discarded): a gradient looked up
later, for a graph traced inside the block, would be missing. Remove this module once
benchmarks/tune_memory.py shows flat memory without it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

_PREFIX = "CustomGradient-"


def _registry() -> dict | None:
    from tensorflow.python.framework import ops

    registry = getattr(getattr(ops, "_gradient_registry", None), "_registry", None)
    return registry if isinstance(registry, dict) else None  # another TF: leave it be


@contextlib.contextmanager
def released() -> Iterator[None]:
    """Forget the custom gradients registered inside the block, once it ends."""
    registry = _registry()
    before = set(registry) if registry is not None else set()
    try:
        yield
    finally:
        if registry is not None:
            for name in [n for n in registry if n.startswith(_PREFIX) and n not in before]:
                del registry[name]
