"""Whole-command measurements shared by the benchmarks: wall time and peak RSS (GNU time)."""

from __future__ import annotations

import os
import subprocess
import tempfile
import time


def timed(cmd: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """(wall seconds, peak RSS in GB, stdout) of one command, run with `env` added to this
    process's environment; exits with its stderr if it fails."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as t:
        start = time.perf_counter()
        p = subprocess.run(
            ["/usr/bin/time", "-f", "%M", "-o", t.name, *cmd],
            capture_output=True,
            text=True,
            env={**os.environ, **(env or {})},
        )
        wall = time.perf_counter() - start
        if p.returncode != 0:
            raise SystemExit(f"failed: {' '.join(cmd)}\n{p.stderr[-2000:]}")
        rss_kb = int(t.read().strip().splitlines()[-1])
    return wall, rss_kb / 1024**2, p.stdout
