"""Knowledge distillation (Hinton et al. 2015) with Keras's own `keras.distillation.Distiller`.

The student is any registry model, trained like any run (the same data, pipelines, callbacks
and run directory) with the Distiller around it: its loss is
`alpha * cross-entropy(labels) + (1 - alpha) * T^2 * KL(teacher_T || student_T)`. The run keeps
the student alone (models.io.trained_model): it loads and exports without the teacher.

tfvision's models end in a softmax, and `LogitsDistillation` wants logits: log-probabilities
are logits (softmax is unchanged by a per-example shift, and log softmax(z) = z - logsumexp(z)),
so ProbabilityDistillation hands it the logarithms of the probabilities.
"""

from __future__ import annotations

from pathlib import Path

# benchmarks/RESULTS.md: T = 1 gained on every student measured (+0.08 points on average for a
# 128-unit MLP, +0.18 for 800-800); T = 4 gains more with room (800-800: +0.31) but cost the
# small MLP 0.30 points; 10 (the Keras example) made every MLP student worse
DEFAULT_TEMPERATURE = 1.0
DEFAULT_ALPHA = 0.5  # weight of the labels' loss (the rest is the teacher's)


def _distillation_loss(temperature: float):
    import keras

    class ProbabilityDistillation(keras.distillation.LogitsDistillation):
        """LogitsDistillation on models that output probabilities (see the module's note)."""

        def compute_loss(self, teacher_outputs, student_outputs, **kwargs):
            def logits(p):
                return keras.ops.log(keras.ops.maximum(p, 1e-30))

            return super().compute_loss(logits(teacher_outputs), logits(student_outputs), **kwargs)

    # an instance, not the default "kl_divergence": that string resolves to the function, which
    # LogitsDistillation does not recognise as KL, so it skips the softmax and compares the
    # raw logits (a loss of ~0 here; Keras 3.15)
    return ProbabilityDistillation(temperature=temperature, loss=keras.losses.KLDivergence())


def teacher_file(spec: str) -> tuple[Path, dict]:
    """(the teacher's .keras file, its run's config or {} for a bare file)."""
    from tfvision_cli import config as config_lib
    from tfvision_cli.runs import resolve_run
    from tfvision_cli.training.finetune import is_model_file, source_file

    if is_model_file(spec):
        return source_file(spec), {}
    run = resolve_run(spec)
    return source_file(str(run.path)), config_lib.read_yaml(run.config)


def distill(
    teacher: str,
    student: str,
    overrides: dict,
    run_dir: Path | None,
    on_event=None,
    temperature: float = DEFAULT_TEMPERATURE,
    alpha: float = DEFAULT_ALPHA,
    dataset: str | None = None,
) -> dict:
    """Train `student` on the teacher's dataset (or `dataset`) with the teacher's knowledge."""
    from tfvision_cli import config as config_lib
    from tfvision_cli.errors import UsageError
    from tfvision_cli.files import write_json
    from tfvision_cli.runs import RunDir
    from tfvision_cli.tf_import import tf
    from tfvision_cli.training.session import Hooks, check_config, train

    if temperature <= 0:
        raise UsageError(f"--temperature must be positive, got {temperature:g}")
    if not 0 <= alpha <= 1:
        raise UsageError(f"--alpha must be between 0 and 1, got {alpha:g}")
    path, values = teacher_file(teacher)
    teacher_only = ("init_from", "pretrained", "freeze_backbone", "model_options")
    values = {k: v for k, v in values.items() if k not in teacher_only}
    if dataset:
        values["dataset"] = dataset
    if not values.get("dataset"):
        raise UsageError(f"{teacher} is a bare .keras file: pass --dataset")
    values.update(overrides)
    values["model"] = student
    config = config_lib.resolve(None, values, None, validate=False)
    check_config(config)
    tf()  # quietly, before Keras imports it
    sizes = compare_sizes(path, student, config.model_options or {})
    emit = on_event or (lambda kind, **data: None)
    if sizes["student"]["params"] >= sizes["teacher"]["params"]:
        emit("warning", text=not_smaller(student, sizes))

    def wrap(student_model, placement):
        import keras

        from tfvision_cli.models.io import load_model

        with placement.strategy.scope():
            teacher_model = load_model(path)
            try:
                distiller = keras.distillation.Distiller(
                    teacher=teacher_model,
                    student=student_model,
                    distillation_losses=_distillation_loss(temperature),
                    student_loss_weight=alpha,
                )
            except ValueError as e:
                raise UsageError(f"the teacher cannot teach this student: {e}") from None
            distiller.build(student_model.input_shape)  # BackupAndRestore needs it built
        return distiller

    result = train(
        config,
        run_dir=run_dir,
        on_event=on_event,
        hooks=Hooks(wrap_model=wrap, kind="distill", parent=str(path)),
    )
    result.metrics["distillation"] = {
        "teacher": str(path),
        "temperature": temperature,
        "alpha": alpha,
    }
    write_json(RunDir(result.run_dir).metrics, result.metrics)
    run = RunDir(result.run_dir)
    sizes["student"]["bytes"] = run.model.stat().st_size
    sizes["student"]["test_accuracy"] = result.metrics.get("test_accuracy")
    teacher_metrics = RunDir(path.parent).read_metrics() if path.name == "model.keras" else {}
    if teacher_metrics.get("dataset") == config.dataset:  # the same test split
        sizes["teacher"]["test_accuracy"] = teacher_metrics.get("test_accuracy")
    return {"run_dir": str(result.run_dir), "metrics": result.metrics, "comparison": sizes}


def compare_sizes(teacher: Path, student: str, options: dict) -> dict:
    """Parameters, FLOPs per image and file size of the teacher and of the student (built
    untrained for the teacher's input and classes, before any training)."""
    from tfvision_cli.models.io import load_model
    from tfvision_cli.models.registry import create_model
    from tfvision_cli.models.summary import count_params, flops_per_image

    teacher_model = load_model(teacher)
    shape, classes = teacher_model.input_shape[1:], int(teacher_model.output_shape[-1])
    student_model = create_model(student, shape, classes, **options)
    return {
        "teacher": {
            "params": count_params(teacher_model),
            "flops": flops_per_image(teacher_model),
            "bytes": teacher.stat().st_size,
            "test_accuracy": None,
        },
        "student": {
            "params": count_params(student_model),
            "flops": flops_per_image(student_model),
            "bytes": None,
            "test_accuracy": None,
        },
    }


def not_smaller(student: str, sizes: dict) -> str:
    s, t = sizes["student"]["params"], sizes["teacher"]["params"]
    return (
        f"the student ({student}, {s:,} parameters) is not smaller than its teacher ({t:,}): "
        "distillation makes a model smaller only through a smaller student "
        "(`tfvision models list` shows their sizes)"
    )
