"""`tfvision serve`: the real server in its own process on free loopback ports, talked to with an
HTTP client (requests) and with the official TF Serving gRPC stubs (tensorflow-serving-api)."""

from __future__ import annotations

import base64
import contextlib
import json
import signal
import struct
import subprocess
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import requests

from tests.conftest import write_image
from tests.helpers import subprocess_env, tfvision_cmd


def get(url: str, **kw) -> requests.Response:
    return requests.get(url, timeout=kw.pop("timeout", 120), **kw)


def post(url: str, **kw) -> requests.Response:
    return requests.post(url, timeout=kw.pop("timeout", 120), **kw)


def free_port() -> int:
    from tfvision_cli.training.cluster import free_loopback_ports

    return free_loopback_ports(1)[0]


class Server:
    """`tfvision serve` in a fresh process; .rest and .grpc once it said it is ready."""

    def __init__(self, model, *args: str, env: dict | None = None, port: int = 0):
        self.grpc_port = free_port()
        command = tfvision_cmd("serve", model, "--port", port, "--grpc-port", self.grpc_port)
        self.process = subprocess.Popen(
            [*command, *args, "--json"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=subprocess_env(**(env or {})),
        )
        line = self.process.stdout.readline()  # printed once the model answered a warm-up
        if not line:
            raise AssertionError(f"the server did not start: {self.process.stderr.read()}")
        self.started = json.loads(line)
        self.rest, self.grpc = self.started["rest"], f"127.0.0.1:{self.grpc_port}"
        self.name = self.started["model"]

    def url(self, path: str) -> str:
        return self.rest + path

    def predict_url(self, suffix: str = ":predict") -> str:
        return self.url(f"/v1/models/{self.name}{suffix}")

    def stop(self) -> tuple[int, str]:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise
        return code, self.process.stderr.read()


@pytest.fixture(scope="module")
def digits(mnist_run, tmp_path_factory):
    """40 real MNIST test digits (4 per class) as PNG files, and their pixels."""
    from tests.conftest import MNIST_DIR
    from tfvision_cli.data.catalog import open_dataset, sample

    images, labels = sample(open_dataset("mnist", data_dir=MNIST_DIR), "test", 40, seed=1)
    folder = tmp_path_factory.mktemp("digits")
    paths = [write_image(folder / f"{i:02d}.png", a[..., 0]) for i, a in enumerate(images)]
    return paths, images, labels


@pytest.fixture(scope="module")
def server(mnist_run):
    s = Server(mnist_run)
    yield s
    code, err = s.stop()
    assert code == 0, err
    assert "Traceback" not in err


def stub(server):
    import grpc
    from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

    channel = grpc.insecure_channel(server.grpc)
    return (
        prediction_service_pb2_grpc.PredictionServiceStub(channel),
        model_service_pb2_grpc.ModelServiceStub(channel),
    )


def predicted_by_cli(model, paths) -> list[str]:
    from tests.helpers import run

    r = run(tfvision_cmd("predict", model, *paths, "--json"))
    assert r.returncode == 0, r.stderr
    return [json.loads(line)["class_name"] for line in r.stdout.splitlines()]


def test_status_and_metadata_as_tf_serving_gives_them(server):
    r = get(server.predict_url(""))
    assert r.status_code == 200
    assert r.json() == {
        "model_version_status": [
            {
                "version": "1",
                "state": "AVAILABLE",
                "status": {"error_code": "OK", "error_message": ""},
            }
        ]
    }
    assert get(server.predict_url("/versions/1")).status_code == 200
    meta = get(server.predict_url("/metadata")).json()
    assert meta["model_spec"] == {"name": server.name, "signature_name": "", "version": "1"}
    signatures = meta["metadata"]["signature_def"]["signature_def"]
    images = signatures["serving_default"]["inputs"]["images"]
    assert images["dtype"] == "DT_UINT8"
    assert [d["size"] for d in images["tensor_shape"]["dim"]] == ["-1", "28", "28", "1"]
    assert signatures["image_bytes"]["inputs"]["image_bytes"]["dtype"] == "DT_STRING"
    out = signatures["serving_default"]["outputs"]["probabilities"]
    assert out["dtype"] == "DT_FLOAT" and out["tensor_shape"]["dim"][1]["size"] == "10"
    assert get(server.url("/v2/health/live")).status_code == 200
    assert get(server.url("/v2/health/ready")).status_code == 200


def test_both_signatures_in_row_and_column_form_agree_with_predict(server, digits, mnist_run):
    paths, images, labels = digits
    expected = predicted_by_cli(mnist_run, paths)
    assert np.mean(np.array(expected, dtype=int) == labels) > 0.85  # a real model, real digits

    def labels_of(rows) -> list[str]:
        return [str(int(np.argmax(r))) for r in rows]

    b64 = [{"b64": base64.b64encode(p.read_bytes()).decode()} for p in paths]
    bodies = {
        "rows": {"instances": images.tolist()},
        "columns": {"inputs": images.tolist()},
        "named rows": {"instances": [{"images": a.tolist()} for a in images]},
        "bytes rows": {"signature_name": "image_bytes", "instances": b64},
        "bytes columns": {"signature_name": "image_bytes", "inputs": {"image_bytes": b64}},
        "b64 to serving_default": {"instances": b64},
    }
    for what, body in bodies.items():
        r = post(server.predict_url(), json=body)
        assert r.status_code == 200, (what, r.text)
        key = "outputs" if "inputs" in body else "predictions"
        rows = r.json()[key]
        assert list(r.json()) == [key] and len(rows) == len(paths), what
        assert labels_of(rows) == expected, what
    r = post(server.predict_url("/versions/1:predict"), json=bodies["rows"])
    assert r.status_code == 200
    # an application's upload: the record `tfvision predict` prints for that file
    first = json.loads(predicted_json(mnist_run, paths[0]))
    with open(paths[0], "rb") as f:
        up = post(server.url("/predict"), files={"file": (paths[0].name, f)}).json()
    raw = post(server.url("/predict"), data=paths[0].read_bytes()).json()
    assert up["path"] == paths[0].name and raw["path"] == "upload"
    for answer in (up, raw):
        assert {k: v for k, v in answer.items() if k != "path"} == {
            k: v for k, v in first.items() if k != "path"
        }


def predicted_json(model, path) -> str:
    from tests.helpers import run

    r = run(tfvision_cmd("predict", model, path, "--json"))
    assert r.returncode == 0, r.stderr
    return r.stdout.splitlines()[0]


def png_bomb(side: int) -> bytes:
    """A valid grey PNG of side x side zero pixels: a few hundred kB on disk."""
    raw = zlib.compressobj(9)
    row = b"\x00" * (side + 1)
    data = b"".join(raw.compress(row) for _ in range(side)) + raw.flush()

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")
    )


