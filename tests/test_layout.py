"""The package is laid out by the stages of a model's life; an import goes only to the same stage
or an earlier one (lazy imports inside functions included), so a change lands in one room."""

from __future__ import annotations

import ast

from tests.conftest import ROOT

PACKAGE = ROOT / "tfvision_cli"
# core modules at the root and compat/ first; the command line last
STAGES = (
    "core",
    "data",
    "models",
    "training",
    "artifacts",
    "evaluation",
    "analysis",
    "compress",
    "serving",
    "cli",
)


def stage_of(module: str) -> str:
    """'tfvision_cli.training.loop' -> 'training'; a root module or compat/ -> 'core'."""
    parts = module.split(".")
    if parts[1:] == ["__main__"]:  # `python -m tfvision_cli` is the command line
        return "cli"
    if len(parts) > 2 and parts[1] in STAGES:
        return parts[1]
    if len(parts) == 2 and parts[1] in STAGES:  # `from tfvision_cli import training`
        return parts[1]
    return "core"


def imports_of(path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.startswith("tfvision_cli")]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("tfvision_cli"):
            found += [f"{node.module}.{a.name}" for a in node.names]
    return found


def upward_imports() -> list[str]:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        here = STAGES.index(stage_of(module))
        for target in imports_of(path):
            if target.split(".")[1] == "__version__":
                continue
            if STAGES.index(stage_of(target)) > here:
                wrong.append(f"{module} imports {target}")
    return wrong


def test_every_folder_is_a_stage_and_no_import_goes_to_a_later_stage():
    folders = {p.name for p in PACKAGE.iterdir() if p.is_dir() and p.name != "__pycache__"}
    assert folders == set(STAGES[1:]) | {"compat"}, folders
    assert upward_imports() == []


def test_the_check_can_fail(tmp_path, monkeypatch):
    fake = tmp_path / "tfvision_cli" / "data"
    fake.mkdir(parents=True)
    (fake / "x.py").write_text("def f():\n    from tfvision_cli.serving.predict import x\n")
    monkeypatch.setattr("tests.test_layout.ROOT", tmp_path)
    monkeypatch.setattr("tests.test_layout.PACKAGE", tmp_path / "tfvision_cli")
    assert upward_imports() == ["tfvision_cli.data.x imports tfvision_cli.serving.predict.x"]
