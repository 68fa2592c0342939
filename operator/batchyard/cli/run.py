"""`batchyard run`: the operator process (kopf, with Batchyard's handlers)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from typing import Any


def register(sub: Any) -> None:
    run = sub.add_parser("run", help="run the operator against the current KUBECONFIG / in-cluster config")
    run.add_argument("--standalone", action="store_true", help="no peering with other replicas")
    run.add_argument("--liveness", default=os.environ.get("BATCHYARD_LIVENESS", ""),
                     help="kopf liveness endpoint, e.g. http://0.0.0.0:8081/healthz")  # fmt: skip
    run.add_argument("--log-level", default=os.environ.get("BATCHYARD_LOG_LEVEL", "INFO"))
    run.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    import kopf

    import batchyard.handlers  # noqa: F401 - registers the handlers

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    asyncio.run(
        kopf.operator(
            clusterwide=True,
            standalone=args.standalone,
            liveness_endpoint=args.liveness or None,
        )
    )
    return 0
