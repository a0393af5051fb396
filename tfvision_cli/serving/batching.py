"""Server-side batching: concurrent requests are queued and merged into one model call of up to
max_batch images, waiting at most timeout for more to come; each caller gets exactly its own
rows back. A request larger than max_batch is one call of its own (never split, never merged).
A lone caller (nothing queued, and the last call served one request) does not wait.

One thread runs the model, so the compiled function is never called concurrently and a burst
becomes a few large calls instead of many small ones. A full queue refuses at once (the caller
answers 503 with Retry-After); a failure inside one call fails that call's requests only.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np


class QueueFull(Exception):
    """The batch queue holds max_queue requests already."""


@dataclass
class _Request:
    images: np.ndarray
    future: Future = field(default_factory=Future)


class Batcher:
    def __init__(
        self,
        run: Callable[[np.ndarray], np.ndarray],
        max_batch: int,
        timeout_s: float,
        max_queue: int,
        on_batch: Callable[[int], None] = lambda n: None,
        on_depth: Callable[[int], None] = lambda n: None,
    ):
        self.run, self.max_batch, self.timeout_s = run, max_batch, timeout_s
        self.on_batch, self.on_depth = on_batch, on_depth
        self._queue: queue.Queue[_Request | None] = queue.Queue(maxsize=max_queue)
        self._carry: _Request | None = None
        self._alone = True  # the last call served a single request: nobody else is waiting
        self._thread = threading.Thread(target=self._loop, name="tfvision-batcher", daemon=True)

    def start(self) -> Batcher:
        self._thread.start()
        return self

    def submit(self, images: np.ndarray) -> Future:
        """Queue one request's images; its future gives the model's rows for them."""
        request = _Request(images)
        try:
            self._queue.put_nowait(request)
        except queue.Full:
            raise QueueFull from None
        self.on_depth(self._queue.qsize())
        return request.future

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Submit and wait: for callers on threads (gRPC)."""
        return self.submit(images).result()

    def stop(self) -> None:
        """Answer everything queued, then stop the thread."""
        self._queue.put(None)
        self._thread.join()

    def _loop(self) -> None:
        while True:
            batch = self._collect()
            if not batch:
                return
            self._answer(batch)
            if batch[-1] is None:
                return

    def _collect(self) -> list:
        """The requests of the next call: the first waits as long as it takes; then more
        while they fit in max_batch, until timeout after the first."""
        first = self._carry or self._queue.get()
        self._carry = None
        if first is None:
            return []
        batch, size = [first], len(first.images)
        # A lone caller (the last call served one request, and none waits now) is answered at
        # once: waiting for company that is not coming would only add the timeout to its
        # latency. Under load the queue is never empty and every call waits and merges.
        alone = self._alone and self._queue.empty()
        deadline = time.perf_counter() + (0.0 if alone else self.timeout_s)
        while size < self.max_batch:
            left = deadline - time.perf_counter()
            try:
                nxt = self._queue.get(timeout=left) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if nxt is None:
                batch.append(None)  # stop after answering this batch
                break
            if size + len(nxt.images) > self.max_batch:
                self._carry = nxt  # the next call starts with it
                break
            batch.append(nxt)
            size += len(nxt.images)
        self.on_depth(self._queue.qsize())
        self._alone = sum(r is not None for r in batch) == 1
        return batch

    def _answer(self, batch: list) -> None:
        requests = [r for r in batch if r is not None]
        if not requests:
            return
        try:
            images = (
                requests[0].images
                if len(requests) == 1
                else np.concatenate([r.images for r in requests])
            )
            self.on_batch(len(images))
            rows = self.run(images)
        except BaseException as e:  # that call's callers get the error; the server goes on
            for r in requests:
                r.future.set_exception(e)
            return
        start = 0
        for r in requests:
            r.future.set_result(rows[start : start + len(r.images)])
            start += len(r.images)
