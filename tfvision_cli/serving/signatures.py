"""What `tfvision serve` serves, as TF Serving describes a model: its name and version, its two
signatures (the SavedModel exports' own, artifacts/export.py), and the conversion of a request's
inputs into the uint8 images the model takes. REST (rest.py) and gRPC (grpc_api.py) both go
through here, so that both answer alike.

serving_default   images       DT_UINT8  (-1, H, W, C)  -> probabilities DT_FLOAT (-1, classes)
image_bytes       image_bytes  DT_STRING (-1)           -> probabilities DT_FLOAT (-1, classes)

Encoded images (image_bytes, or a {"b64": ...} sent to serving_default) are decoded by the
reader `predict` uses (data/images.py): the same formats, limits, conversions and notes.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

import numpy as np

from tfvision_cli.artifacts.export import BYTES_SIGNATURE, IMAGES_SIGNATURE, OUTPUT
from tfvision_cli.artifacts.predictor import Predictor
from tfvision_cli.data.images import ImageReadError, read_image_bytes
from tfvision_cli.errors import TfvisionError

INPUTS = {IMAGES_SIGNATURE: "images", BYTES_SIGNATURE: "image_bytes"}
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_B64 = re.compile(rb"[A-Za-z0-9+/]*={0,2}")


class BadRequest(TfvisionError):
    """The caller's request is wrong (HTTP 400, gRPC INVALID_ARGUMENT)."""


class NotFound(TfvisionError):
    """No such model, version or signature (HTTP 404, gRPC NOT_FOUND)."""


@dataclass
class ServedModel:
    predictor: Predictor
    name: str
    version: int

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(self.predictor.input_shape)

    def check(self, name: str, version: int | None) -> None:
        if name != self.name:
            raise NotFound(f"no model named {name!r} (this server serves {self.name!r})")
        if version is not None and version != self.version:
            raise NotFound(f"model {name!r} has no version {version} (it serves {self.version})")

    def input_name(self, signature: str | None) -> tuple[str, str]:
        """(signature, its input's name); '' or None is serving_default."""
        signature = signature or IMAGES_SIGNATURE
        if signature not in INPUTS:
            raise BadRequest(f"no signature {signature!r}: this model has {', '.join(INPUTS)}")
        return signature, INPUTS[signature]

    def images(self, signature: str, values) -> np.ndarray:
        """A batch of inputs (numbers, or encoded images as bytes) -> (N, H, W, C) uint8."""
        if signature == BYTES_SIGNATURE:
            return self.decoded(values)
        if isinstance(values, list) and values and all(isinstance(v, bytes) for v in values):
            return self.decoded(values)  # {"b64": ...} instances: the documented convenience
        return self.pixels(values)

    def pixels(self, values) -> np.ndarray:
        try:
            a = np.asarray(values)
        except ValueError:
            raise BadRequest(
                f"images must be a batch of {'x'.join(map(str, self.shape))} arrays of numbers "
                "(ragged lists given)"
            ) from None
        if a.dtype.kind not in "iuf" or a.dtype == np.bool_:
            raise BadRequest(f"images must be numbers from 0 to 255, got {_kind(a)}")
        if a.ndim == 3 and self.shape[-1] == 1 and a.shape[1:] == self.shape[:2]:
            a = a[..., None]  # (N, H, W) for a one-channel model
        if a.ndim != 4 or a.shape[1:] != self.shape:
            want = "x".join(map(str, self.shape))
            got = "x".join(map(str, a.shape[1:])) if a.ndim >= 1 else "a scalar"
            raise BadRequest(f"each image must be {want} (height x width x channels), got {got}")
        if len(a) == 0:
            raise BadRequest("no images in the request")
        if a.dtype.kind == "f" and not np.all(np.isfinite(a)):
            raise BadRequest("images must be numbers from 0 to 255, got NaN or infinity")
        if a.min() < 0 or a.max() > 255 or (a.dtype.kind == "f" and np.any(a != np.round(a))):
            raise BadRequest(
                "images are uint8: whole numbers from 0 to 255 "
                f"(got values from {a.min():g} to {a.max():g})"
            )
        return a.astype(np.uint8)

    def decoded(self, values) -> np.ndarray:
        if not isinstance(values, list) or not values:
            raise BadRequest("image_bytes takes a non-empty list of encoded images")
        return np.stack([self.decode(v, i)[0] for i, v in enumerate(values)])

    def decode(self, data, index: int = 0, label: str | None = None):
        """(image, conversion notes) of one encoded image."""
        if not isinstance(data, bytes):
            raise BadRequest(
                f'input {index}: encoded images are sent as {{"b64": "..."}} (base64), got '
                f"{type(data).__name__}"
            )
        h, w, c = self.shape
        try:
            return read_image_bytes(data, (h, w), c, label or f"input {index}")
        except ImageReadError as e:
            raise BadRequest(str(e)) from None

    def signature_def_map(self):
        """The signatures as TF Serving's GetModelMetadata gives them (a SignatureDefMap)."""
        from tensorflow.core.framework import tensor_shape_pb2, types_pb2
        from tensorflow_serving.apis import get_model_metadata_pb2

        def tensor(name: str, dtype, dims: list[int], signature: str):
            info = {"name": f"{signature}_{name}:0", "dtype": dtype}
            shape = tensor_shape_pb2.TensorShapeProto(
                dim=[tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in dims]
            )
            return info, shape

        classes = len(self.predictor.class_names)
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for signature, name in INPUTS.items():
            sig = signature_map.signature_def[signature]
            sig.method_name = "tensorflow/serving/predict"
            if signature == BYTES_SIGNATURE:
                info, shape = tensor(name, types_pb2.DT_STRING, [-1], signature)
            else:
                info, shape = tensor(name, types_pb2.DT_UINT8, [-1, *self.shape], signature)
            sig.inputs[name].name = info["name"]
            sig.inputs[name].dtype = info["dtype"]
            sig.inputs[name].tensor_shape.CopyFrom(shape)
            out = sig.outputs[OUTPUT]
            out.name = "StatefulPartitionedCall:0"
            out.dtype = types_pb2.DT_FLOAT
            out.tensor_shape.CopyFrom(tensor(OUTPUT, 0, [-1, classes], signature)[1])
        return signature_map


def b64decode(text, index: int) -> bytes:
    """Standard base64 (RFC 4648, with padding), as TF Serving takes it; anything else is the
    caller's error, said in one sentence."""
    if not isinstance(text, str):
        raise BadRequest(f'input {index}: "b64" must be a string')
    data = text.encode("ascii", "replace")
    if len(data) % 4 or not _B64.fullmatch(data):
        raise BadRequest(
            f'input {index}: "b64" is not standard base64 (A-Z, a-z, 0-9, +, / and = padding)'
        )
    try:
        return base64.b64decode(data, validate=True)
    except binascii.Error as e:
        raise BadRequest(f'input {index}: "b64" is not standard base64 ({e})') from None


def _kind(a: np.ndarray) -> str:
    return {"U": "strings", "S": "strings", "O": "mixed values", "b": "true/false"}.get(
        a.dtype.kind, str(a.dtype)
    )
