"""`batchyard run`: the operator process (kopf, with Batchyard's handlers).

Every flag has a BATCHYARD_* variable (the Helm chart sets those): the served namespaces, leader
election over a Lease (on by default: two replicas are safe, one dispatches), the /metrics port,
the admission webhook's port and certificate (every replica serves it),
plus BATCHYARD_KEEP_PODS and BATCHYARD_FINISHED_JOB_TTL_SECONDS (read by the handlers).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
from typing import Any


def register(sub: Any) -> None:
    env = os.environ.get
    run = sub.add_parser("run", help="run the operator against the current KUBECONFIG / in-cluster config")
    run.add_argument("--standalone", action="store_true",
                     help="no leader election: this must be the only replica (e.g. a local run)")  # fmt: skip
    run.add_argument("--liveness", default=env("BATCHYARD_LIVENESS", ""),
                     help="kopf liveness endpoint, e.g. http://0.0.0.0:8081/healthz")  # fmt: skip
    run.add_argument("--log-level", default=env("BATCHYARD_LOG_LEVEL", "INFO"))
    run.add_argument("--namespaces", default=env("BATCHYARD_NAMESPACES", ""),
                     help="comma-separated namespaces to serve (default: all)")  # fmt: skip
    run.add_argument("--metrics-port", default=env("BATCHYARD_METRICS_PORT", ""),
                     help="serve Prometheus /metrics on this port (default: off)")  # fmt: skip
    run.add_argument("--webhook-port", default=env("BATCHYARD_WEBHOOK_PORT", ""),
                     help="serve the admission webhook (AWS's size quotas) over HTTPS on this port (default: off)")  # fmt: skip
    run.add_argument("--webhook-address", default=env("BATCHYARD_WEBHOOK_ADDRESS", "0.0.0.0"))
    run.add_argument("--webhook-cert", default=env("BATCHYARD_WEBHOOK_CERT", ""),
                     help="PEM certificate (chain) of the webhook server; re-read when it changes")  # fmt: skip
    run.add_argument("--webhook-key", default=env("BATCHYARD_WEBHOOK_KEY", ""), help="its PEM private key")
    run.add_argument("--lease-name", default=env("BATCHYARD_LEASE_NAME", "batchyard"))
    lease_ns = env("BATCHYARD_LEASE_NAMESPACE") or env("POD_NAMESPACE", "")
    run.add_argument("--lease-namespace", default=lease_ns,
                     help="namespace of the leader Lease (default: the pod's, else default)")  # fmt: skip
    run.set_defaults(func=cmd_run)


def cmd_run(args: argparse.Namespace) -> int:
    import kopf

    import batchyard.handlers  # noqa: F401 - registers the handlers
    from batchyard.handlers.operator import Options

    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=args.log_level.upper(), format=fmt)
    if logging.getLogger().getEffectiveLevel() > logging.DEBUG:
        # kopf logs "Handler '...' succeeded." at INFO for every watch event (BatchJobs no longer
        # go through kopf, the other kinds do): no information, measurable CPU (issue 14). Its
        # warnings and errors still show; --log-level DEBUG shows every line.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    defaults = Options.from_env(leader_election_default=True)
    namespaces = tuple(n.strip() for n in args.namespaces.split(",") if n.strip())
    options = Options(
        namespaces=namespaces,
        leader_election=defaults.leader_election and not args.standalone,
        lease_name=args.lease_name,
        lease_namespace=args.lease_namespace or "default",
        metrics_port=int(args.metrics_port) if str(args.metrics_port).strip() else None,
        webhook_port=int(args.webhook_port) if str(args.webhook_port).strip() else None,
        webhook_address=args.webhook_address,
        webhook_cert=args.webhook_cert,
        webhook_key=args.webhook_key,
    )
    options.webhook_server()  # a port without a certificate is refused before anything starts
    memo = kopf.Memo(options=options)
    asyncio.run(
        kopf.operator(
            # Served namespaces only: a namespace-limited install has Roles there, nothing else.
            clusterwide=not namespaces,
            namespaces=list(namespaces),
            # kopf peering stays off: the Lease guards the whole engine (see handlers.operator).
            standalone=True,
            liveness_endpoint=args.liveness or None,
            memo=memo,
        )
    )
    return 0