def test_every_bad_input_is_one_sentence_with_its_code_and_the_server_goes_on(server, digits):
    paths, images, _ = digits
    one = images[:1].tolist()
    bomb = base64.b64encode(png_bomb(12_000)).decode()  # 144 M pixels in about 150 kB
    assert len(bomb) < 400_000
    cases = [
        (400, "post", ":predict", {"data": "{not json"}),
        (400, "post", ":predict", {"json": {"instances": one, "inputs": one}}),
        (400, "post", ":predict", {"json": {"instances": [np.zeros((5, 5, 1)).tolist()]}}),
        (400, "post", ":predict", {"json": {"instances": [[["a"] * 28] * 28]}}),
        (400, "post", ":predict", {"json": {"instances": [(np.ones((28, 28, 1)) * 300).tolist()]}}),
        (400, "post", ":predict", {"json": {"instances": [(-np.ones((28, 28, 1))).tolist()]}}),
        (400, "post", ":predict", {"json": {"instances": [{"b64": "not base64!"}]}}),
        (400, "post", ":predict", {"json": {"instances": [{"b64": "aGVsbG8gd29ybGQ="}]}}),
        (400, "post", ":predict", {"json": {"instances": [{"b64": bomb}]}}),
        (400, "post", ":predict", {"json": {"signature_name": "nope", "instances": one}}),
        (400, "post", ":predict", {"json": {"instances": []}}),
        (400, "post", ":predict", {"json": [1, 2]}),
        (404, "get", "/versions/7", {}),
        (405, "get", ":predict", {}),
        (405, "delete", "", {}),
    ]
    for code, method, suffix, kw in cases:
        r = getattr(requests, method)(server.predict_url(suffix), **kw)
        assert r.status_code == code, (suffix, kw, r.text)
        assert list(r.json()) == ["error"] and "\n" not in r.json()["error"], r.text
    assert get(server.url("/v1/models/other")).status_code == 404
    assert get(server.url("/v3/whatever")).json() == {"error": "no such path"}
    r = post(server.url("/predict"), data=b"GIF89a but not really")
    assert r.status_code == 400 and "input" not in r.json()["error"]
    r = post(server.url("/predict"), data=png_bomb(12_000))
    assert r.status_code == 400 and "over the limit" in r.json()["error"], r.text
    big = b"x" * (17 * 2**20)  # over the default --max-body-mb 16
    assert post(server.predict_url(), data=big).status_code == 413
    chunked = post(server.predict_url(), data=iter([big[: 2**20]] * 17))
    assert chunked.status_code == 413 and "limit" in chunked.json()["error"]
    # and it still answers
    r = post(server.predict_url(), json={"instances": one})
    assert r.status_code == 200 and len(r.json()["predictions"]) == 1


