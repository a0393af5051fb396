"""The typed training configuration: defaults, presets, YAML in and out."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from tfvision_cli.errors import UsageError, did_you_mean

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop", "nadam")
SCHEDULES = ("constant", "cosine", "one-cycle")
AUGMENTS = ("none", "light", "standard")
STRATEGIES = ("auto", "default", "mirrored", "multi-worker", "tpu")
# Upper bounds: far above any sane run, low enough that a typo fails at once instead of
# running out of memory half a minute later.
MAX_IMAGE_SIDE = 4096
LIMITS = {
    "epochs": 100_000,
    "batch_size": 65_536,
    "steps_per_epoch": 10_000_000,
    "steps_per_execution": 100_000,
    "early_stopping": 100_000,
    "warmup_epochs": 100_000,
    "learning_rate": 10.0,
    "weight_decay": 1.0,
    "seed": 2**32 - 1,
}


@dataclass
class TrainConfig:
    """Every option of a training run. The defaults are tfvision's default recipe."""

    dataset: str = "mnist"
    model: str = "fastnet"
    model_options: dict[str, Any] = field(default_factory=dict)
    pretrained: bool = False
    epochs: int = 4
    batch_size: int = 128  # per replica; the global batch is batch_size * replicas
    optimizer: str = "adam"
    learning_rate: float = 3e-3  # for the global batch of one replica; scaled by replicas
    schedule: str = "one-cycle"
    warmup_epochs: float = 1.0  # linear warm-up (one-cycle: the rise to the peak)
    weight_decay: float = 0.0
    label_smoothing: float = 0.1
    augment: str = "none"
    validation_split: float = 0.1
    early_stopping: int = 0  # patience in epochs; 0 = off
    seed: int = 0
    data_dir: str | None = None
    image_size: list[int] | None = None
    strategy: str = "auto"
    mixed_precision: bool = False
    deterministic: bool = True
    steps_per_execution: int = 1
    xla: bool = False  # XLA compilation: slower to compile, and not faster for convnets on CPU
    steps_per_epoch: int | None = None  # cap on steps per epoch (quick trials, tests)
    preset: str | None = None

    def validate(self) -> TrainConfig:
        def check(ok: bool, message: str) -> None:
            if not ok:
                raise UsageError(message)

        check(
            _integer(self.epochs) and self.epochs >= 1,
            f"epochs must be a positive integer, got {self.epochs!r}",
        )
        check(
            _integer(self.batch_size) and self.batch_size >= 1,
            f"batch size must be a positive integer, got {self.batch_size!r}",
        )
        check(
            isinstance(self.learning_rate, int | float) and self.learning_rate > 0,
            f"learning rate must be a positive number, got {self.learning_rate!r}",
        )
        check(
            isinstance(self.weight_decay, int | float) and self.weight_decay >= 0,
            f"weight decay must be >= 0, got {self.weight_decay!r}",
        )
        check(
            isinstance(self.label_smoothing, int | float) and 0 <= self.label_smoothing < 1,
            f"label smoothing must be in [0, 1), got {self.label_smoothing!r}",
        )
        check(
            isinstance(self.validation_split, int | float) and 0 <= self.validation_split < 1,
            f"validation split must be in [0, 1), got {self.validation_split!r}",
        )
        check(
            isinstance(self.warmup_epochs, int | float) and self.warmup_epochs >= 0,
            f"warmup epochs must be >= 0, got {self.warmup_epochs!r}",
        )
        check(
            _integer(self.early_stopping) and self.early_stopping >= 0,
            f"early stopping patience must be >= 0, got {self.early_stopping!r}",
        )
        check(
            self.steps_per_epoch is None
            or (_integer(self.steps_per_epoch) and self.steps_per_epoch >= 1),
            f"steps per epoch must be a positive integer, got {self.steps_per_epoch!r}",
        )
        check(
            _integer(self.steps_per_execution) and self.steps_per_execution >= 1,
            f"steps per execution must be >= 1, got {self.steps_per_execution!r}",
        )
        for name, value, allowed in (
            ("optimizer", self.optimizer, OPTIMIZERS),
            ("schedule", self.schedule, SCHEDULES),
            ("augment", self.augment, AUGMENTS),
            ("strategy", self.strategy, STRATEGIES),
        ):
            check(
                value in allowed,
                f"unknown {name} {value!r}.{did_you_mean(str(value), allowed)}"
                f" Choose from: {', '.join(allowed)}",
            )
        if self.image_size is not None:
            check(
                isinstance(self.image_size, list)
                and len(self.image_size) == 2
                and all(isinstance(v, int) and v >= 1 for v in self.image_size),
                f"image size must be two positive integers, got {self.image_size!r}",
            )
        check(isinstance(self.model_options, dict), "model_options must be a mapping")
        check(
            _integer(self.seed) and self.seed >= 0,
            f"seed must be an integer >= 0, got {self.seed!r}",
        )
        if self.image_size is not None:
            check(
                max(self.image_size) <= MAX_IMAGE_SIDE,
                f"image size must be at most {MAX_IMAGE_SIDE}, got {self.image_size!r}",
            )
        for name, limit in LIMITS.items():
            value = getattr(self, name)
            check(
                value is None or (_finite(value) and value <= limit),
                f"{name.replace('_', ' ')} must be at most {limit:g}, got {value!r}",
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _finite(value: Any) -> bool:
    """A real, finite number (bools are not numbers here)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


# Named recipes: settings like any other, applied before --config and flags.
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    # Measured on 2 CPU cores: 98.8% MNIST test accuracy, 46 s for the whole command.
    "fast": {"model_options": {"width": 16}, "epochs": 2, "warmup_epochs": 0.5},
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


def read_yaml(path: Path) -> dict[str, Any]:
    """A config file as a mapping (safe, bounded loader; unknown keys rejected)."""
    path = Path(path)
    try:
        if path.is_file() and path.stat().st_size > MAX_YAML_BYTES:
            raise UsageError(f"config file {path} is larger than 1 MiB; not a config")
        text = path.read_text()
    except FileNotFoundError:
        raise UsageError(f"config file {path} does not exist") from None
    except UnicodeDecodeError:
        raise UsageError(f"config file {path} is not UTF-8 text") from None
    except OSError as e:
        raise UsageError(f"cannot read config file {path}: {e.strerror}") from None
    data = load_yaml(text, f"config file {path}")
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
    preset: str | None = None, file_values: dict | None = None, flags: dict | None = None
) -> TrainConfig:
    """Defaults <- preset <- config file <- flags (None means 'not given')."""
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
    return config.validate()


def to_yaml(config: TrainConfig) -> str:
    import yaml

    return yaml.safe_dump(config.to_dict(), sort_keys=False)
