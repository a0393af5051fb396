"""Predicting image files in a stream: bounded memory, input order, one result per input."""

from __future__ import annotations

import contextlib
import functools
import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO

import numpy as np

from tfvision_cli.data import images
from tfvision_cli.data.images import ImageReadError, is_image_path, read_image_noted

# Marks a pause in the paths on stdin: what has arrived is predicted and printed now, not when a
# batch is full, so that a slow producer (`inotifywait ... | tfvision predict RUN -`, a person
# typing paths) sees each result at once.
PAUSE = object()
PAUSE_SECONDS = 0.1


def iter_paths(inputs: list[str], stdin: TextIO, pauses: bool = False) -> Iterator[str]:
    """Files as given, directories searched recursively (sorted), `-`: one path per stdin line
    (with PAUSE whenever none arrives for PAUSE_SECONDS, if pauses)."""
    for item in inputs:
        if item == "-":
            yield from (_paced(_stdin_paths(stdin)) if pauses else _stdin_paths(stdin))
        elif os.path.isdir(item):
            for root, dirs, files in os.walk(item):
                dirs.sort()
                for f in sorted(files):
                    if is_image_path(f) and not f.startswith("."):
                        yield os.path.join(root, f)
        else:
            yield item


def _stdin_paths(stdin: TextIO) -> Iterator[str]:
    # Bytes, decoded as the file system does: a name that is not valid UTF-8 is still a path
    # (os.fsdecode keeps its bytes), whatever the locale says.
    for raw in getattr(stdin, "buffer", None) or _encoded(stdin):
        line = os.fsdecode(raw.rstrip(b"\r\n"))
        if line:
            yield line


def _encoded(stdin: TextIO) -> Iterator[bytes]:
    for line in stdin:  # a text stream without a byte buffer (tests' StringIO)
        yield os.fsencode(line)