def test_concurrent_requests_are_merged_and_each_gets_its_own_rows(server, digits):
    paths, images, _ = digits
    alone = np.array(
        post(server.predict_url(), json={"instances": images.tolist()}).json()["predictions"]
    )
    before = _metric(server, "tfvision_batch_size_count")

    def one(i: int):
        r = post(server.predict_url(), json={"instances": images[i : i + 1].tolist()})
        return i, r.status_code, r.json()["predictions"][0]

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(one, [i % len(images) for i in range(160)]))
    assert all(code == 200 for _, code, _ in results)
    for i, _, row in results:
        np.testing.assert_allclose(row, alone[i], atol=1e-5)
    calls = _metric(server, "tfvision_batch_size_count") - before
    assert calls < 160, calls  # some requests shared a model call
    text = get(server.url("/monitoring/prometheus/metrics")).text
    assert 'tfvision_requests_total{code="200",endpoint="predict"}' in text
    assert "tfvision_request_seconds_bucket" in text and "tfvision_queue_depth" in text


def _metric(server, name: str, text: str | None = None) -> float:
    """The sum of a metric's samples, from one scrape of /metrics (text: that scrape's)."""
    text = text if text is not None else get(server.url("/metrics")).text
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith(name + " ") or line.startswith(name + "{")
    )


def test_the_official_grpc_stubs_talk_to_it(server, digits, mnist_run):
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import get_model_metadata_pb2, get_model_status_pb2, predict_pb2

    paths, images, _ = digits
    expected = predicted_by_cli(mnist_run, paths[:8])
    prediction, models = stub(server)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = server.name
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(images[:8]))
    response = prediction.Predict(request, timeout=30)
    rows = tf.make_ndarray(response.outputs["probabilities"])
    assert [str(i) for i in rows.argmax(1)] == expected
    assert response.model_spec.version.value == 1
    request = predict_pb2.PredictRequest()
    request.model_spec.name = server.name
    request.model_spec.signature_name = "image_bytes"
    request.inputs["image_bytes"].CopyFrom(
        tf.make_tensor_proto([p.read_bytes() for p in paths[:8]], dtype=tf.string)
    )
    rows = tf.make_ndarray(prediction.Predict(request, timeout=30).outputs["probabilities"])
    assert [str(i) for i in rows.argmax(1)] == expected
    meta = get_model_metadata_pb2.GetModelMetadataRequest(metadata_field=["signature_def"])
    meta.model_spec.name = server.name
    answer = prediction.GetModelMetadata(meta, timeout=30)
    signatures = get_model_metadata_pb2.SignatureDefMap()
    answer.metadata["signature_def"].Unpack(signatures)
    assert set(signatures.signature_def) == {"serving_default", "image_bytes"}
    status = get_model_status_pb2.GetModelStatusRequest()
    status.model_spec.name = server.name
    versions = models.GetModelStatus(status, timeout=30).model_version_status
    assert [(v.version, v.state) for v in versions] == [
        (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)
    ]
    # errors are status codes
    request.model_spec.name = "other"
    with pytest.raises(grpc.RpcError) as e:
        prediction.Predict(request, timeout=30)
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    request.model_spec.name = server.name
    request.inputs["image_bytes"].CopyFrom(tf.make_tensor_proto([b"no image"], dtype=tf.string))
    with pytest.raises(grpc.RpcError) as e:
        prediction.Predict(request, timeout=30)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT and "input 0" in e.value.details()


