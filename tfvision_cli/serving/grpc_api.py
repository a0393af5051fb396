"""TF Serving's gRPC API through the protos and servicer bases of tensorflow-serving-api:
PredictionService/Predict and GetModelMetadata, ModelService/GetModelStatus. The official
client stubs of that package talk to it as to TF Serving."""

from __future__ import annotations

import hmac
import time
from concurrent import futures

import grpc
import numpy as np
from tensorflow_serving.apis import (
    get_model_metadata_pb2,
    get_model_status_pb2,
    model_service_pb2_grpc,
    predict_pb2,
    prediction_service_pb2_grpc,
)

from tfvision_cli.artifacts.export import BYTES_SIGNATURE, OUTPUT
from tfvision_cli.serving.batching import QueueFull
from tfvision_cli.serving.signatures import BadRequest, NotFound

_CODES = {BadRequest: grpc.StatusCode.INVALID_ARGUMENT, NotFound: grpc.StatusCode.NOT_FOUND}


def start(state, host: str, port: int, workers: int = 16) -> tuple[grpc.Server, int]:
    """(the started server, the port it listens on: port, or a free one for 0)."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tfvision-grpc"),
        options=[
            ("grpc.max_receive_message_length", state.max_body),
            ("grpc.max_send_message_length", 64 * 2**20),
        ],
    )
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(_Prediction(state), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(_Models(state), server)
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    bound = server.add_insecure_port(address)
    if bound == 0:
        raise OSError(f"cannot listen on {address} (--grpc-port): in use or not allowed")
    server.start()
    return server, bound


class _Answering:
    """Shared by the servicers: the API key, the model spec, errors as gRPC status codes,
    every call counted in the metrics."""

    def __init__(self, state):
        self.state = state

    def _call(self, name: str, context, answer):
        start, code = time.perf_counter(), grpc.StatusCode.OK
        try:
            self._authorised(context)
            if not self.state.ready:
                code = grpc.StatusCode.UNAVAILABLE
                context.abort(code, "the model is loading")
            return answer()
        except (BadRequest, NotFound) as e:
            code = _CODES[type(e)]
            context.abort(code, e.message)
        except QueueFull:
            code = grpc.StatusCode.RESOURCE_EXHAUSTED
            context.abort(code, "the server is busy: too many requests are waiting")
        except _Unauthenticated:
            code = grpc.StatusCode.UNAUTHENTICATED
            context.abort(code, "missing or wrong API key (metadata authorization: Bearer KEY)")
        except Exception as e:
            if code is not grpc.StatusCode.OK:
                raise  # context.abort's own exception
            code = grpc.StatusCode.INTERNAL
            reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            context.abort(code, f"the model failed on this batch: {reason}")
        finally:
            self.state.metrics.observe(f"grpc:{name}", code.name, time.perf_counter() - start)

    def _authorised(self, context) -> None:
        key = self.state.api_key
        if not key:
            return
        given = dict(context.invocation_metadata()).get("authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {key}".encode()):
            raise _Unauthenticated

    def _spec(self, spec) -> None:
        version = spec.version.value if spec.HasField("version") else None
        if spec.WhichOneof("version_choice") == "version_label":
            raise NotFound(f"model {spec.name!r} has no version label {spec.version_label!r}")
        self.state.model.check(spec.name, version)


class _Unauthenticated(Exception):
    pass


class _Prediction(prediction_service_pb2_grpc.PredictionServiceServicer, _Answering):
    def Predict(self, request, context):  # noqa: N802 (the proto's name)
        return self._call("Predict", context, lambda: self._predict(request))

    def GetModelMetadata(self, request, context):  # noqa: N802
        return self._call("GetModelMetadata", context, lambda: self._metadata(request))

    def _predict(self, request):
        from tfvision_cli.tf_import import tf as import_tf

        tf = import_tf()
        model = self.state.model
        self._spec(request.model_spec)
        signature, name = model.input_name(request.model_spec.signature_name)
        if set(request.inputs) != {name}:
            raise BadRequest(f"signature {signature!r} takes one input, {name!r}")
        proto = request.inputs[name]
        if signature == BYTES_SIGNATURE:
            values = list(proto.string_val)
        else:
            try:
                values = tf.make_ndarray(proto)
            except (TypeError, ValueError) as e:
                raise BadRequest(f"input {name!r} is not a valid tensor ({e})") from None
            if values.dtype.kind in "SUO":
                values = list(values.reshape(-1))  # encoded images sent to serving_default
        rows = self.state.batcher(model.images(signature, values))
        response = predict_pb2.PredictResponse()
        response.model_spec.name = model.name
        response.model_spec.version.value = model.version
        response.model_spec.signature_name = signature
        response.outputs[OUTPUT].CopyFrom(tf.make_tensor_proto(np.asarray(rows, np.float32)))
        return response

    def _metadata(self, request):
        model = self.state.model
        self._spec(request.model_spec)
        unknown = set(request.metadata_field) - {"signature_def"}
        if unknown:
            raise BadRequest(f"metadata_field {sorted(unknown)}: only signature_def is known")
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = model.name
        response.model_spec.version.value = model.version
        response.metadata["signature_def"].Pack(model.signature_def_map())
        return response


class _Models(model_service_pb2_grpc.ModelServiceServicer, _Answering):
    def GetModelStatus(self, request, context):  # noqa: N802
        return self._call("GetModelStatus", context, lambda: self._status(request))

    def _status(self, request):
        self._spec(request.model_spec)
        response = get_model_status_pb2.GetModelStatusResponse()
        status = response.model_version_status.add()
        status.version = self.state.model.version
        status.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
        return response