def _paced(lines: Iterator[str]) -> Iterator[str]:
    """lines, read by a thread, with PAUSE after each wait of PAUSE_SECONDS that follows a
    line (one PAUSE per pause, however long)."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=4096)  # the reader waits when predict falls behind
    end: list[BaseException] = []  # put when the lines end, holding what ended them, if any

    def read() -> None:
        try:
            for line in lines:
                q.put(line)
        except BaseException as e:  # a read error is the command's, raised where it reads
            end.append(e)
        finally:
            q.put(end)

    threading.Thread(target=read, name="stdin", daemon=True).start()
    waiting = False  # lines arrived since the last PAUSE
    while True:
        try:
            line = q.get(timeout=PAUSE_SECONDS) if waiting else q.get()
        except queue.Empty:
            waiting = False
            yield PAUSE
            continue
        if line is end:
            if end:
                raise end[0]
            return
        waiting = True
        yield line


class Decisions:
    """predict --prediction-set C and --min-confidence P, added to each record."""

    def __init__(self, predictor, prediction_set: float | None, min_confidence: float | None):
        from tfvision_cli.evaluation import calibration

        self.q = self.min_confidence = None
        if min_confidence is not None:
            self.min_confidence = calibration.check_coverage(min_confidence, "--min-confidence")
        if prediction_set is not None:
            calibration.check_coverage(prediction_set, "--prediction-set")
            scores = calibration.conformal_scores(predictor)
            self.q = calibration.quantile(scores, prediction_set)
        self.names = predictor.class_names

    def apply(self, record: dict, p: np.ndarray) -> dict:
        from tfvision_cli.evaluation.calibration import prediction_sets

        if self.q is not None:
            members = prediction_sets(p[None], self.q)[0]
            record["prediction_set"] = members
            record["prediction_set_names"] = [self.names[i] for i in members]
        if self.min_confidence is not None:
            abstained = record["confidence"] < self.min_confidence
            record["abstained"] = abstained
            if abstained:
                record["label"] = record["class_name"] = None
        return record


def predict_paths(
    predictor,
    paths: Iterable[str],
    batch_size: int = 64,
    top_k: int = 5,
    decisions: Decisions | None = None,
    pool=None,
) -> Iterator[dict]:
    """One result per path, in input order: {path, label, class_name, confidence, top_k,
    notes?} or {path, error}. `notes` lists what converting that image changed (a resize by
    more than 2x, colour to grey, grey to colour, transparency flattened).

    Images are decoded ahead of the model, which meanwhile predicts the batch before, by the
    same reader as ever, in runs of paths: by `pool` (decoders(): processes, for many files)
    or else by a few threads. At most about two batches of decoded images are held at a time.
    Decoding small images is Python work that holds the GIL, so threads barely overlap it
    with the rest; processes do (benchmarks/RESULTS.md, issue 37)."""
    from concurrent.futures import ThreadPoolExecutor

    workers = DECODE_WORKERS
    per_task = max(1, batch_size // workers)
    read = functools.partial(read_run, predictor.input_shape)
    pending: list[tuple[str, np.ndarray | None, str | list[str]]] = []
    with contextlib.ExitStack() as stack:
        if pool is None:
            pool = stack.enter_context(
                ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")
            )
        runs = _runs(paths, per_task)
        for done in _in_order(pool, read, runs, ahead=2 * workers, started=predictor.warm):
            if done is PAUSE:  # every path so far is decoded: its results go out now
                if pending:
                    yield from _flush(predictor, pending, top_k, decisions)
                    pending = []
                continue
            for item in done:
                pending.append(item)
                if len(pending) >= batch_size:
                    yield from _flush(predictor, pending, top_k, decisions)
                    pending = []
    if pending:
        yield from _flush(predictor, pending, top_k, decisions)


DECODE_WORKERS = max(2, min(4, os.cpu_count() or 1))
# predict's default batch: the largest power of two from 64 to 512 whose images hold at most
# this many values. Small images in batches of 64 left the model's calls, not the decoding, the
# cost: on MNIST, 4,700 images/s at 64, 9,500 at 512 (benchmarks/RESULTS.md, issue 37).
BATCH_VALUES = 2**19
MIN_BATCH, MAX_BATCH = 64, 512


def auto_batch_size(shape: tuple[int, int, int]) -> int:
    """The default --batch-size for a model of input shape (H, W, C): 512 for MNIST's 28x28x1,
    128 for 32x32x3, 64 from 64x64x3 up."""
    values = max(1, math.prod(shape))
    batch = MAX_BATCH
    while batch > MIN_BATCH and batch * values > BATCH_VALUES:
        batch //= 2
    return batch


def read_run(shape: tuple[int, int, int], run: list[str]) -> list[tuple]:
    """(path, uint8 array, notes) or (path, None, error) for each path: a decoder's task."""
    h, w, c = shape
    out = []
    for path in run:
        try:
            out.append((path, *read_image_noted(path, (h, w), c)))
        except ImageReadError as e:
            out.append((path, None, str(e)))
    return out


@contextlib.contextmanager
def decoders(many: bool) -> Iterator:
    """For many files, a pool of decoding processes (spawned: they import Pillow and numpy,
    not TensorFlow), started at once so that their start overlaps the model's loading; None
    for a few files, which threads decode. The reader's limits are the parent's, as they are
    when the pool starts; Ctrl-C is the parent's to handle."""
    if not many:
        yield None
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(
        DECODE_WORKERS,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_decoder,
        initargs=({name: getattr(images, name) for name in READER_LIMITS},),
    )
    try:
        pool.submit(int)  # starts the processes now
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


# what the reader refuses or notes, set in tfvision_cli.data.images (and lowered by tests)
READER_LIMITS = ("ALLOWED_FORMATS", "MAX_PIXELS", "MAX_SIDE", "MAX_ASPECT", "RESIZE_NOTE_FACTOR")


