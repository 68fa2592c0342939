"""Build the Helm CLI from its Go module, once per machine, cached by version.

The chart in `helm/batchyard` is linted, rendered (`make deploy-manifest`) and installed into the
local control plane by the tests, so Helm is a build input like kubectl. There is no release
download here: `helm.sh/helm/v3` has no `replace` lines, so a plain `go install` works. The
ldflags are the ones Helm's own Makefile sets: the release version (otherwise `helm version`
says "v3.22+unreleased") and the Kubernetes version its client-go speaks (otherwise
`.Capabilities.KubeVersion` defaults to 1.20 in `helm template` and `helm lint`).

The plain manifest in `deploy/` is rendered from the chart here too, so that `make
deploy-manifest` and the test that keeps it in step run the same code:

    python -m batchyard.devcluster.helm                    # build (or reuse) helm, print its path
    python -m batchyard.devcluster.helm deploy-manifest    # write deploy/batchyard.yaml and
                                                           # deploy/batchyard-gateway.yaml
    python -m batchyard.devcluster.helm deploy-manifest --check   # exit 1 if one is stale
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from batchyard.devcluster.build import Log, _check_go, _go_env, _run, _stderr, cache_root

# Latest Helm 3 whose go.mod says `go 1.26.0` (checked with `go mod download -json`); Helm 4
# changed the CLI and chart API, so we stay on 3 until the chart is tested with 4.
HELM_VERSION = "3.22.0"
HELM_MODULE = "helm.sh/helm/v3"

# The plain manifest: the chart with its default values, as release "batchyard" in its own namespace.
DEPLOY_RELEASE = "batchyard"
DEPLOY_NAMESPACE = "batchyard-system"
DEPLOY_HEADER = f"""\
# Batchyard operator, for `kubectl apply` without Helm. Generated from helm/batchyard with its
# default values by `make deploy-manifest` (helm template). Do not edit: change the chart.
# Without the admission webhook (admissionWebhook.enabled=false): its certificate must be made
# per install, which a static file can't do; the operator's own size check still applies (README
# "Security"). Install with Helm for the webhook.
#
#   kubectl apply --server-side -f crds/        # the CRDs first
#   kubectl apply -f deploy/batchyard.yaml
---
apiVersion: v1
kind: Namespace
metadata:
  name: {DEPLOY_NAMESPACE}
  labels:
    app.kubernetes.io/part-of: batchyard
