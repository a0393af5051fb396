"""Helpers for tests that run tfvision in a fresh process (kills, signals, confinement)."""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def tfvision_cmd(command: str, *paths) -> list[str]:
    """`tfvision COMMAND PATHS...` as the argument list of a fresh Python process."""
    return [sys.executable, "-m", "tfvision_cli", *command.split(), *map(str, paths)]


def subprocess_env(**extra) -> dict[str, str]:
    env = dict(os.environ)
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run(args: list[str], timeout: int = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        args, env=subprocess_env(), capture_output=True, text=True, timeout=timeout, **kw
    )


def read_only(folder: Path, args: list[str]) -> list[str]:
    """args run with folder read-only: by permissions for a normal user; root ignores those,
    so for root by a read-only bind mount in a private mount namespace (unshare -m)."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return args
    if not shutil.which("unshare"):
        pytest.skip("running as root without unshare: cannot make a folder read-only")
    script = 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" && exec "$@"'
    return ["unshare", "-m", "sh", "-c", script, str(folder), *args]


def file_size_limit(limit_bytes: int):
    """preexec_fn: any write past limit_bytes fails with EFBIG, as on a full disk (Python
    ignores SIGXFSZ, so the write raises OSError instead of killing the process)."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return apply
