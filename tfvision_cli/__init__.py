"""tfvision: train, evaluate and ship image classifiers with TensorFlow/Keras."""

__version__ = "0.1.0"
