"""The typed training configuration: every option declared once, with its default, choices,
bounds and help. The CLI (cli/options.py), YAML files, presets and `tune` spaces all follow from
these declarations; adding a training option is adding one field here."""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from tfvision_cli.errors import UsageError, did_you_mean

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "nadam")
SCHEDULES = ("constant", "cosine", "one-cycle")
AUGMENTS = ("auto", "none", "shift", "light", "standard", "randaugment")
CACHES = ("auto", "memory", "disk", "none")
STRATEGIES = ("auto", "default", "mirrored", "multi-worker", "tpu")
CLASS_WEIGHTS = ("none", "balanced")
MAX_IMAGE_SIDE = 4096


def option(
    default: Any,
    help: str,
    *,
    flag: str | None = None,
    aliases: tuple[str, ...] = (),
    choices: tuple[str, ...] | None = None,
    low: float | None = None,
    above: float | None = None,
    high: float | None = None,
    below: float | None = None,
    complete: str | None = None,
    cli: bool = True,
    shown: Any = None,
) -> Any:
    """A TrainConfig field: the one declaration of an option.

    low/high: inclusive bounds; above/below: exclusive ones. Upper bounds sit far above any
    sane run but low enough that a typo fails at once rather than out of memory later.
    complete: what the shell completes for it ("models", "datasets"); choices complete too.
    cli: False for what the command line spells its own way (the DATASET argument,
    --model-option, --image-size).
    shown: the default --help shows when the field's own is None, meaning "decided from the
    data" (epochs).
    """
    meta = {
        "help": help,
        "flag": flag,
        "aliases": aliases,
        "choices": choices,
        "low": low,
        "above": above,
        "high": high,
        "below": below,
        "complete": complete,
        "cli": cli,
        "shown": shown,
    }
    if isinstance(default, dict | list):
        return field(default_factory=lambda: type(default)(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Every option of a training run. The defaults are tfvision's default recipe."""

    dataset: str = option(
        "mnist", "TFDS name (mnist, cifar10, ...), digits, or a folder.", cli=False
    )
    model: str = option(
        "fastnet",
        "Model name (`tfvision models list`), or a .keras file to train as it is.",
        aliases=("-m",),
        complete="models",
    )
    init_from: str | None = option(
        None,
        "Start from the weights of a run (or latest) or a .keras file: same architecture, a new "
        "head when the classes differ. Without --model, the run's model.",
        complete="runs",
    )
    model_options: dict[str, Any] = option({}, "KEY=VALUE options of the model.", cli=False)
    pretrained: bool = option(False, "Start from ImageNet weights (keras.applications nets).")
    freeze_backbone: int = option(
        0,
        "Epochs to train with the backbone frozen (the keras.applications net inside the model, "
        "else every layer before the head), then every layer with a fresh optimizer. 0: never.",
        low=0,
        high=100_000,
    )
    epochs: int | None = option(
        None,
        "Epochs to train. Unless given: 4 on MNIST-sized data, more on smaller datasets, so that "
        "every dataset gets a budget of at least 1,600 optimizer steps (at most 40 epochs).",
        aliases=("-e",),
        low=1,
        high=100_000,
        shown=4,
    )
    batch_size: int = option(
        128,
        "Per-replica batch; the global batch is this times the replicas.",
        aliases=("-b",),
        low=1,
        high=65_536,
    )
    optimizer: str = option("adam", "Optimizer.", choices=OPTIMIZERS)
    learning_rate: float = option(
        3e-3,
        "Peak learning rate for one replica's batch (scaled linearly by the replicas).",
        aliases=("--lr",),
        above=0,
        high=10,
    )
    schedule: str = option("one-cycle", "Learning-rate schedule.", choices=SCHEDULES)
    warmup_epochs: float = option(
        1.0, "Linear warm-up (one-cycle: the rise to the peak), in epochs.", low=0, high=100_000
    )
    weight_decay: float = option(0.0, "Decoupled weight decay (AdamW-style).", low=0, high=1)
    label_smoothing: float = option(0.1, "Label smoothing of the training loss.", low=0, below=1)
    augment: str = option(
        "auto",
        "Random augmentation in tf.data: light/standard geometric, or randaugment (Keras's "
        "RandAugment: two random ops a batch at --augment-magnitude). Never mirrors digits. "
        "auto: light for images of 16x16 or more with under 5,000 training images per class "
        "(where a model overfits), else none.",
        choices=AUGMENTS,
    )
    augment_magnitude: float = option(
        0.1,
        "RandAugment's strength: 0.1 rotates up to 36 degrees, shifts and shears 10% (0.5, "
        "Keras's default, turns a 6 into a 9).",
        low=0,
        high=1,
    )
    mixup: float = option(
        0.0,
        "MixUp: blend pairs of images and their labels with a Beta(ALPHA, ALPHA) weight (0: off).",
        low=0,
        high=10,
    )
    cutmix: float = option(
        0.0,
        "CutMix: paste a patch of another image, labels mixed by area, Beta(ALPHA, ALPHA) "
        "(0: off). With --mixup, one of the two for each batch.",
        low=0,
        high=10,
    )
    random_erasing: float = option(
        0.0, "Random erasing: the chance each image has a random box blanked.", low=0, high=1
    )
    l1: float = option(
        0.0,
        "L1 penalty on every Conv/Dense kernel, added to the loss (drives weights to zero).",
        low=0,
        high=1,
    )
    l2: float = option(
        0.0,
        "L2 penalty on every Conv/Dense kernel, added to the loss; unlike --weight-decay it "
        "goes through the optimizer's adaptive scaling.",
        low=0,
        high=1,
    )
    adversarial: str | None = option(
        None,
        "Adversarial training: fgsm:EPS (random start, Wong et al. 2020) or pgd:EPS (7 steps), "
        "EPS a share of the pixel range (0.3 = 76 of 255).",
    )
    adversarial_share: float = option(
        0.5, "Share of each batch replaced by its adversarial examples.", above=0, high=1
    )
    class_weight: str = option(
        "none",
        "balanced: weigh each class's loss by total / (classes x its count), for imbalanced data.",
        choices=CLASS_WEIGHTS,
    )
    validation_split: float = option(
        0.1, "Share of train held out (seeded, stratified) for validation.", low=0, below=1
    )
    early_stopping: int = option(
        0, "Stop after this many epochs without improvement (0: off).", low=0, high=100_000
    )
    seed: int = option(0, "Random seed: same seed, same result.", low=0, high=2**32 - 1)
    calibrate: bool = option(
        False,
        "After training, fit the temperature on the validation split (as `tfvision calibrate`).",
    )
    track: str = option(
        "auto",
        "Also log the run to an experiment tracker: mlflow (the tracking URI MLflow resolves: "
        "$MLFLOW_TRACKING_URI, else its local store; needs pip install -e '.[mlflow]'); "
        "auto: $TFVISION_TRACK, else none. TensorBoard's HParams are always written.",
        choices=("auto", "none", "mlflow"),
    )
    data_dir: str | None = option(None, "TFDS data directory (default: $TFDS_DATA_DIR).")
    cache: str = option(
        "auto",
        "Where decoded images live while training: memory (decoded once: fastest, needs the "
        "room), disk (decoded once into a temporary file, removed after training), none (read "
        "and decoded from the files each epoch: memory flat at any size); auto: memory when all "
        "splits fit in 256 MiB on a single machine, else none.",
        choices=CACHES,
    )
    image_size: list[int] | None = option(None, "Resize images to H or H,W.", cli=False)
    strategy: str = option("auto", "tf.distribute strategy.", choices=STRATEGIES)
    mixed_precision: bool = option(False, "float16 (GPU) / bfloat16 (CPU, TPU) compute.")
    deterministic: bool = option(True, "Deterministic ops (same seed, same bits; ~4% slower).")
    steps_per_execution: int | None = option(
        None,
        "Batches per call into TensorFlow. Unless given: 8 for small images on one device (a "
        "batch of at most 600k pixel values: MNIST, CIFAR), whose steps are short enough for "
        "the cost of each call to show, else 1 (the progress bar and Ctrl-C act between calls).",
        low=1,
        high=100_000,
    )
    xla: bool = option(False, "XLA-compile the train step (slower to start; not faster on CPU).")
    steps_per_epoch: int | None = option(
        None, "Cap the steps of each epoch (quick trials).", low=1, high=10_000_000
    )
    preset: str | None = option(None, "A named recipe, applied before --config and flags.")

    def problems(self) -> list[str]:
        """Every field checked against its declaration: what is wrong, all of it."""
        found = [p for f in fields(self) if (p := _check(f, getattr(self, f.name)))]
        return found + self._special()

    def validate(self) -> TrainConfig:
        problems = self.problems()
        if problems:
            raise UsageError("; ".join(problems))
        return self

    def _special(self) -> list[str]:
        problems = []
        if self.image_size is not None and not (
            isinstance(self.image_size, list)
            and len(self.image_size) == 2
            and all(_integer(v) and 1 <= v <= MAX_IMAGE_SIDE for v in self.image_size)
        ):
            problems.append(
                f"image size must be two integers from 1 to {MAX_IMAGE_SIDE}, "
                f"got {self.image_size!r}"
            )
        if self.adversarial is not None:
            try:
                parse_adversarial(self.adversarial)
            except UsageError as e:
                problems.append(e.message)
        if not isinstance(self.model_options, dict):
            problems.append("model_options must be a mapping")
        if self.preset is not None and self.preset not in PRESETS:
            problems.append(
                f"unknown preset {self.preset!r}.{did_you_mean(str(self.preset), PRESETS)}"
                f" Presets: {', '.join(PRESETS)}"
            )
        return problems

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite(value: Any) -> bool:
    """A real, finite number (bools are not numbers here)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def base_type(f: dataclasses.Field) -> type:
    """int, float, bool, str, list or dict: the field's type without `| None`."""
    hint = _type_hints(TrainConfig)[f.name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        hint = args[0]
    return typing.get_origin(hint) or hint


@functools.cache
def _type_hints(cls: type) -> dict[str, Any]:
    # resolved once a class: get_type_hints evaluates every annotation of the class each time,
    # and the command line asks for each option's type (0.18 s of every command's start)
    return typing.get_type_hints(cls)


def _check(f: dataclasses.Field, value: Any) -> str | None:
    """One field's value against its declaration: None when fine, else the problem."""
    name, meta, kind = f.name.replace("_", " "), f.metadata, base_type(f)
    if value is None:
        return None if f.default is None else f"{name} must be given"
    if kind is bool and not isinstance(value, bool):
        return f"{name} must be true or false, got {value!r}"
    if kind is int and not _integer(value):
        return f"{name} must be an integer, got {value!r}"
    if kind is float and not _finite(value):
        return f"{name} must be a finite number, got {value!r}"
    if kind is str and not isinstance(value, str):
        return f"{name} must be text, got {value!r}"
    if meta.get("choices") and value not in meta["choices"]:
        return (
            f"unknown {name} {value!r}.{did_you_mean(str(value), meta['choices'])}"
            f" Choose from: {', '.join(meta['choices'])}"
        )
    if kind in (int, float) and not _within(value, meta):
        return f"{name} must be in {interval(meta)}, got {value!r}"
    return None


def _within(value: float, meta) -> bool:
    low, above, high, below = (meta.get(k) for k in ("low", "above", "high", "below"))
    return (
        (low is None or value >= low)
        and (above is None or value > above)
        and (high is None or value <= high)
        and (below is None or value < below)
    )


def interval(meta) -> str:
    """'[0, 1)', '(0, 10]', '[1, 100000]': a field's bounds as an interval."""
    low, above, high, below = (meta.get(k) for k in ("low", "above", "high", "below"))
    left = (
        f"[{_num(low)}" if low is not None else f"({_num(above)}" if above is not None else "(-inf"
    )
    right = (
        f"{_num(high)}]" if high is not None else f"{_num(below)})" if below is not None else "inf)"
    )
    return f"{left}, {right}"


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


# Named recipes: settings like any other, applied before --config and flags.
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    # benchmarks/RESULTS.md (issue 37): two epochs of fastnet_xs at batch 256 and lr 0.012:
    # 99.18 / 99.12% (seeds 0 / 1) in 13.3-14.1 s (lr 0.008: 98.96 / 99.08%; 0.016: 99.18 /
    # 99.11%), where fastnet_s (width 24, lr 0.008) took 16.0-16.8 s for 99.21 / 99.10%
    "fast": {
        "model": "fastnet_xs",
        "epochs": 2,
        "batch_size": 256,
        "learning_rate": 0.012,
        "warmup_epochs": 0.5,
    },
    # The published Keras "Simple MNIST convnet" example, for side-by-side comparison.
    "keras-example": {
        "model": "cnn",
        "epochs": 15,
        "batch_size": 128,
        "optimizer": "adam",
        "learning_rate": 1e-3,
        "schedule": "constant",
        "warmup_epochs": 0.0,
        "label_smoothing": 0.0,
        "validation_split": 0.1,
        "augment": "none",
    },
}


def field_names() -> list[str]:
    return [f.name for f in fields(TrainConfig)]


MAX_YAML_BYTES = 1 << 20  # a config is a few hundred bytes; a megabyte is not a config
MAX_YAML_DEPTH = 16


def load_yaml(text: str, where: str) -> Any:
    """Parse YAML safely and boundedly: plain data only (no tags that build objects), no
    anchors or aliases (a few hundred bytes of them can expand to gigabytes), limited size and
    nesting. Every YAML tfvision reads goes through here."""
    import yaml

    class _Loader(yaml.SafeLoader):
        def compose_node(self, parent, index):
            event = self.peek_event()
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                raise UsageError(
                    f"{where} uses YAML anchors or aliases (& or *), which tfvision refuses: "
                    "write the values out"
                )
            if self._depth >= MAX_YAML_DEPTH:
                raise UsageError(f"{where} is nested more than {MAX_YAML_DEPTH} levels deep")
            self._depth += 1
            try:
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1

    if len(text.encode("utf-8", "surrogateescape")) > MAX_YAML_BYTES:
        raise UsageError(f"{where} is larger than {MAX_YAML_BYTES >> 20} MiB; not a config")
    try:
        loader = _Loader(text)
        loader._depth = 0
        try:
            return loader.get_single_data()
        finally:
            loader.dispose()
    except yaml.YAMLError as e:
        raise UsageError(f"{where} is not valid YAML: {str(e).splitlines()[0]}") from None


def read_yaml_file(path: Path, what: str) -> Any:
    """A YAML file a user gives (`what` names it in errors: "config file x.yaml"): at most
    1 MiB, UTF-8, read with load_yaml's safe, bounded loader."""
    path = Path(path)
    try:
        if path.is_file() and path.stat().st_size > MAX_YAML_BYTES:
            raise UsageError(f"{what} is larger than 1 MiB; not a config")
        text = path.read_text()
    except FileNotFoundError:
        raise UsageError(f"{what} does not exist") from None
    except UnicodeDecodeError:
        raise UsageError(f"{what} is not UTF-8 text") from None
    except OSError as e:
        raise UsageError(f"cannot read {what}: {e.strerror}") from None
    return load_yaml(text, what)


def read_yaml(path: Path) -> dict[str, Any]:
    """A config file as a mapping (safe, bounded loader; unknown keys rejected)."""
    path = Path(path)
    data = read_yaml_file(path, f"config file {path}")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UsageError(f"config file {path} must hold a mapping of option: value")
    check_keys(data, str(path))
    return data


def check_keys(data: dict[str, Any], where: str) -> None:
    names = field_names()
    for key in data:
        if key not in names:
            raise UsageError(f"unknown option {key!r} in {where}.{did_you_mean(str(key), names)}")


def resolve(
    preset: str | None = None,
    file_values: dict | None = None,
    flags: dict | None = None,
    validate: bool = True,
) -> TrainConfig:
    """Defaults <- preset <- config file <- flags (None means 'not given').

    validate=False leaves the checks to the caller (who may add its own problems to report
    them all at once: TrainConfig.problems())."""
    values: dict[str, Any] = {}
    preset = (flags or {}).get("preset") or (file_values or {}).get("preset") or preset
    if preset is not None:
        if preset not in PRESETS:
            raise UsageError(
                f"unknown preset {preset!r}.{did_you_mean(preset, PRESETS)}"
                f" Presets: {', '.join(PRESETS)}"
            )
        values.update(PRESETS[preset])
        values["preset"] = preset
    values.update(file_values or {})
    values.update({k: v for k, v in (flags or {}).items() if v is not None})
    check_keys(values, "the options")
    try:
        config = TrainConfig(**values)
    except TypeError as e:
        raise UsageError(str(e)) from None
    if isinstance(config.learning_rate, int) and not isinstance(config.learning_rate, bool):
        config.learning_rate = float(config.learning_rate)
    return config.validate() if validate else config


def to_yaml(config: TrainConfig) -> str:
    import yaml

    return yaml.safe_dump(config.to_dict(), sort_keys=False)


ADVERSARIAL_KINDS = ("fgsm", "pgd")


def parse_adversarial(spec: str | None) -> tuple[str, float] | None:
    """'fgsm:0.3' -> ('fgsm', 0.3); None stays None."""
    if spec is None:
        return None
    kind, _, value = str(spec).partition(":")
    try:
        eps = float(value)
    except ValueError:
        eps = -1.0
    if kind not in ADVERSARIAL_KINDS or not 0 < eps <= 1:
        raise UsageError(
            f"--adversarial takes fgsm:EPS or pgd:EPS with EPS in (0, 1], got {spec!r}"
        )
    return kind, eps
