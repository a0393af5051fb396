"""`tfvision serve` under load: requests/s and latency of one-image :predict over REST (tensor and
b64) and gRPC at concurrency 1, 8 and 64, and images/s for 256-image requests, each next to the
same model's in-process throughput through its compiled function on the same images (issue 33).

    TFDS_DATA_DIR=... python benchmarks/serve_mnist.py RUN_DIR [--seconds 10]

REST load comes from `hey` (Debian's package, a compiled Go load generator: apt-get install hey).
No compiled gRPC load generator is packaged here (ghz is not), so gRPC load comes from Python
threads using the official stubs, in one separate process: its own Python cost shares the two
cores with the server, which the table says.
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

PY = sys.executable


def mnist_test(n: int) -> np.ndarray:
    from tfvision_cli.data.catalog import open_dataset

    images, _ = open_dataset("mnist").arrays("test")
    return images[:n]


def start(run: str, rest: int, grpc: int, *extra: str) -> subprocess.Popen:
    command = [PY, "-m", "tfvision_cli", "serve", run, "--port", str(rest)]
    process = subprocess.Popen(
        [*command, "--grpc-port", str(grpc), "--json", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    if not process.stdout.readline():
        raise SystemExit("the server did not start")
    return process


def hey(url: str, body: Path, concurrency: int, seconds: float) -> dict:
    out = subprocess.run(
        ["hey", "-z", f"{seconds}s", "-c", str(concurrency), "-m", "POST"]
        + ["-T", "application/json", "-D", str(body), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])
    slowest = float(re.search(r"Slowest:\s+([\d.]+) secs", out)[1])

    def percentile(p: int) -> float:  # hey leaves out what too few requests cannot give
        found = re.search(rf"\b{p}% in ([\d.]+) secs", out)
        return (float(found[1]) if found else slowest) * 1000

    p50, p99 = percentile(50), percentile(99)
    codes = dict(re.findall(r"\[(\d+)\]\s+(\d+) responses", out))
    return {"rps": rps, "p50_ms": p50, "p99_ms": p99, "codes": codes}


def grpc_client(address: str, name: str, concurrency: int, seconds: float, image_file: str):
    """The gRPC load, in its own process: threads sending one-image Predict calls."""
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    from tfvision_cli.tf_import import tf as import_tf

    tf = import_tf()
    channel = grpc.insecure_channel(address)
    stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(np.load(image_file)))
    stub.Predict(request, timeout=30)
    latencies: list[float] = []
    stop = time.perf_counter() + seconds

    def worker():
        mine = []
        while time.perf_counter() < stop:
            t = time.perf_counter()
            stub.Predict(request, timeout=30)
            mine.append(time.perf_counter() - t)
        latencies.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ms = np.array(latencies) * 1000
    rps = len(ms) / (time.perf_counter() - start)
    print(
        json.dumps({"rps": rps, "p50_ms": np.percentile(ms, 50), "p99_ms": np.percentile(ms, 99)})
    )


def grpc_load(address: str, name: str, image_file: Path, concurrency: int, seconds: float):
    out = subprocess.run(
        [PY, __file__, "--grpc-client", address, name, str(concurrency), str(seconds)]
        + [str(image_file)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.splitlines()[-1])


def in_process(run: str, images: np.ndarray, batch: int, seconds: float) -> float:
    """Images/s of the model's compiled function on the same images, in this process."""
    from tfvision_cli.artifacts.loaders import load_predictor

    predictor = load_predictor(run)
    x = images[:batch]
    predictor.predict(x, batch_size=batch)
    n, stop = 0, time.perf_counter() + seconds
    start = time.perf_counter()
    while time.perf_counter() < stop:
        predictor.predict(x, batch_size=batch)
        n += len(x)
    return n / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run")
    ap.add_argument("--seconds", type=float, default=10)
    args = ap.parse_args()
    if shutil.which("hey") is None:
        raise SystemExit("needs hey: apt-get install hey")
    from PIL import Image

    from tfvision_cli.training.cluster import free_loopback_ports

    images = mnist_test(256)
    tmp = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    tensor = tmp / "tensor.json"
    tensor.write_text(json.dumps({"instances": images[:1].tolist()}))
    png = io.BytesIO()
    Image.fromarray(images[0].squeeze(-1)).save(png, "PNG")
    b64 = tmp / "b64.json"
    b64.write_text(
        json.dumps(
            {
                "signature_name": "image_bytes",
                "instances": [{"b64": base64.b64encode(png.getvalue()).decode()}],
            }
        )
    )
    many = tmp / "many.json"
    many.write_text(json.dumps({"instances": images.tolist()}))
    np.save(tmp / "one.npy", images[:1])
    np.save(tmp / "many.npy", images)
    many_b64 = tmp / "many_b64.json"
    encoded = []
    for a in images:
        buffer = io.BytesIO()
        Image.fromarray(a.squeeze(-1)).save(buffer, "PNG")
        encoded.append({"b64": base64.b64encode(buffer.getvalue()).decode()})
    many_b64.write_text(json.dumps({"signature_name": "image_bytes", "instances": encoded}))
    rest_port, grpc_port = free_loopback_ports(2)
    server = start(args.run, rest_port, grpc_port)
    name = Path(args.run).name
    url = f"http://127.0.0.1:{rest_port}/v1/models/{name}:predict"
    rows = []
    try:
        for c in (1, 8, 64):
            rows.append(("REST tensor, 1 image", c, hey(url, tensor, c, args.seconds)))
            rows.append(("REST b64 PNG, 1 image", c, hey(url, b64, c, args.seconds)))
            grpc = grpc_load(f"127.0.0.1:{grpc_port}", name, tmp / "one.npy", c, args.seconds)
            rows.append(("gRPC tensor, 1 image", c, grpc))
            print(rows[-3:], file=sys.stderr, flush=True)
        for c in (1, 4):
            r = hey(url, many, c, args.seconds)
            r["images_per_s"] = r["rps"] * len(images)
            rows.append(("REST tensor, 256 images", c, r))
            r = hey(url, many_b64, c, args.seconds)
            r["images_per_s"] = r["rps"] * len(images)
            rows.append(("REST b64 PNG, 256 images", c, r))
            r = grpc_load(f"127.0.0.1:{grpc_port}", name, tmp / "many.npy", c, args.seconds)
            r["images_per_s"] = r["rps"] * len(images)
            rows.append(("gRPC tensor, 256 images", c, r))
            print(rows[-3:], file=sys.stderr, flush=True)
    finally:
        server.terminate()
        server.wait()
    reference_one = in_process(args.run, images, 1, args.seconds)
    reference_256 = in_process(args.run, images, 256, args.seconds)
    print(
        f"in-process compiled function: batch 1 {reference_one:,.0f} images/s, "
        f"batch 256 {reference_256:,.0f} images/s"
    )
    print("| request | concurrency | requests/s | p50 ms | p99 ms | images/s | codes |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for what, c, r in rows:
        images_s = r.get("images_per_s", r["rps"])
        print(
            f"| {what} | {c} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | "
            f"{images_s:,.0f} | {r.get('codes', '')} |"
        )
    shutil.rmtree(tmp)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--grpc-client"]:
        a = sys.argv[2:]
        grpc_client(a[0], a[1], int(a[2]), float(a[3]), a[4])
    else:
        main()
