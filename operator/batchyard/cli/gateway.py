"""`batchyard gateway`: serve the AWS Batch API (boto3, the AWS CLI) on top of the custom resources."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
from typing import Any

from batchyard.adapters.kube import load_credentials
from batchyard.gateway import metrics
from batchyard.gateway.server import Gateway, Settings, serve


def register(sub: Any) -> None:
    p = sub.add_parser(
        "gateway",
        help="serve the AWS Batch API: point boto3 / aws --endpoint-url here",
        description="An HTTP server speaking the AWS Batch API (botocore's batch 2016-08-10 model). "
        "Access keys are read from Secrets labelled batchyard.io/gateway-credentials=true "
        "(data: accessKeyId, secretAccessKey, namespace, serviceAccount).",
    )
    env = os.environ.get
    p.add_argument("--host", default=env("BATCHYARD_GATEWAY_HOST", "0.0.0.0"))
    p.add_argument("--port", type=int, default=int(env("BATCHYARD_GATEWAY_PORT", "8900")))
    p.add_argument(
        "--region", default=env("BATCHYARD_GATEWAY_REGION", "us-east-1"), help="the region in ARNs"
    )
    p.add_argument(
        "--secrets-namespace",
        default=env("BATCHYARD_GATEWAY_SECRETS_NAMESPACE") or None,
        help="namespace of the credential Secrets (default: all namespaces)",
    )
    p.add_argument(
        "--provider",
        default=env("BATCHYARD_GATEWAY_PROVIDER", '{"type": "kwok"}'),
        help="spec.provider (JSON) for MANAGED compute environments created through the API",
    )
    p.add_argument(
        "--metrics-port", type=int, default=int(env("BATCHYARD_GATEWAY_METRICS_PORT", "8081")), help="0: off"
    )
    p.add_argument("--log-level", default=env("BATCHYARD_LOG_LEVEL", "INFO"))
    p.add_argument(
        "--loop",
        choices=("uvloop", "asyncio"),
        default=env("BATCHYARD_GATEWAY_LOOP") or default_loop(),
        help="event loop (default: uvloop when installed, else asyncio's own)",
    )
    p.set_defaults(func=cmd_gateway)


async def run_gateway(args: argparse.Namespace) -> None:
    settings = Settings(
        region=args.region, secrets_namespace=args.secrets_namespace, provider=json.loads(args.provider)
    )
    gateway = Gateway(await load_credentials(), settings)
    runner = await serve(gateway, args.host, args.port)
    print(f"batchyard gateway: AWS Batch API on http://{args.host}:{args.port}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await gateway.stop()


def cmd_gateway(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if args.metrics_port:
        metrics.serve(args.metrics_port)
    if args.loop == "uvloop":
        # uvloop's event loop and TLS transport run in C what asyncio runs in Python (the
        # selector loop, sslproto). Optional: not a dependency (bench/RESULTS.md).
        try:
            import uvloop
        except ImportError:
            raise SystemExit("batchyard gateway: --loop uvloop needs uvloop installed") from None
        uvloop.run(run_gateway(args))
    else:
        asyncio.run(run_gateway(args))
    return 0


def default_loop() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"
