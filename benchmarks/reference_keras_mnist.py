"""The published Keras example "Simple MNIST convnet" (keras.io/examples/vision/mnist_convnet/,
by fchollet), reimplemented as the reference for benchmarks/mnist_recipes.py.

Conv32(3x3)-MaxPool-Conv64(3x3)-MaxPool-Flatten-Dropout(0.5)-Dense10 softmax, Adam, batch 128,
15 epochs, validation_split 0.1. Data comes from TFDS's prepared MNIST (TFDS_DATA_DIR), the same
files tfvision reads, so that both sides pay the same for data. Prints one JSON line.
"""

import json
import os
import sys
import time

start = time.perf_counter()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import keras  # noqa: E402
import numpy as np  # noqa: E402
from keras import layers  # noqa: E402

seed = int(sys.argv[1]) if len(sys.argv) > 1 else 0
epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 15
keras.utils.set_random_seed(seed)

# Data. The example calls keras.datasets.mnist.load_data(), which reads a cached mnist.npz; here
# the same images come from TFDS's files (no network), cached the same way as an .npz file.
cache = os.path.expanduser("~/.keras/datasets/mnist-from-tfds.npz")
if not os.path.exists(cache):
    import tensorflow_datasets as tfds

    (a, b), (c, d) = (
        tfds.as_numpy(tfds.load("mnist", split=s, batch_size=-1, as_supervised=True))
        for s in ("train", "test")
    )
    os.makedirs(os.path.dirname(cache), exist_ok=True)
    np.savez(cache, x_train=a, y_train=b, x_test=c, y_test=d)
with np.load(cache) as f:
    x_train, y_train, x_test, y_test = f["x_train"], f["y_train"], f["x_test"], f["y_test"]
x_train = x_train.astype("float32") / 255
x_test = x_test.astype("float32") / 255
num_classes = 10
y_train = keras.utils.to_categorical(y_train, num_classes)
y_test = keras.utils.to_categorical(y_test, num_classes)

# Model
model = keras.Sequential(
    [
        keras.Input(shape=(28, 28, 1)),
        layers.Conv2D(32, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Conv2D(64, kernel_size=(3, 3), activation="relu"),
        layers.MaxPooling2D(pool_size=(2, 2)),
        layers.Flatten(),
        layers.Dropout(0.5),
        layers.Dense(num_classes, activation="softmax"),
    ]
)

# Train
batch_size = 128
model.compile(loss="categorical_crossentropy", optimizer="adam", metrics=["accuracy"])
fit_start = time.perf_counter()
model.fit(x_train, y_train, batch_size=batch_size, epochs=epochs, validation_split=0.1, verbose=0)
train_seconds = time.perf_counter() - fit_start

# Evaluate
score = model.evaluate(x_test, y_test, verbose=0)
print(
    json.dumps(
        {
            "test_loss": score[0],
            "test_accuracy": score[1],
            "train_seconds": train_seconds,
            "epochs": epochs,
            "train_images_per_second": epochs * int(len(x_train) * 0.9) / train_seconds,
            "script_seconds": time.perf_counter() - start,
        }
    )
)
