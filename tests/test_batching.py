"""serve's batcher on its own, with a model stand-in: merging, rows back to their callers, a lone
caller not kept waiting, a failing call failing only its callers, a full queue refused."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from tfvision_cli.serving.batching import Batcher, QueueFull


class Model:
    """Row i of the answer is the image's first pixel times 10; records each call's size."""

    def __init__(self, delay: float = 0.0, fail_on: int | None = None):
        self.calls: list[int] = []
        self.delay, self.fail_on = delay, fail_on

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.calls.append(len(x))
        time.sleep(self.delay)
        if self.fail_on is not None and (x[:, 0, 0, 0] == self.fail_on).any():
            raise RuntimeError("this batch broke")
        return x[:, 0, 0, :1].astype(np.float32) * 10


def images(*values: int) -> np.ndarray:
    return np.stack([np.full((2, 2, 1), v, np.uint8) for v in values])


def test_concurrent_requests_merge_and_each_gets_its_own_rows():
    model = Model(delay=0.02)
    batcher = Batcher(model, max_batch=16, timeout_s=0.05, max_queue=100).start()
    results: dict[int, np.ndarray] = {}

    def call(i: int) -> None:
        results[i] = batcher(images(i, i + 1))

    threads = [threading.Thread(target=call, args=(i,)) for i in range(0, 40, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    batcher.stop()
    for i, rows in results.items():
        np.testing.assert_array_equal(rows[:, 0], [10 * i, 10 * (i + 1)])
    assert sum(model.calls) == 40 and max(model.calls) <= 16
    assert len(model.calls) < 20  # merged: fewer calls than requests


def test_a_lone_caller_is_not_kept_waiting_and_a_large_request_runs_alone():
    model = Model()
    batcher = Batcher(model, max_batch=4, timeout_s=1.0, max_queue=10).start()
    start = time.perf_counter()
    for _ in range(3):
        batcher(images(1))
    assert time.perf_counter() - start < 0.5  # not 3 x the 1 s timeout
    np.testing.assert_array_equal(batcher(images(*range(9)))[:, 0], np.arange(9) * 10)
    batcher.stop()
    assert model.calls == [1, 1, 1, 9]


def test_a_failing_call_fails_its_callers_only_and_a_full_queue_refuses():
    model = Model(delay=0.05, fail_on=7)
    batcher = Batcher(model, max_batch=1, timeout_s=0.0, max_queue=1).start()
    bad = batcher.submit(images(7))
    with pytest.raises(RuntimeError, match="broke"):
        bad.result(timeout=5)
    np.testing.assert_array_equal(batcher(images(3))[:, 0], [30])
    first = batcher.submit(images(1))  # being answered (0.05 s)
    time.sleep(0.01)
    queued = batcher.submit(images(2))  # the one queued place
    with pytest.raises(QueueFull):
        batcher.submit(images(5))
    assert first.result(timeout=5)[0, 0] == 10 and queued.result(timeout=5)[0, 0] == 20
    batcher.stop()
