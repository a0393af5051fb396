"""Choosing a tf.distribute strategy: the only module that touches devices.

auto: TPUStrategy when a TPU is configured (TPU_NAME or a Cloud TPU VM), MultiWorkerMirrored
when TF_CONFIG lists several workers, Mirrored on several GPUs, else the default strategy on
the one device there is. `--strategy` overrides.

TFVISION_CPU_REPLICAS=N splits the CPU into N logical devices, so the mirrored path can be
exercised on a machine without GPUs (tests do this).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass

from tfvision_cli.errors import TfvisionError, UsageError


@dataclass
class Placement:
    strategy: object  # tf.distribute.Strategy
    kind: str  # "default", "mirrored", "multi-worker", "tpu"
    replicas: int
    devices: list[str]
    worker_index: int = 0
    num_workers: int = 1

    @property
    def is_chief(self) -> bool:
        return self.worker_index == 0

    def describe(self) -> str:
        where = ", ".join(self.devices)
        if self.num_workers > 1:
            return (
                f"{self.kind}: worker {self.worker_index} of {self.num_workers}, "
                f"{self.replicas} replicas ({where})"
            )
        return f"{self.kind}: {self.replicas} replica{'s' * (self.replicas > 1)} ({where})"


def _tf_config() -> dict:
    """TF_CONFIG, checked: {"cluster": {TYPE: ["host:port", ...]}, "task": {"type": TYPE,
    "index": N}}; anything else is a UsageError saying what is wrong (exit 2)."""
    raw = os.environ.get("TF_CONFIG")
    if not raw:
        return {}
    try:
        cfg = json.loads(raw)
    except json.JSONDecodeError as e:
        raise UsageError(f"TF_CONFIG is not valid JSON: {e}") from None
    if not isinstance(cfg, dict):
        raise UsageError(f"TF_CONFIG must be a JSON object, not {type(cfg).__name__}")
    cluster, task = cfg.get("cluster", {}), cfg.get("task", {})
    if not isinstance(cluster, dict) or not all(
        isinstance(k, str) and isinstance(v, list) and all(isinstance(a, str) for a in v)
        for k, v in cluster.items()
    ):
        raise UsageError('TF_CONFIG\'s "cluster" must map task types to lists of "host:port"')
    if not isinstance(task, dict):
        raise UsageError('TF_CONFIG\'s "task" must be an object with "type" and "index"')
    kind, index = task.get("type", "worker"), task.get("index", 0)
    if not isinstance(index, int) or isinstance(index, bool) or index < 0:
        raise UsageError(f'TF_CONFIG\'s task "index" must be a whole number >= 0, not {index!r}')
    if cluster and (kind not in cluster or index >= len(cluster[kind])):
        raise UsageError(
            f"TF_CONFIG's task {kind!r} {index} is not in its cluster "
            f"({', '.join(f'{k}: {len(v)}' for k, v in cluster.items())})"
        )
    return cfg


def _num_workers(cfg: dict) -> int:
    cluster = cfg.get("cluster", {})
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def cluster_size() -> int:
    """The number of workers TF_CONFIG lists (0 without TF_CONFIG)."""
    return _num_workers(_tf_config())


def _split_cpu(tf) -> None:
    n = int(os.environ.get("TFVISION_CPU_REPLICAS", "0") or 0)
    if n > 1 and not tf.config.list_physical_devices("GPU"):
        cpu = tf.config.list_physical_devices("CPU")[0]
        # RuntimeError: the devices are already initialised in this process
        with contextlib.suppress(RuntimeError):
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(n)]
            )


def choose_strategy(name: str = "auto") -> Placement:
    """The strategy for `name` (auto, default, mirrored, multi-worker, tpu)."""
    from tfvision_cli.tf_import import tf as import_tf

    tf = import_tf()
    cfg = _tf_config()
    if name == "auto":
        if os.environ.get("TPU_NAME") or os.path.exists("/dev/accel0"):
            name = "tpu"
        elif _num_workers(cfg) > 1:
            name = "multi-worker"
        elif (
            len(tf.config.list_physical_devices("GPU")) > 1
            or int(os.environ.get("TFVISION_CPU_REPLICAS", "0") or 0) > 1
        ):
            name = "mirrored"
        else:
            name = "default"
    if name == "tpu":
        try:
            resolver = tf.distribute.cluster_resolver.TPUClusterResolver(
                tpu=os.environ.get("TPU_NAME", "")
            )
            tf.config.experimental_connect_to_cluster(resolver)
            tf.tpu.experimental.initialize_tpu_system(resolver)
            strategy = tf.distribute.TPUStrategy(resolver)
        except (ValueError, RuntimeError, tf.errors.OpError) as e:
            raise TfvisionError(f"no TPU available: {str(e).splitlines()[0]}") from None
        return Placement(
            strategy,
            "tpu",
            strategy.num_replicas_in_sync,
            [d.name for d in tf.config.list_logical_devices("TPU")],
        )
    if name == "multi-worker":
        if _num_workers(cfg) < 1:
            raise UsageError("--strategy multi-worker needs TF_CONFIG with a cluster of workers")
        strategy = tf.distribute.MultiWorkerMirroredStrategy()
        task = cfg.get("task", {})
        index = int(task.get("index", 0))
        # Worker 0 is the chief, unless the cluster names a separate "chief" task.
        if "chief" in cfg.get("cluster", {}):
            index = 0 if task.get("type") == "chief" else index + 1
        return Placement(
            strategy,
            "multi-worker",
            strategy.num_replicas_in_sync,
            [d.name for d in tf.config.list_logical_devices() if d.device_type in ("GPU", "CPU")][
                :1
            ],
            worker_index=index,
            num_workers=_num_workers(cfg),
        )
    if name == "mirrored":
        _split_cpu(tf)
        gpus = tf.config.list_logical_devices("GPU")
        devices = [d.name for d in (gpus or tf.config.list_logical_devices("CPU"))]
        strategy = tf.distribute.MirroredStrategy(
            devices=devices,
            # NCCL is for GPUs; CPU replicas reduce through the host.
            cross_device_ops=None if gpus else tf.distribute.ReductionToOneDevice(),
        )
        return Placement(strategy, "mirrored", strategy.num_replicas_in_sync, devices)
    gpus = tf.config.list_logical_devices("GPU")
    device = gpus[0].name if gpus else tf.config.list_logical_devices("CPU")[0].name
    return Placement(tf.distribute.get_strategy(), "default", 1, [device])
