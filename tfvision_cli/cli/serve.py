"""`tfvision serve MODEL`: TF Serving's REST and gRPC APIs on this machine."""

from __future__ import annotations

from pathlib import Path

import typer

from tfvision_cli import console
from tfvision_cli.cli.app import app
from tfvision_cli.cli.common import Json, examples, model_argument

EXAMPLES = examples(
    "tfvision serve latest",
    "tfvision serve saved_models/mnist/exports/tfserving --name mnist --port 8080 --grpc-port 0",
)
SERVER = "Server"
BATCHING = "Batching and limits"


@app.command("serve", epilog=EXAMPLES)
def serve(
    model: str = model_argument(
        "latest",
        help="Run (folder, name, latest), .keras file, export, or a TF Serving base folder "
        "of numbered versions (the highest is served).",
    ),
    name: str | None = typer.Option(
        None,
        "--name",
        help="The model's name in URLs (default: the run's or export's folder name).",
        rich_help_panel=SERVER,
    ),
    host: str = typer.Option(
        "127.0.0.1",
        "--host",
        help="Address to listen on (0.0.0.0: every interface; then set an API key).",
        rich_help_panel=SERVER,
    ),
    port: int = typer.Option(
        8501,
        "--port",
        min=0,
        max=65535,
        help="REST port (0: any free one).",
        rich_help_panel=SERVER,
    ),
    grpc_port: int = typer.Option(
        8500,
        "--grpc-port",
        min=0,
        max=65535,
        help="gRPC port (0: no gRPC).",
        rich_help_panel=SERVER,
    ),
    api_key_file: Path | None = typer.Option(
        None,
        "--api-key-file",
        help="A file holding the API key every endpoint but health then requires "
        "(Authorization: Bearer KEY); default: $TFVISION_API_KEY.",
        rich_help_panel=SERVER,
    ),
    max_batch_size: int = typer.Option(
        32,
        "--max-batch-size",
        min=1,
        max=65_536,
        help="Concurrent requests are merged into model calls of up to this many images.",
        rich_help_panel=BATCHING,
    ),
    batch_timeout_ms: float = typer.Option(
        2.0,
        "--batch-timeout-ms",
        min=0,
        max=10_000,
        help="How long a call waits for more requests to merge.",
        rich_help_panel=BATCHING,
    ),
    max_queue: int = typer.Option(
        1024,
        "--max-queue",
        min=1,
        max=1_000_000,
        help="Requests waiting for the model; more are answered 503 with Retry-After.",
        rich_help_panel=BATCHING,
    ),
    max_body_mb: float = typer.Option(
        16.0,
        "--max-body-mb",
        min=0.001,
        max=4096,
        help="Largest request body (413 beyond it).",
        rich_help_panel=BATCHING,
    ),
    as_json: Json = False,
) -> None:
    """Serve a model with TF Serving's REST and gRPC APIs (the same client code works against
    TF Serving itself), batching concurrent requests; health, readiness and Prometheus metrics.
    SIGTERM or Ctrl-C stops it gracefully."""
    from tfvision_cli.serving.server import ServeOptions
    from tfvision_cli.serving.server import serve as run_server

    options = ServeOptions(
        name,
        host,
        port,
        grpc_port,
        max_batch_size,
        batch_timeout_ms,
        max_body_mb,
        max_queue,
        api_key_file,
    )

    def started(s) -> None:
        if as_json:
            console.emit_json(
                {"model": s.name, "version": s.version, "rest": s.rest, "grpc": s.grpc}
            )
        base = f"{s.rest}/v1/models/{s.name}"
        console.log(f"serving {s.name} version {s.version}")
        console.log("  REST  {u}  (:predict, /metadata; /predict takes an upload)", u=base)
        if s.grpc:
            console.log("  gRPC  {u}  (tensorflow.serving.PredictionService)", u=s.grpc)
        console.log("  ready {u}/v2/health/ready   metrics {u}/metrics", u=s.rest)
        auth = ' -H "Authorization: Bearer $TFVISION_API_KEY"' if s.keyed else ""
        console.log("  try:  {c}", c=f"curl{auth} -F file=@digit.png {s.rest}/predict")
        if s.exposed and not s.keyed:
            console.warn(
                f"listening on {host} without an API key: anyone who reaches this machine can "
                "use the model (set TFVISION_API_KEY or --api-key-file)"
            )

    raise typer.Exit(run_server(model, options, started))
