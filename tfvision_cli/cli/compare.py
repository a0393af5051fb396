"""`tfvision compare BASELINE CANDIDATE [MORE...]`: A/B testing with paired statistics."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from tfvision_cli import console
from tfvision_cli.cli.app import app
from tfvision_cli.cli.common import CLASS_MAP, TRUST_MODEL, Json, dataset_option, examples, flag
from tfvision_cli.cli.complete import complete_runs

EXAMPLES = examples(
    "tfvision compare baseline latest",
    "tfvision compare run-a run-b --dataset ./my_images --json",
)


@app.command("compare", epilog=EXAMPLES)
def compare(
    models: list[str] = typer.Argument(
        ...,
        help="The baseline, then one or more candidates: runs (or their names), latest, "
        ".keras files or exports.",
        autocompletion=complete_runs,
    ),
    dataset: str | None = dataset_option(
        "--dataset", "-d", help="Dataset name or folder (default: the baseline's own)."
    ),
    split: str | None = typer.Option(None, "--split", help="Split (default: test)."),
    data_dir: str | None = typer.Option(None, "--data-dir", help="TFDS data directory."),
    class_map: Path | None = CLASS_MAP,
    fail_if_worse: float | None = typer.Option(
        None,
        "--fail-if-worse",
        min=0.0,
        max=1.0,
        metavar="MARGIN",
        help="Exit 1 unless every candidate is non-inferior: the lower end of the 95% interval "
        "of (candidate - baseline) accuracy is at least -MARGIN (a fraction: 0.005 = half a "
        "point). The CI gate.",
    ),
    batch_size: int = typer.Option(
        256, "--batch-size", min=1, max=65_536, help="Images per batch."
    ),
    plots: Path | None = typer.Option(
        None,
        "--plots",
        help="Folder for the pictures of disagreements (default: comparisons/ in the runs folder).",
    ),
    no_plots: bool = flag(False, "--no-plots", help="Write no pictures."),
    trust_model: bool = TRUST_MODEL,
    as_json: Json = False,
) -> None:
    """Every candidate against the baseline on the same images: accuracy with Wilson intervals,
    the paired difference with a bootstrap interval, McNemar's test (Holm-corrected for several
    candidates), per-class F1 changes, size and latency, and the images where they disagree.

    Exit codes: 0 done (and, with --fail-if-worse, every candidate non-inferior); 1 a candidate
    is worse by more than the margin; 2 bad input (models that predict other classes or take
    other images, models trained on other datasets without --dataset).
    """
    from tfvision_cli.errors import TfvisionError
    from tfvision_cli.evaluation.compare import compare as do_compare
    from tfvision_cli.evaluation.compare import write_disagreements
    from tfvision_cli.runs import runs_root

    if trust_model:
        console.warn("--trust-model: a SavedModel's ops are not checked before they run")
    result = do_compare(
        models,
        dataset,
        split,
        data_dir,
        batch_size,
        trust_model,
        fail_if_worse,
        class_map=class_map,
    )
    report = result.report
    for note in report.get("notes", []):
        console.warn(note)
    if not no_plots:
        out = plots or runs_root() / "comparisons" / time.strftime("%Y%m%d-%H%M%S")
        report["plots"] = [str(p) for p in write_disagreements(result, out, models)]
    if as_json:
        console.emit_json(report)
    else:
        _print(report)
    if fail_if_worse is not None and not report["passed"]:
        worst = min(report["candidates"], key=lambda c: c["difference_ci95"][0])
        raise TfvisionError(
            f"{worst['model']} may be worse than the baseline by more than {fail_if_worse:g}: "
            f"the difference's 95% interval reaches {worst['difference_ci95'][0]:+.4f}"
        )


def _name(i: int, several: bool) -> str:
    return "A" if i == 0 else f"B{i}" if several else "B"


def _interval(low: float, high: float, signed: bool = False) -> str:
    f = "{:+.4f}" if signed else "{:.4f}"
    return f"{f.format(low)}…{f.format(high)}"


def _print(r: dict) -> None:
    several = len(r["candidates"]) > 1
    models = [r["baseline"], *r["candidates"]]
    paths, folder = console.short_paths([m["model"] for m in models])
    rows = [
        [
            _name(i, several),
            paths[i],
            m["format"],
            f"{m['accuracy']:.4f}",
            _interval(*m["ci95"]),
            f"{m['ece']:.4f}",
            f"{m['nll']:.4f}",
            _size(m["size_bytes"]),
            f"{m['latency_ms']:.2f}" if m["latency_ms"] is not None else "",
        ]
        for i, m in enumerate(models)
    ]
    title = f"Models on {r['images_from']}" + (f" (paths under {folder})" if folder else "")
    columns = ["", "model", "format", "#accuracy", "95% CI", "#ECE", "#NLL", "#size", "#ms/image"]
    console.print_table(console.table(title, columns, rows))
    rows = [
        [
            f"{_name(i, several)} vs A",
            f"{c['difference']:+.4f}",
            _interval(*c["difference_ci95"], signed=True),
            f"{c['mcnemar']['b']}/{c['mcnemar']['c']}",
            f"{c['p_value_holm'] if several else c['mcnemar']['p_value']:.3g}",
            c["verdict"],
        ]
        for i, c in enumerate(r["candidates"], start=1)
    ]
    columns = ["", "#difference", "95% CI", "#b/c", "#p", "verdict"]
    console.print_table(console.table("Paired comparison", columns, rows))
    for i, c in enumerate(r["candidates"], start=1):
        changed = [x for x in c["per_class"] if abs(x["delta"]) >= 0.001][:5]
        if changed:
            text = ", ".join(f"{x['class']} {x['delta']:+.3f}" for x in changed)
            console.out.print(
                f"F1 changes, B{i if len(r['candidates']) > 1 else ''}: {console.safe(text)}"
            )
    note = "p: McNemar's test" + (", Holm-corrected" if len(r["candidates"]) > 1 else "")
    console.out.print(
        f"{note}; b/c: images only A / only B gets right; significant at p < {r['alpha']}"
    )
    if "passed" in r:
        console.out.print(
            f"non-inferiority at margin {r['fail_if_worse']:g}: "
            + ("passed" if r["passed"] else "FAILED")
        )
    for p in r.get("plots", []):
        console.log("wrote {path}", path=p)


def _size(n: int | None) -> str:
    if n is None:
        return ""
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return ""
