"""The formatter formats: no pragma keeps code out of `ruff format`, and the tree is formatted
(a function that only fits the length gate when hand-wrapped wants splitting instead)."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import ROOT

PRAGMA = re.compile(r"#\s*fmt:\s*(skip|off)\b")


def test_no_formatter_pragmas_and_the_tree_is_formatted(tmp_path):
    found = [
        f"{path.relative_to(ROOT)}:{i}"
        for folder in ("tfvision_cli", "tests", "benchmarks")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for i, line in enumerate(path.read_text().splitlines(), start=1)
        if PRAGMA.search(line)
    ]
    assert found == [], found
    r = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "--no-cache", "."],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    # the check can fail: a hand-wrapped file is reported
    bad = tmp_path / "wrapped.py"
    bad.write_text("x = [1,\n     2]\n")
    r = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--check", "--no-cache", "--isolated", str(bad)],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1
