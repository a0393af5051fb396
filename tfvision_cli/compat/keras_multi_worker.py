"""Keras 3's fit()/evaluate() under MultiWorkerMirroredStrategy.

Keras 3.15 with TensorFlow 2.21 fails there in two places (keras-team/keras#20585, open; the
same failure as tensorflow/tensorflow#72388, closed without a fix in Keras):
1. fit() builds the model from its first batch, which it first reduces across workers eagerly:
   MultiWorkerMirroredStrategy cannot, "Attempt to convert a value (PerReplica". The local shard
   of that batch has every shape the build needs.
2. Each step averages the per-replica logs (scalars) with `strategy.reduce("MEAN", v, axis=0)`:
   "Invalid reduction dimension 0 for input with 0 dimensions". A scalar is averaged across
   replicas with axis=None.
Remove this module once Keras runs tests/test_cluster.py without it.
"""

from __future__ import annotations

import contextlib

from tfvision_cli.errors import TfvisionError

TESTED = ((3, 15), (3, 16))  # [from, to): the Keras versions tests/test_cluster.py passed with


def _version() -> tuple[int, int]:
    import keras

    major, minor = (int(p) for p in keras.__version__.split(".")[:2])
    return major, minor


@contextlib.contextmanager
def multi_worker_fit(strategy):
    """Within the block, Keras's TensorFlow trainer works under MultiWorkerMirroredStrategy
    (a no-op for any other strategy). Refuses Keras versions it was not tested with."""
    from keras.src.backend.tensorflow import trainer as tf_trainer

    if not tf_trainer._collective_all_reduce_multi_worker(strategy):
        yield
        return
    low, high = TESTED
    if not low <= _version() < high:
        import keras

        raise TfvisionError(
            f"multi-worker training is tested with Keras {low[0]}.{low[1]} only (this is "
            f"{keras.__version__}): tfvision patches a Keras bug there (keras-team/keras#20585)",
            hint="install the Keras version in tfvision's pyproject.toml",
        )
    saved = tf_trainer.reduce_per_replica, tf_trainer.TensorFlowTrainer._maybe_symbolic_build
    tf_trainer.reduce_per_replica = _reduce_per_replica(saved[0])
    tf_trainer.TensorFlowTrainer._maybe_symbolic_build = _maybe_symbolic_build(saved[1])
    try:
        yield
    finally:
        tf_trainer.reduce_per_replica, tf_trainer.TensorFlowTrainer._maybe_symbolic_build = saved


def _reduce_per_replica(original):
    from keras import tree
    from keras.src.backend.tensorflow import trainer as tf_trainer

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and tf_trainer._collective_all_reduce_multi_worker(
            strategy
        ):
            local = [strategy.experimental_local_results(v)[0] for v in tree.flatten(values)]
            if all(v.shape.rank == 0 for v in local):
                return tree.map_structure(lambda v: strategy.reduce("MEAN", v, axis=None), values)
        return original(values, strategy, reduction)

    return reduce_per_replica


def _maybe_symbolic_build(original):
    from keras import tree
    from keras.src.backend.tensorflow import trainer as tf_trainer

    from tfvision_cli.tf_import import tf as import_tf

    tf = import_tf()

    def local(strategy, v):
        if isinstance(v, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(v)[0]
        return v

    def build(self, iterator=None, data_batch=None):
        strategy = self.distribute_strategy
        if iterator is not None and tf_trainer._collective_all_reduce_multi_worker(strategy):
            for _, _, it in iterator:
                data_batch = tree.map_structure(lambda v: local(strategy, v), next(it))
                break
            iterator = None
        return original(self, iterator=iterator, data_batch=data_batch)

    return build
