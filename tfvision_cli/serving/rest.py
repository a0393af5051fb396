"""TF Serving's REST API on Starlette (uvicorn runs it), plus an upload endpoint for
applications, KServe's health endpoints and Prometheus metrics.

GET  /v1/models/NAME[/versions/V]            status
GET  /v1/models/NAME[/versions/V]/metadata   the signatures
POST /v1/models/NAME[/versions/V]:predict    {"instances": [...]} or {"inputs": ...}
POST /predict                                an image (multipart `file`, or the raw body)
GET  /v2/health/live, /v2/health/ready       KServe's liveness and readiness
GET  /metrics, /monitoring/prometheus/metrics

Every error is {"error": "one sentence"} with its status code; nothing else reaches a client.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import re
import time
from dataclasses import dataclass

import numpy as np
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tfvision_cli.serving.batching import Batcher, QueueFull
from tfvision_cli.serving.metrics import Metrics
from tfvision_cli.serving.signatures import BadRequest, NotFound, ServedModel, b64decode

_MODEL_PATH = re.compile(
    r"(?P<name>[^/:]+)(?:/versions/(?P<version>[0-9]{1,18})|/labels/(?P<label>[^/:]+))?"
    r"(?P<verb>:predict|:classify|:regress|/metadata)?"
)


@dataclass
class ServerState:
    model: ServedModel | None  # None while loading
    batcher: Batcher | None
    metrics: Metrics
    api_key: str | None = None
    max_body: int = 16 * 2**20
    ready: bool = False  # the model loaded and has answered a warm-up batch


def error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status, headers=headers)


def make_app(state: ServerState) -> Starlette:
    async def live(request: Request) -> Response:
        return JSONResponse({"live": True})

    async def ready(request: Request) -> Response:
        return JSONResponse({"ready": True}) if state.ready else loading()

    async def metrics(request: Request) -> Response:
        return Response(state.metrics.text(), media_type=state.metrics.content_type)

    async def models(request: Request) -> Response:
        return await _models(state, request)

    async def upload(request: Request) -> Response:
        return await _upload(state, request)

    async def http_error(request: Request, exc: HTTPException) -> Response:
        messages = {404: "no such path", 405: f"{request.method} is not allowed here"}
        return error(exc.status_code, messages.get(exc.status_code, str(exc.detail)), exc.headers)

    routes = [
        Route("/v2/health/live", live, methods=["GET"]),
        Route("/v2/health/ready", ready, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/monitoring/prometheus/metrics", metrics, methods=["GET"]),
        Route("/v1/models/{rest:path}", models, methods=["GET", "POST"]),
        Route("/predict", upload, methods=["POST"]),
    ]

    async def internal(request: Request, exc: Exception) -> Response:
        return error(500, "internal error")  # the exception goes no further than Guard

    handlers = {HTTPException: http_error, Exception: internal}
    return Guard(Starlette(routes=routes, exception_handlers=handlers), state)


def loading() -> JSONResponse:
    return error(503, "the model is loading", {"Retry-After": "1"})


async def _models(state: ServerState, request: Request) -> Response:
    if not state.ready:
        return loading()
    m = _MODEL_PATH.fullmatch(request.path_params["rest"])
    if m is None:
        return error(404, "no such path")
    model = state.model
    try:
        if m["label"] is not None:
            raise NotFound(f"model {m['name']!r} has no version label {m['label']!r}")
        version = int(m["version"]) if m["version"] else None
        model.check(m["name"], version)
        verb = m["verb"]
        if request.method == "GET" and verb is None:
            return JSONResponse(status_json(model))
        if request.method == "GET" and verb == "/metadata":
            return JSONResponse(metadata_json(model))
        if request.method == "POST" and verb == ":predict":
            return await _predict(state, request)
        if request.method == "POST" and verb in (":classify", ":regress"):
            raise BadRequest(
                f"{verb[1:]} needs a {verb[1:]} signature; this model has predict ones"
            )
        return error(405, f"{request.method} is not allowed here")
    except NotFound as e:
        return error(404, e.message)
    except BadRequest as e:
        return error(400, e.message)


async def _predict(state: ServerState, request: Request) -> Response:
    try:
        body = await request.body()
    except _TooLarge:
        return too_large(state)
    try:
        payload = json.loads(body)
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(f"the body is not valid JSON ({str(e).splitlines()[0]})") from None
    signature, values, columnar = parse_predict(payload, state.model)
    if any(isinstance(v, bytes) for v in values):  # decoding takes time: off the event loop
        images = await run_in_threadpool(state.model.images, signature, values)
    else:
        images = state.model.images(signature, values)
    rows = await run_model(state, images)
    if isinstance(rows, Response):
        return rows
    return JSONResponse({"outputs" if columnar else "predictions": rows.tolist()})


async def run_model(state: ServerState, images: np.ndarray) -> np.ndarray | Response:
    try:
        future = state.batcher.submit(images)
    except QueueFull:
        return error(503, "the server is busy: too many requests are waiting", {"Retry-After": "1"})
    try:
        return await asyncio.wrap_future(future)
    except Exception as e:
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return error(500, f"the model failed on this batch: {reason}")


def parse_predict(payload, model: ServedModel) -> tuple[str, list, bool]:
    """(signature, the batch's inputs, columnar) of a :predict body, in TF Serving's row
    ("instances") or columnar ("inputs") form; {"b64": ...} values become bytes."""
    if not isinstance(payload, dict):
        raise BadRequest("the body must be a JSON object")
    if "instances" in payload and "inputs" in payload:
        raise BadRequest('give "instances" (row format) or "inputs" (columnar), not both')
    if "instances" not in payload and "inputs" not in payload:
        raise BadRequest('the body needs "instances" (row format) or "inputs" (columnar)')
    signature, name = model.input_name(payload.get("signature_name"))
    columnar = "inputs" in payload
    batch = payload["inputs"] if columnar else payload["instances"]
    if columnar and isinstance(batch, dict) and "b64" not in batch:
        if set(batch) != {name}:
            raise BadRequest(f"signature {signature!r} takes one input, {name!r}")
        batch = batch[name]
    if not isinstance(batch, list) or not batch:
        raise BadRequest(f"{'inputs' if columnar else 'instances'} must be a non-empty list")
    return signature, [_value(_unwrap(v, name, i), i) for i, v in enumerate(batch)], columnar


def _unwrap(instance, name: str, index: int):
    if isinstance(instance, dict) and "b64" not in instance:
        if set(instance) != {name}:
            raise BadRequest(f"instance {index} names {sorted(instance)}; the input is {name!r}")
        return instance[name]
    return instance


def _value(value, index: int):
    if isinstance(value, dict):
        if set(value) != {"b64"}:
            raise BadRequest(f'input {index}: an encoded image is {{"b64": "..."}} alone')
        return b64decode(value["b64"], index)
    return value


async def _upload(state: ServerState, request: Request) -> Response:
    """An image as a multipart upload (`curl -F file=@x.png`) or the raw body: answered with
    the record `tfvision predict` prints for that file."""
    from tfvision_cli.serving.predict import record

    if not state.ready:
        return loading()
    name = "upload"
    try:
        if request.headers.get("content-type", "").startswith("multipart/form-data"):
            async with request.form(max_files=1, max_fields=8) as form:
                files = [v for v in form.values() if hasattr(v, "read")]
                if not files:
                    raise BadRequest("the upload has no file (curl -F file=@image.png)")
                name, data = files[0].filename or name, await files[0].read()
        else:
            data = await request.body()
        image, notes = await run_in_threadpool(state.model.decode, data, 0, name)
    except BadRequest as e:
        return error(400, e.message)
    except _TooLarge:
        return too_large(state)
    rows = await run_model(state, image[None])
    if isinstance(rows, Response):
        return rows
    names = state.model.predictor.class_names
    return JSONResponse(record(name, rows[0], names, 5, notes))


def status_json(model: ServedModel) -> dict:
    status = {"error_code": "OK", "error_message": ""}
    return {
        "model_version_status": [
            {"version": str(model.version), "state": "AVAILABLE", "status": status}
        ]
    }


def metadata_json(model: ServedModel) -> dict:
    from google.protobuf.json_format import MessageToDict

    signatures = MessageToDict(
        model.signature_def_map(),
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )
    return {
        "model_spec": {"name": model.name, "signature_name": "", "version": str(model.version)},
        "metadata": {"signature_def": signatures},
    }


def endpoint_of(path: str) -> str:
    """A request's endpoint as the metrics label it (a few fixed names, never the raw path)."""
    if path.startswith("/v1/models/"):
        if path.endswith(":predict"):
            return "predict"
        return "metadata" if path.endswith("/metadata") else "status"
    fixed = {
        "/predict": "upload",
        "/metrics": "metrics",
        "/monitoring/prometheus/metrics": "metrics",
    }
    if path.startswith("/v2/health/"):
        return "health"
    return fixed.get(path, "other")


class _TooLarge(Exception):
    """A body without Content-Length that grows over the limit while it is read."""


def too_large(state: ServerState) -> JSONResponse:
    limit = state.max_body / 2**20
    return error(413, f"the body is over the limit of {limit:g} MB (--max-body-mb)")


class Guard:
    """ASGI middleware in front of the app: the API key, the body limit (413), every request
    counted and timed, and any failure answered as a 500 {"error"} without a traceback."""

    def __init__(self, app, state: ServerState):
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start, path = time.perf_counter(), scope["path"]
        sent = {"status": 0}

        async def counted_send(message):
            if message["type"] == "http.response.start":
                sent["status"] = message["status"]
            await send(message)

        refusal = self._refusal(scope, path)
        in_progress = self.state.metrics.in_progress.labels(endpoint_of(path))
        in_progress.inc()
        try:
            if refusal is not None:
                await refusal(scope, receive, counted_send)
            else:
                await self.app(scope, self._limited(receive), counted_send)
        except Exception:
            if not sent["status"]:
                await error(500, "internal error")(scope, receive, counted_send)
        finally:
            in_progress.dec()
            endpoint = endpoint_of(path)
            self.state.metrics.observe(endpoint, sent["status"], time.perf_counter() - start)

    def _refusal(self, scope, path: str):
        headers = dict(scope["headers"])
        key = self.state.api_key
        if key and not path.startswith("/v2/health/"):
            given = headers.get(b"authorization", b"")
            if not hmac.compare_digest(given, b"Bearer " + key.encode()):
                return error(
                    401,
                    "missing or wrong API key (send Authorization: Bearer KEY)",
                    {"WWW-Authenticate": "Bearer"},
                )
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.state.max_body):
            return too_large(self.state)
        return None

    def _limited(self, receive):
        seen = 0

        async def limited():
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.state.max_body:
                raise _TooLarge
            return message

        return limited
