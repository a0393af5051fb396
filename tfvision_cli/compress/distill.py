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

DEFAULT_TEMPERATURE = 4.0  # benchmarks/RESULTS.md: 10 (the Keras example) made MLP students worse
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
    return {"run_dir": str(result.run_dir), "metrics": result.metrics}
