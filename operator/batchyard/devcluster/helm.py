"""Build the Helm CLI from its Go module, once per machine, cached by version.

The chart in `helm/batchyard` is linted, rendered (`make deploy-manifest`) and installed into the
local control plane by the tests, so Helm is a build input like kubectl. There is no release
download here: `helm.sh/helm/v3` has no `replace` lines, so a plain `go install` works. The
ldflags are the ones Helm's own Makefile sets: the release version (otherwise `helm version`
says "v3.22+unreleased") and the Kubernetes version its client-go speaks (otherwise
`.Capabilities.KubeVersion` defaults to 1.20 in `helm template` and `helm lint`).

    python -m batchyard.devcluster.helm          # build (or reuse) and print the path
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

from batchyard.devcluster.build import Log, _check_go, _go_env, _run, _stderr, cache_root

# Latest Helm 3 whose go.mod says `go 1.26.0` (checked with `go mod download -json`); Helm 4
# changed the CLI and chart API, so we stay on 3 until the chart is tested with 4.
HELM_VERSION = "3.22.0"
HELM_MODULE = "helm.sh/helm/v3"


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


def main() -> None:
    print(ensure_helm())


if __name__ == "__main__":
    main()
