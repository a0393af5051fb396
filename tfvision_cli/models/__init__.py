"""Keras models by name: see registry.py. Importing this package registers every family."""

from tfvision_cli.models import applications, cnn, mlp, resnet, rnn, vit  # noqa: F401
from tfvision_cli.models.registry import check_model, create_model, list_models, register_model

__all__ = ["check_model", "create_model", "list_models", "register_model"]