def test_api_key_queue_limit_and_readiness(mnist_run, tmp_path, digits):
    paths, images, _ = digits
    key = tmp_path / "key"
    key.write_text("s3cret-key\n")
    port, seen, done = free_port(), [], threading.Event()

    def watch_readiness():  # from the process's start until it says it is ready
        while not done.is_set():
            with contextlib.suppress(requests.ConnectionError):
                seen.append(get(f"http://127.0.0.1:{port}/v2/health/ready").status_code)
            time.sleep(0.02)

    watcher = threading.Thread(target=watch_readiness)
    watcher.start()
    options = ["--api-key-file", key, "--max-queue", "1", "--max-batch-size", "1"]
    try:
        server = Server(mnist_run, *options, "--name", "digits", port=port)
    finally:
        done.set()
        watcher.join()
    # the port answered while the model loaded: not ready (503), then ready
    assert seen and seen[0] == 503 and set(seen) <= {503, 200}, seen
    try:
        body = {"instances": images[:1].tolist()}
        assert post(server.predict_url(), json=body).status_code == 401
        wrong = {"Authorization": "Bearer s3cret-kez"}
        assert post(server.predict_url(), json=body, headers=wrong).status_code == 401
        assert get(server.url("/metrics")).status_code == 401
        assert get(server.url("/v2/health/ready")).status_code == 200  # health is open
        good = {"Authorization": "Bearer s3cret-key"}
        r = post(server.predict_url(), json=body, headers=good)
        assert r.status_code == 200 and server.name == "digits"
        # a queue of one request: while gRPC callers keep it full with large requests (their
        # tensors parse at once; JSON parsing alone would never outrun the model), REST
        # requests are refused with 503 and Retry-After, never lost or left hanging
        answers, grpc_codes = _while_the_queue_is_full(server, images, good)
        codes = [a.status_code for a in answers]
        assert set(codes) <= {200, 503} and 503 in codes, codes
        assert "RESOURCE_EXHAUSTED" in grpc_codes and "OK" in grpc_codes, grpc_codes
        busy = next(a for a in answers if a.status_code == 503)
        assert busy.headers["Retry-After"] == "1" and "busy" in busy.json()["error"]
        import grpc
        from tensorflow_serving.apis import get_model_status_pb2

        status = get_model_status_pb2.GetModelStatusRequest()
        status.model_spec.name = "digits"
        with pytest.raises(grpc.RpcError) as e:
            stub(server)[1].GetModelStatus(status, timeout=30)
        assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        answer = stub(server)[1].GetModelStatus(
            status, timeout=30, metadata=[("authorization", "Bearer s3cret-key")]
        )
        assert answer.model_version_status[0].version == 1
    finally:
        code, err = server.stop()
    assert code == 0 and "Traceback" not in err