"""


# The gateway's objects alone (templates/gateway.yaml), rendered with gateway.enabled=true and the
# other values at their defaults, for the same release and namespace.
GATEWAY_TEMPLATE = "templates/gateway.yaml"
GATEWAY_HEADER = f"""\
# Batchyard's AWS Batch API gateway, for `kubectl apply` without Helm: only the gateway's objects,
# generated from helm/batchyard with gateway.enabled=true (other values at their defaults) by
# `make deploy-manifest` (helm template). Do not edit: change the chart.
#
#   kubectl apply -f deploy/batchyard.yaml            # the operator and namespace {DEPLOY_NAMESPACE} first
#   kubectl apply -f deploy/batchyard-gateway.yaml
#
# It may impersonate no ServiceAccount yet (gateway.serviceAccounts is empty by default): grant
# `impersonate` on each key's ServiceAccount as the README's "Use boto3 and the AWS CLI" shows.
"""


def helm_path(root: Path | None = None) -> Path:
    return (root or cache_root()) / "bin" / f"helm-{HELM_VERSION}" / "helm"


def _client_go_minor(gomod: Path) -> tuple[str, str]:
    """k8s.io/client-go v0.X.Y speaks Kubernetes 1.X (Helm's Makefile derives it the same way)."""
    for line in gomod.read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "k8s.io/client-go":
            major, minor = parts[1].lstrip("v").split(".")[:2]
            return str(int(major) + 1), minor
    raise RuntimeError(f"k8s.io/client-go not required in {gomod}")


def _ldflags(k8s_major: str, k8s_minor: str) -> str:
    version = f"{HELM_MODULE}/internal/version"
    flags = ["-s -w", f"-X {version}.version=v{HELM_VERSION}", f"-X {version}.metadata="]
    for pkg in ("pkg/lint/rules", "pkg/chartutil"):
        flags += [
            f"-X {HELM_MODULE}/{pkg}.k8sVersionMajor={k8s_major}",
            f"-X {HELM_MODULE}/{pkg}.k8sVersionMinor={k8s_minor}",
        ]
    return " ".join(flags)


def build_helm(root: Path, out: Path, log: Log) -> None:
    work = root / "build"
    work.mkdir(parents=True, exist_ok=True)
    info = json.loads(_run(["go", "mod", "download", "-json", f"{HELM_MODULE}@v{HELM_VERSION}"], work, log))
    major, minor = _client_go_minor(Path(info["GoMod"]))
    out.mkdir(parents=True, exist_ok=True)
    args = [
        "go",
        "install",
        "-trimpath",
        "-ldflags",
        _ldflags(major, minor),
        f"{HELM_MODULE}/cmd/helm@v{HELM_VERSION}",
    ]
    log(f"  $ GOBIN={out} {' '.join(args)}")
    proc = subprocess.run(
        args, cwd=work, env={**_go_env(), "GOBIN": str(out)}, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"helm install failed:\n{proc.stderr[-4000:]}")


def ensure_helm(log: Log = _stderr) -> Path:
    """Return the helm binary, building it if missing (cold: a few minutes on 2 cores; warm: instant)."""
    root = cache_root()
    path = helm_path(root)
    if path.exists():
        return path
    _check_go()
    started = time.monotonic()
    log(f"building helm {HELM_VERSION} into {path.parent} (cached afterwards)")
    build_helm(root, path.parent, log)
    if not path.exists():
        raise RuntimeError(f"build finished but {path} is missing")
    log(f"built helm in {time.monotonic() - started:.0f}s")
    return path


def _template(helm: Path, chart: Path, *extra: str) -> str:
    args = [str(helm), "template", DEPLOY_RELEASE, str(chart), "--namespace", DEPLOY_NAMESPACE, *extra]
    proc = subprocess.run(args, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed:\n{proc.stderr[-4000:]}")
    return proc.stdout


def render_deploy_manifest(helm: Path, chart: Path) -> str:
    """`helm template` of the chart with default values, behind a Namespace and a header; the
    admission webhook off (a committed file must not carry a private key)."""
    return DEPLOY_HEADER + _template(helm, chart, "--set", "admissionWebhook.enabled=false")


def render_gateway_manifest(helm: Path, chart: Path) -> str:
    """`helm template` of the gateway's objects only, with gateway.enabled=true, behind a header."""
    return GATEWAY_HEADER + _template(
        helm, chart, "--set", "gateway.enabled=true", "--show-only", GATEWAY_TEMPLATE
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m batchyard.devcluster.helm", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    deploy = sub.add_parser("deploy-manifest", help="render the chart into the plain manifest")
    deploy.add_argument("--chart", type=Path, default=Path("helm/batchyard"))
    deploy.add_argument("--out", type=Path, default=Path("deploy/batchyard.yaml"))
    deploy.add_argument("--gateway-out", type=Path, default=Path("deploy/batchyard-gateway.yaml"))
    deploy.add_argument("--check", action="store_true", help="fail if a file differs instead of writing")
    args = parser.parse_args(argv)
    helm = ensure_helm()
    if args.command is None:
        print(helm)
        return 0
    wanted = {
        args.out: render_deploy_manifest(helm, args.chart),
        args.gateway_out: render_gateway_manifest(helm, args.chart),
    }
    if args.check:
        stale = [out for out, text in wanted.items() if not out.exists() or out.read_text() != text]
        for out in stale:
            _stderr(f"{out} is stale: run `make deploy-manifest`")
        return 1 if stale else 0
    for out, text in wanted.items():
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        _stderr(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
