"""`tfvision serve`: one model behind TF Serving's REST (uvicorn) and gRPC APIs, one batcher in
front of its compiled function.

Start: load (SavedModels through the op check, as `predict`), bind both ports (a port in use is
a one-line error), answer a warm-up batch, then report ready. Stop (SIGTERM or Ctrl-C): stop
accepting, answer every request already received, exit 0; a second signal exits at once.
"""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tfvision_cli.errors import UsageError
from tfvision_cli.serving.signatures import NAME_PATTERN

API_KEY_ENV = "TFVISION_API_KEY"


@dataclass
class ServeOptions:
    name: str | None = None
    host: str = "127.0.0.1"
    port: int = 8501
    grpc_port: int = 8500
    max_batch_size: int = 32
    batch_timeout_ms: float = 2.0
    max_body_mb: float = 16.0
    max_queue: int = 1024
    api_key_file: Path | None = None


@dataclass
class Started:
    """What a started server tells its caller (the CLI prints it)."""

    name: str
    version: int
    rest: str
    grpc: str | None
    exposed: bool  # listening beyond loopback
    keyed: bool


def serve(spec: str, options: ServeOptions, on_started: Callable[[Started], None]) -> int:
    """Serve until a signal; the exit code (0 after a graceful stop). Both ports listen at
    once; the model loads meanwhile (health/ready and every model endpoint say 503 until it
    has answered a warm-up batch)."""
    import threading

    import uvicorn

    from tfvision_cli.tf_import import tf

    key = _api_key(options.api_key_file)
    sock = _listen(options.host, options.port)
    tf()  # quietly, before tensorflow-serving-api's protos import it
    from tfvision_cli.serving import grpc_api
    from tfvision_cli.serving.metrics import Metrics
    from tfvision_cli.serving.rest import ServerState, make_app

    state = ServerState(
        None, None, Metrics(options.max_batch_size), key, int(options.max_body_mb * 2**20)
    )
    grpc_server = grpc_address = None
    if options.grpc_port:
        grpc_server, grpc_port = grpc_api.start(state, options.host, options.grpc_port)
        grpc_address = f"{_url_host(options.host)}:{grpc_port}"
    config = uvicorn.Config(
        make_app(state),
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=None,  # every request already received is answered
    )
    server = uvicorn.Server(config)
    rest = f"http://{_url_host(options.host)}:{sock.getsockname()[1]}"
    failed: list[BaseException] = []

    def load() -> None:
        try:
            _load(state, spec, options)
            m = state.model
            exposed = not _is_loopback(options.host)
            on_started(Started(m.name, m.version, rest, grpc_address, exposed, bool(key)))
        except BaseException as e:  # the server stops; the error is the command's
            failed.append(e)
            server.should_exit = True

    with _signals_for_uvicorn(server):  # before the model can say it is ready
        threading.Thread(target=load, name="tfvision-load", daemon=True).start()
        server.run(sockets=[sock])
    if server.force_exit:  # a second signal: at once
        os._exit(130)
    if grpc_server is not None:
        grpc_server.stop(grace=30).wait()  # RPCs already received are answered
    if state.batcher is not None:
        state.batcher.stop()
    if failed:
        raise failed[0]
    return 0


def _load(state, spec: str, options: ServeOptions) -> None:
    """The model loaded (SavedModels through the op check, never --trust-model), its batcher
    started, one warm-up batch answered (the first request pays no tracing): then ready."""
    from tfvision_cli.artifacts.loaders import load_predictor
    from tfvision_cli.serving.batching import Batcher
    from tfvision_cli.serving.signatures import ServedModel

    predictor = load_predictor(spec)
    name, version = _name_and_version(spec, predictor, options.name)
    metrics = state.metrics
    state.batcher = Batcher(
        lambda x: predictor.predict(x, batch_size=max(len(x), 1)),
        options.max_batch_size,
        options.batch_timeout_ms / 1000,
        options.max_queue,
        on_batch=metrics.batch_size.observe,
        on_depth=metrics.queue_depth.set,
    ).start()
    state.model = ServedModel(predictor, name, version)
    state.batcher(np.zeros((1, *predictor.input_shape), np.uint8))
    # TensorFlow and Keras leave millions of objects the collector would walk again on every
    # full collection that a large request's parsed JSON triggers (measured: a 256-image
    # request's parsing took 0.26-0.49 s instead of 0.1 s): they live as long as the server
    import gc

    gc.collect()
    gc.freeze()
    state.ready = True


class _signals_for_uvicorn:
    """uvicorn handles SIGINT and SIGTERM itself (the first stops gracefully, a second at once)
    and raises them again when it returns: here they then do nothing, so that a graceful stop
    exits 0 instead of through tfvision's interruption (130)."""

    def __init__(self, server):
        self.server = server

    def __enter__(self):
        self.saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
        for s in self.saved:  # a signal before uvicorn takes over still stops it gracefully
            signal.signal(s, lambda *args: setattr(self.server, "should_exit", True))

    def __exit__(self, *exc):
        for s, handler in self.saved.items():
            signal.signal(s, handler)


def _listen(host: str, port: int) -> socket.socket:
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(2048)
        sock.set_inheritable(True)
        return sock
    except OSError as e:
        raise UsageError(
            f"cannot listen on {host}:{port} (--host/--port): {e.strerror or e}"
        ) from None


def _api_key(path: Path | None) -> str | None:
    if path is not None:
        try:
            key = path.read_text().strip()
        except OSError as e:
            raise UsageError(f"cannot read --api-key-file {path}: {e.strerror}") from None
        if not key:
            raise UsageError(f"--api-key-file {path} is empty")
        return key
    return os.environ.get(API_KEY_ENV) or None


def _name_and_version(spec: str, predictor, name: str | None) -> tuple[str, int]:
    """--name, else the run's (or the export's) folder name; the version: the number of a TF
    Serving version folder, else 1."""
    path = Path(predictor.path)
    folder = path if path.is_dir() else path.parent
    version = int(folder.name) if folder.name.isdigit() and folder.name[0] != "0" else 1
    if name is None:
        if predictor.run_dir is not None:
            name = Path(predictor.run_dir).name
        elif version > 1 or folder.name.isdigit():
            name = folder.parent.name
        else:
            name = path.stem if path.is_file() else path.name
        name = name if NAME_PATTERN.fullmatch(name or "") else "model"
    elif not NAME_PATTERN.fullmatch(name):
        raise UsageError(f"--name {name!r}: letters, digits, '.', '_' and '-' only")
    return name, version


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host
