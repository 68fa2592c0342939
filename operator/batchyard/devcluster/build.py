"""Build the control-plane binaries from Go modules, once per machine, cached by version.

There is no Docker and no release download here, so kube-apiserver, kube-scheduler,
kube-controller-manager and kubectl are compiled from `k8s.io/kubernetes` through a wrapper
module (k/k's go.mod maps every staging module to `./staging/...`, which `go install pkg@v`
refuses), etcd from a three-line wrapper around `etcdmain`, and kwok with `go install`.

Everything lands in `<cache>/bin/<component>-<version>/`; a component whose binaries are all
present is never rebuilt. The cache root is `$BATCHYARD_CACHE`, else `~/.cache/batchyard`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

K8S_VERSION = "1.36.3"
ETCD_VERSION = "3.6.10"
KWOK_VERSION = "0.8.0"

K8S_COMMANDS = ("kube-apiserver", "kube-scheduler", "kube-controller-manager", "kubectl")

Log = Callable[[str], None]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def cache_root() -> Path:
    return Path(os.environ.get("BATCHYARD_CACHE") or Path.home() / ".cache" / "batchyard")


@dataclass(frozen=True)
class Binaries:
    """Paths of every executable the local control plane needs."""

    etcd: Path
    kube_apiserver: Path
    kube_scheduler: Path
    kube_controller_manager: Path
    kubectl: Path
    kwok: Path
    kwok_stages: Path  # directory holding kwok's upstream stage YAMLs, copied from the module cache

    @classmethod
    def at(cls, root: Path) -> Binaries:
        k8s = root / "bin" / f"k8s-{K8S_VERSION}"
        kwok = root / "bin" / f"kwok-{KWOK_VERSION}"
        return cls(
            etcd=root / "bin" / f"etcd-{ETCD_VERSION}" / "etcd",
            kube_apiserver=k8s / "kube-apiserver",
            kube_scheduler=k8s / "kube-scheduler",
            kube_controller_manager=k8s / "kube-controller-manager",
            kubectl=k8s / "kubectl",
            kwok=kwok / "kwok",
            kwok_stages=kwok / "stages",
        )

    def missing(self) -> list[Path]:
        paths = [
            self.etcd,
            self.kube_apiserver,
            self.kube_scheduler,
            self.kube_controller_manager,
            self.kubectl,
            self.kwok,
            self.kwok_stages / "pod-ready.yaml",
        ]
        return [p for p in paths if not p.exists()]


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    # local: never download another toolchain; static binaries need no cgo.
    env.update(GOTOOLCHAIN="local", CGO_ENABLED="0", GOFLAGS="-mod=mod")
    return env


def _run(args: list[str], cwd: Path, log: Log) -> str:
    log(f"  $ {' '.join(args)}")
    proc = subprocess.run(args, cwd=cwd, env=_go_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} failed in {cwd}:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return proc.stdout


def _check_go() -> None:
    if shutil.which("go") is None:
        raise RuntimeError("Go is required to build the local control plane (go >= 1.26 on PATH)")


def _version_ldflags() -> str:
    minor = K8S_VERSION.split(".")[1]
    pkg = "k8s.io/component-base/version"
    return " ".join(
        [
            "-s -w",
            f"-X {pkg}.gitVersion=v{K8S_VERSION}",
            f"-X {pkg}.gitMajor=1",
            f"-X {pkg}.gitMinor={minor}",
            f"-X {pkg}.gitTreeState=clean",
        ]
    )


def build_k8s(root: Path, out: Path, log: Log) -> None:
    """Wrapper module: require k8s.io/kubernetes and replace every staging module by its v0.x tag."""
    work = root / "build" / f"k8s-{K8S_VERSION}"
    work.mkdir(parents=True, exist_ok=True)
    minor, patch = K8S_VERSION.split(".")[1:]
    if not (work / "go.mod").exists():
        _run(["go", "mod", "init", "local/batchyard-k8s"], work, log)
        _run(["go", "mod", "edit", "-go=1.26.0"], work, log)
    info = json.loads(
        _run(["go", "mod", "download", "-json", f"k8s.io/kubernetes@v{K8S_VERSION}"], work, log)
    )
    staging = [
        line.split("=>")[0].split()[-1]
        for line in Path(info["GoMod"]).read_text().splitlines()
        if "=> ./staging/" in line
    ]
    if not staging:
        raise RuntimeError(f"no staging replace lines found in {info['GoMod']}")
    for module in staging:
        _run(["go", "mod", "edit", f"-replace={module}={module}@v0.{minor}.{patch}"], work, log)
    pkgs = [f"k8s.io/kubernetes/cmd/{cmd}" for cmd in K8S_COMMANDS]
    _run(["go", "get", *[f"{p}@v{K8S_VERSION}" for p in pkgs]], work, log)
    out.mkdir(parents=True, exist_ok=True)
    _run(["go", "build", "-trimpath", "-ldflags", _version_ldflags(), "-o", f"{out}/", *pkgs], work, log)


def build_etcd(root: Path, out: Path, log: Log) -> None:
    """etcd's server module has relative replaces too, but its main is one call: wrap it."""
    work = root / "build" / f"etcd-{ETCD_VERSION}"
    work.mkdir(parents=True, exist_ok=True)
    (work / "main.go").write_text(
        "package main\n\n"
        'import (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\n'
        "func main() { etcdmain.Main(os.Args) }\n"
    )
    if not (work / "go.mod").exists():
        _run(["go", "mod", "init", "local/batchyard-etcd"], work, log)
    _run(["go", "get", f"go.etcd.io/etcd/server/v3@v{ETCD_VERSION}"], work, log)
    out.mkdir(parents=True, exist_ok=True)
    _run(["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(out / "etcd"), "."], work, log)


def go_install(package: str, out: Path, work: Path, log: Log) -> None:
    """`go install package@version` with its binary put in `out` (GOBIN): for modules whose
    go.mod has no `replace` lines (kwok, Kueue), which `go install pkg@v` accepts."""
    args = ["go", "install", "-trimpath", "-ldflags", "-s -w", package]
    log(f"  $ GOBIN={out} {' '.join(args)}")
    proc = subprocess.run(
        args, cwd=work, env={**_go_env(), "GOBIN": str(out)}, capture_output=True, text=True
    )
    if proc.returncode != 0:
        raise RuntimeError(f"go install {package} failed:\n{proc.stderr[-4000:]}")


def build_kwok(root: Path, out: Path, log: Log) -> None:
    """kwok's go.mod has no replaces, so `go install` works; its stage YAMLs come from the module."""
    out.mkdir(parents=True, exist_ok=True)
    work = root / "build"
    work.mkdir(parents=True, exist_ok=True)
    env_out = _run(["go", "env", "GOMODCACHE"], work, log).strip()
    go_install(f"sigs.k8s.io/kwok/cmd/kwok@v{KWOK_VERSION}", out, work, log)
    stages = out / "stages"
    stages.mkdir(exist_ok=True)
    src = Path(env_out) / f"sigs.k8s.io/kwok@v{KWOK_VERSION}" / "kustomize" / "stage"
    for rel in (
        "pod/fast/pod-ready.yaml",
        "pod/fast/pod-complete.yaml",
        "pod/fast/pod-delete.yaml",
        "node/fast/node-initialize.yaml",
        "node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
    ):
        shutil.copyfile(src / rel, stages / Path(rel).name)


def ensure_binaries(log: Log = _stderr) -> Binaries:
    """Return the binaries, building whatever is missing (cold: ~15 min on 2 cores; warm: instant)."""
    root = cache_root()
    bins = Binaries.at(root)
    if not bins.missing():
        return bins
    _check_go()
    steps: list[tuple[str, Path, Callable[[Path, Path, Log], None]]] = [
        ("etcd", bins.etcd.parent, build_etcd),
        ("kwok", bins.kwok.parent, build_kwok),
        ("kubernetes", bins.kube_apiserver.parent, build_k8s),
    ]
    for name, out, build in steps:
        if any(p.parent == out or p.parent.parent == out for p in bins.missing()):
            started = time.monotonic()
            log(f"building {name} into {out} (cached afterwards)")
            build(root, out, log)
            log(f"built {name} in {time.monotonic() - started:.0f}s")
    still = bins.missing()
    if still:
        raise RuntimeError(f"build finished but these are missing: {still}")
    return bins


def main(argv: list[str] | None = None) -> None:
    """`python -m batchyard.devcluster build [--kueue]`: the control plane; with --kueue also
    Kueue's manager (optional, for the throughput benchmark's comparison row only)."""
    args = sys.argv[1:] if argv is None else argv
    started = time.monotonic()
    bins = ensure_binaries()
    _stderr(
        f"control-plane binaries ready in {time.monotonic() - started:.1f}s under {bins.etcd.parent.parent}"
    )
    if "--kueue" in args:
        from batchyard.devcluster.kueue import ensure_kueue  # optional: only with --kueue

        _stderr(f"kueue ready: {ensure_kueue().binary}")


if __name__ == "__main__":
    main()