def _start_decoder(limits: dict) -> None:
    import signal

    from PIL import BmpImagePlugin, GifImagePlugin, JpegImagePlugin, PngImagePlugin  # noqa: F401

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    for name, value in limits.items():
        setattr(images, name, value)


def _runs(items: Iterable[str], n: int) -> Iterator[list[str] | object]:
    """items in lists of n (the last may be shorter), lazily (stdin may be endless); a PAUSE
    ends the list so far early, and is passed on."""
    run: list[str] = []
    for item in items:
        if item is PAUSE:
            if run:
                yield run
                run = []
            yield PAUSE
            continue
        run.append(item)
        if len(run) == n:
            yield run
            run = []
    if run:
        yield run


def _in_order(pool, fn, items: Iterable, ahead: int, started=None) -> Iterator:
    """pool.map, lazily: `ahead` items in flight, results in input order (the items may be an
    endless stream of paths on stdin); at a PAUSE, every result so far, then PAUSE. started(),
    if given, runs once the first items are submitted (or at the first pause, or the end),
    while the pool works on them."""
    from collections import deque

    flight: deque = deque()
    for item in items:
        if item is not PAUSE:
            flight.append(pool.submit(fn, item))
        if started is not None and (item is PAUSE or len(flight) >= ahead):
            started()
            started = None
        if item is PAUSE:
            while flight:
                yield flight.popleft().result()
            yield PAUSE
        elif len(flight) > ahead:
            yield flight.popleft().result()
    if started is not None:
        started()
    while flight:
        yield flight.popleft().result()


def summarize_notes(noted: list[list[str]], total: int) -> str | None:
    """'3 of 16 inputs were converted: 2 resized more than 2x, 1 colour converted to grey',
    from the notes of the inputs that have any, out of total predicted."""
    kinds: dict[str, int] = {}
    converted = 0
    for notes in noted:
        converted += bool(notes)
        for note in notes:
            kind = "resized more than 2x" if note.startswith("resized") else note.split(" (")[0]
            kinds[kind] = kinds.get(kind, 0) + 1
    if not converted:
        return None
    how = ", ".join(f"{n} {kind}" for kind, n in kinds.items())
    return f"{converted} of {total} inputs were converted: {how} (see each record's notes)"


def _flush(predictor, pending, top_k: int, decisions: Decisions | None) -> Iterator[dict]:
    good = [a for _, a, _ in pending if a is not None]
    names = predictor.class_names
    if good:  # sorted and turned into Python numbers a batch at a time, not an image
        probs = predictor.predict(np.stack(good), batch_size=len(good))
        orders = np.argsort(-probs, axis=1)[:, : _k(top_k, names)].tolist()
        values = probs.tolist()
    i = 0
    for path, array, error_or_notes in pending:
        if array is None:
            yield {"path": path, "error": _reason(path, error_or_notes)}
            continue
        r = _record(path, values[i], orders[i], names, error_or_notes)
        yield decisions.apply(r, probs[i]) if decisions else r
        i += 1


def record(path: str, p: np.ndarray, names: list[str], top_k: int, notes: list[str]) -> dict:
    """One prediction as `predict` prints it (and `serve`'s /predict answers it)."""
    order = np.argsort(-p)[: _k(top_k, names)].tolist()
    return _record(path, p.tolist(), order, names, notes)


def _k(top_k: int, names: list[str]) -> int:
    return max(1, min(top_k, len(names)))


def _record(path: str, p: list[float], order: list[int], names: list[str], notes) -> dict:
    best = order[0]
    return {
        "path": path,
        "label": best,
        "class_name": names[best],
        "confidence": round(p[best], 6),
        "top_k": [
            {"class_name": names[j], "label": j, "probability": round(p[j], 6)} for j in order
        ],
    } | ({"notes": notes} if notes else {})


def _reason(path: str, error: str | None) -> str:
    """The error without the path repeated in front of it."""
    prefix = f"{Path(path)}: "
    return error[len(prefix) :] if error and error.startswith(prefix) else (error or "unreadable")