def _while_the_queue_is_full(server, images, headers):
    import grpc
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = server.name
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(np.repeat(images, 13, axis=0)))
    prediction = stub(server)[0]
    done, grpc_codes = threading.Event(), []

    def keep_busy():
        while not done.is_set():
            try:
                prediction.Predict(
                    request, timeout=60, metadata=[("authorization", headers["Authorization"])]
                )
                grpc_codes.append("OK")
            except grpc.RpcError as e:
                grpc_codes.append(e.code().name)

    threads = [threading.Thread(target=keep_busy) for _ in range(6)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        one = {"instances": images[:1].tolist()}
        answers = [post(server.predict_url(), json=one, headers=headers) for _ in range(30)]
    finally:
        done.set()
        for thread in threads:
            thread.join()
    return answers, grpc_codes


def test_sigterm_answers_every_request_already_received(mnist_run, digits):
    paths, images, _ = digits
    server = Server(mnist_run, "--max-batch-size", "8")
    body = json.dumps({"instances": np.repeat(images, 60, axis=0).tolist()})  # 2,400 images
    answers: list = []

    def send():
        answers.append(post(server.predict_url(), data=body, timeout=120))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()

    # SIGTERM once the server has received all four (a loaded machine may take seconds to send
    # 4 x 7 MB; a request not yet received when the signal comes is, rightly, not answered)
    def received() -> float:  # being answered, or answered already, in one scrape: a request
        # that ends between two scrapes would count in both
        text = get(server.url("/metrics")).text
        return _metric(server, 'tfvision_requests_in_progress{endpoint="predict"}', text) + sum(
            _metric(server, f'tfvision_requests_total{{code="{c}",endpoint="predict"}}', text)
            for c in (200, 400, 413, 500, 503)
        )

    deadline = time.monotonic() + 60
    while received() < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert received() == 4
    server.process.send_signal(signal.SIGTERM)
    for t in threads:
        t.join(timeout=120)
    code = server.process.wait(timeout=120)  # one signal only: a second one exits at once
    err = server.process.stderr.read()
    assert code == 0, err
    assert [a.status_code for a in answers] == [200] * 4
    assert all(len(a.json()["predictions"]) == 2400 for a in answers)
    with pytest.raises(requests.ConnectionError):
        get(server.url("/v2/health/live"), timeout=5)


def test_a_savedmodel_export_serves_raw_image_bytes_as_predict_reads_them(
    mnist_run, digits, tmp_path
):
    """The image_bytes signature, loaded with plain tf.saved_model.load in a fresh process (as
    TF Serving would), labels colour, RGBA, resized and JPEG files as `tfvision predict` does;
    --version writes TF Serving's layout, and `serve` takes its base folder."""
    from tests.helpers import run

    paths, images, _ = digits
    files = list(paths[:6])
    for i, a in enumerate(images[6:12]):
        grey = a[..., 0]
        kinds = [
            ("rgb.png", np.stack([grey] * 3, -1), {}),
            ("rgba.png", np.dstack([grey] * 3 + [np.full_like(grey, 255)]), {}),
            ("big.png", np.kron(grey, np.ones((3, 3), np.uint8)), {}),
            ("photo.jpg", np.stack([grey] * 3, -1), {"quality": 95}),
            ("small.bmp", grey[::2, ::2], {}),
            ("frame.gif", grey, {}),
        ]
        name, array, save = kinds[i]
        files.append(write_image(tmp_path / "kinds" / f"{i}-{name}", array, **save))
    base = tmp_path / "tfserving"
    r = run(
        tfvision_cmd("export", mnist_run, "--format", "savedmodel", "--version", "2", "--out", base)
    )
    assert r.returncode == 0, r.stderr
    assert (base / "2" / "saved_model.pb").is_file()
    expected = predicted_by_cli(mnist_run, files)
    code = (
        "import sys, json\n"
        "import tensorflow as tf\n"
        f"m = tf.saved_model.load({str(base / '2')!r})\n"
        "f = m.signatures['image_bytes']\n"
        "data = [open(p, 'rb').read() for p in sys.argv[1:]]\n"
        "p = f(image_bytes=tf.constant(data))['probabilities'].numpy()\n"
        "print(json.dumps([str(i) for i in p.argmax(1)]))\n"
    )
    r = run([__import__("sys").executable, "-c", code, *map(str, files)])
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout.splitlines()[-1]) == expected
    assert predicted_by_cli(base, files) == expected  # a base folder: its highest version
