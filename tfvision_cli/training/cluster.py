"""`tfvision cluster local`: N tfvision workers on this machine, on loopback ports, under a
generated TF_CONFIG, supervised together.

Each worker is `python -m tfvision_cli COMMAND...` with TF_CONFIG naming every worker on
127.0.0.1 and its own index. Workers prefix their own log lines ("[worker 1] ..."); the chief's
stdout is passed through as the launcher's stdout (so `--json` output stays pipeable), the other
workers' stdout goes to stderr. When one worker fails or is killed, the others are stopped
(SIGTERM, then SIGKILL after a grace period: a worker blocked in a collective with a dead peer
never returns to Python), and the launcher exits 1; Ctrl-C stops them all and exits 130.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack

GRACE_SECONDS = 10.0


def free_loopback_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (held together while chosen, then released)."""
    with ExitStack() as stack:
        socks = [stack.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]


def tf_config(ports: list[int], index: int) -> str:
    return json.dumps(
        {
            "cluster": {"worker": [f"127.0.0.1:{p}" for p in ports]},
            "task": {"type": "worker", "index": index},
        }
    )


def describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def run_local(
    command: list[str],
    workers: int,
    on_stdout: Callable[[str], None],
    on_stderr: Callable[[str], None],
    on_start: Callable[[int, int], None] | None = None,
) -> tuple[int, int | None, int | None]:
    """Run `tfvision COMMAND` as `workers` workers. Returns (exit code, index of the worker that
    failed first, its return code), the last two None when none failed. on_start(index, pid)
    is called for each worker started."""
    lines: queue.Queue = queue.Queue()
    procs: list[subprocess.Popen] = []
    try:
        _start(command, workers, lines, procs, on_start)
        failed = _relay(procs, lines, on_stdout, on_stderr)
        if failed is not None:
            return 1, failed, procs[failed].returncode
        return 0, None, None
    except KeyboardInterrupt:
        _stop(procs)
        return 130, None, None
    finally:
        _stop(procs)


def _start(command, workers: int, lines: queue.Queue, procs: list, on_start) -> None:
    """Start the workers (appending each to procs at once, so that it is stopped whatever
    happens next) with a thread per output stream putting (worker, is_stdout, line) on lines;
    line None marks a stream's end."""
    ports = free_loopback_ports(workers)

    def pump(index: int, stream, is_stdout: bool) -> None:
        for line in stream:
            lines.put((index, is_stdout, line.rstrip("\n")))
        lines.put((index, is_stdout, None))

    for i in range(workers):
        env = dict(os.environ, TF_CONFIG=tf_config(ports, i), PYTHONUNBUFFERED="1")
        p = subprocess.Popen(
            [sys.executable, "-m", "tfvision_cli", *command],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            text=True,
            bufsize=1,
        )
        procs.append(p)
        if on_start:
            on_start(i, p.pid)
        for stream, is_stdout in ((p.stdout, True), (p.stderr, False)):
            threading.Thread(target=pump, args=(i, stream, is_stdout), daemon=True).start()


def _relay(procs: list, lines: queue.Queue, on_stdout, on_stderr) -> int | None:
    """Pass the workers' output on (the chief's stdout as it is, the rest on stderr with a
    prefix) until all have ended; stop the others once one fails. Returns the failed index."""
    open_streams = 2 * len(procs)
    failed: int | None = None
    while open_streams or any(p.poll() is None for p in procs):
        try:
            index, is_stdout, line = lines.get(timeout=0.2)
        except queue.Empty:
            index = line = None
        if line is None and index is not None:
            open_streams -= 1
        elif line is not None:
            if is_stdout and index == 0:
                on_stdout(line)
            else:
                on_stderr(f"[worker {index}] {line}" if is_stdout else line)
        if failed is None:
            failed = next((i for i, p in enumerate(procs) if p.poll() not in (None, 0)), None)
            if failed is not None:
                _stop(p for i, p in enumerate(procs) if i != failed)
    return failed


def _stop(procs) -> None:
    procs = [p for p in procs if p.poll() is None]
    for p in procs:
        p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
