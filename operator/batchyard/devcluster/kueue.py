"""Kueue's manager from its Go module, for the throughput benchmark's comparison row (optional).

Nothing in `make binaries` or `make test` builds this: only `python -m batchyard.devcluster build
--kueue` (or `python -m batchyard.devcluster.kueue`) and `bench/bench_throughput.py --kueue` do.

Build: `sigs.k8s.io/kueue`'s go.mod has no `replace` lines, so `go install .../cmd/kueue@vX`
works; the binary lands in `<cache>/bin/kueue-<version>/kueue`, next to the CRDs
(`config/components/crd/bases`) and the webhook manifests (`config/components/webhook/
manifests.yaml`) copied out of the module cache.

Run (`KueueManager`): the manager as its own process against a `DevCluster`, with a config file:
leader election off, health, metrics and webhook server on free loopback ports, internal cert
management off and a self-signed serving certificate (SAN 127.0.0.1) made here. There is no
kube-proxy, so Services do not route: the webhook configurations are registered with `url:`
pointing at https://127.0.0.1:<port>, and only those for the enabled integration (batch/v1 Jobs)
and Kueue's own kinds are kept (the others would fail every pod or Deployment create, as no
handler serves them). Two things Kueue 0.17 fixes and we have to meet: with internal cert
management off, the metrics server reads its certificate from `/etc/kueue/metrics/certs`
(hard-coded in cmd/kueue/main.go), so a self-signed pair is written there if none exists; and
the visibility server (feature gate VisibilityOnDemand) is switched off, as it would need its
own certificates and an aggregated API registration.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from batchyard.devcluster.build import Log, _check_go, _run, _stderr, cache_root, go_install
from batchyard.devcluster.cluster import DevCluster, free_port

KUEUE_VERSION = "0.17.0"
KUEUE_MODULE = "sigs.k8s.io/kueue"
METRICS_CERT_DIR = Path("/etc/kueue/metrics/certs")
# The webhooks kept: Kueue's own kinds and the one integration the benchmark enables.
WEBHOOK_GROUPS = {"kueue.x-k8s.io": None, "batch": {"jobs"}}
FRAMEWORKS = ("batch/job",)


@dataclass(frozen=True)
class KueueFiles:
    binary: Path
    crds: Path  # directory of CRD YAMLs
    webhooks: Path  # Kueue's webhook manifests (Service-based clientConfig)

    @classmethod
    def at(cls, root: Path) -> KueueFiles:
        d = root / "bin" / f"kueue-{KUEUE_VERSION}"
        return cls(binary=d / "kueue", crds=d / "crds", webhooks=d / "webhook-manifests.yaml")

    def missing(self) -> list[Path]:
        return [
            p
            for p in (self.binary, self.crds / "kueue.x-k8s.io_workloads.yaml", self.webhooks)
            if not p.exists()
        ]


def build_kueue(root: Path, files: KueueFiles, log: Log) -> None:
    work = root / "build"
    work.mkdir(parents=True, exist_ok=True)
    info = json.loads(_run(["go", "mod", "download", "-json", f"{KUEUE_MODULE}@v{KUEUE_VERSION}"], work, log))
    src = Path(info["Dir"])
    out = files.binary.parent
    out.mkdir(parents=True, exist_ok=True)
    go_install(f"{KUEUE_MODULE}/cmd/kueue@v{KUEUE_VERSION}", out, work, log)
    files.crds.mkdir(exist_ok=True)
    for crd in sorted((src / "config" / "components" / "crd" / "bases").glob("*.yaml")):
        shutil.copyfile(crd, files.crds / crd.name)
    shutil.copyfile(src / "config" / "components" / "webhook" / "manifests.yaml", files.webhooks)


def ensure_kueue(log: Log = _stderr) -> KueueFiles:
    """Return Kueue's files, building them if missing (cold: several minutes on 2 cores)."""
    root = cache_root()
    files = KueueFiles.at(root)
    if not files.missing():
        return files
    _check_go()
    started = time.monotonic()
    log(f"building kueue {KUEUE_VERSION} into {files.binary.parent} (cached afterwards)")
    build_kueue(root, files, log)
    if files.missing():
        raise RuntimeError(f"build finished but these are missing: {files.missing()}")
    log(f"built kueue in {time.monotonic() - started:.0f}s")
    return files


# -- pure helpers ------------------------------------------------------------------------------
def _kept(webhook: Mapping[str, Any]) -> bool:
    for rule in webhook.get("rules") or []:
        for group in rule.get("apiGroups") or []:
            if group not in WEBHOOK_GROUPS:
                return False
            allowed = WEBHOOK_GROUPS[group]
            if allowed is not None and not set(rule.get("resources") or []) <= allowed:
                return False
    return True


def webhook_configurations(
    manifests: Iterable[Mapping[str, Any]], port: int, ca_pem: bytes
) -> list[dict[str, Any]]:
    """Kueue's (Mutating|Validating)WebhookConfigurations with each Service reference turned into
    a `url:` on 127.0.0.1:<port> (same path) and the given CA; webhooks for integrations that
    are not enabled are dropped."""
    ca = base64.b64encode(ca_pem).decode()
    out: list[dict[str, Any]] = []
    for doc in manifests:
        if not doc or doc.get("kind") not in (
            "MutatingWebhookConfiguration",
            "ValidatingWebhookConfiguration",
        ):
            continue
        hooks = []
        for hook in doc.get("webhooks") or []:
            if not _kept(hook):
                continue
            hook = json.loads(json.dumps(hook))
            path = hook["clientConfig"]["service"].get("path", "/")
            hook["clientConfig"] = {"url": f"https://127.0.0.1:{port}{path}", "caBundle": ca}
            hooks.append(hook)
        name = "kueue-" + doc["metadata"]["name"]
        out.append(
            {
                "apiVersion": doc["apiVersion"],
                "kind": doc["kind"],
                "metadata": {"name": name},
                "webhooks": hooks,
            }
        )
    return out


def manager_config(*, health: int, metrics: int, webhook: int, cert_dir: Path) -> dict[str, Any]:
    """Kueue's Configuration: upstream's shipped defaults (client QPS, controller concurrency),
    on loopback, leader election and internal cert management off, batch/v1 Jobs only."""
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "health": {"healthProbeBindAddress": f"127.0.0.1:{health}"},
        "metrics": {"bindAddress": f"127.0.0.1:{metrics}"},
        "webhook": {"port": webhook, "host": "127.0.0.1", "certDir": str(cert_dir)},
        "leaderElection": {"leaderElect": False},
        "internalCertManagement": {"enable": False},
        "controller": {
            "groupKindConcurrency": {
                "Job.batch": 5,
                "Pod": 5,
                "Workload.kueue.x-k8s.io": 5,
                "LocalQueue.kueue.x-k8s.io": 1,
                "Cohort.kueue.x-k8s.io": 1,
                "ClusterQueue.kueue.x-k8s.io": 1,
                "ResourceFlavor.kueue.x-k8s.io": 1,
            }
        },
        "clientConnection": {"qps": 50, "burst": 100},
        "integrations": {"frameworks": list(FRAMEWORKS)},
    }


def _self_signed(dest: Path, cn: str) -> None:
    """tls.crt (self-signed, also its own CA; SAN 127.0.0.1 and localhost) and tls.key in `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "30",
         "-keyout", str(dest / "tls.key"), "-out", str(dest / "tls.crt"), "-subj", f"/CN={cn}",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-addext", "basicConstraints=critical,CA:TRUE"],
        check=True, capture_output=True,
    )  # fmt: skip


# -- the running manager -------------------------------------------------------------------------
@dataclass
class KueueManager:
    """Kueue's manager as its own process against `cluster`: `start()` applies the CRDs, runs
    the manager, waits for /readyz and registers the webhooks; `stop()` ends the process."""

    cluster: DevCluster
    files: KueueFiles | None = None
    ports: dict[str, int] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def workdir(self) -> Path:
        return self.cluster.workdir / "kueue"

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 120.0) -> None:
        self.files = self.files or ensure_kueue()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cluster.kubectl("apply", "--server-side", "-f", str(self.files.crds))
        self.cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        certs = self.workdir / "webhook-certs"
        _self_signed(certs, "kueue-webhook")
        if not (METRICS_CERT_DIR / "tls.crt").exists():
            _self_signed(METRICS_CERT_DIR, "kueue-metrics")
        self.ports = {"health": free_port(), "metrics": free_port(), "webhook": free_port()}
        config = self.workdir / "config.yaml"
        config.write_text(
            json.dumps(manager_config(health=self.ports["health"], metrics=self.ports["metrics"],
                                      webhook=self.ports["webhook"], cert_dir=certs))
        )  # fmt: skip
        log = open(self.workdir / "kueue.log", "ab")  # noqa: SIM115 - handed to the child
        env = {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}
        env["KUBECONFIG"] = str(self.cluster.kubeconfig)
        self.proc = subprocess.Popen(
            [str(self.files.binary), f"--config={config}", "--zap-log-level=2",
             "--feature-gates=VisibilityOnDemand=false"],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, start_new_session=True,
        )  # fmt: skip
        log.close()
        try:
            self._wait_ready(timeout)
            self._wait_webhook(timeout)
            manifests = list(yaml.safe_load_all(self.files.webhooks.read_text()))
            ca = (certs / "tls.crt").read_bytes()
            self.cluster.apply(webhook_configurations(manifests, self.ports["webhook"], ca))
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, timeout: float) -> None:
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{self.ports['health']}/readyz"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"kueue exited with {self.proc.returncode}:\n{self.log_tail()}")
            with (
                contextlib.suppress(urllib.error.URLError, OSError),
                urllib.request.urlopen(url, timeout=5) as resp,
            ):
                if resp.status == 200:
                    return
            time.sleep(0.3)
        raise TimeoutError(f"kueue not ready within {timeout}s:\n{self.log_tail()}")

    def _wait_webhook(self, timeout: float) -> None:
        """The webhook server answers TLS (any HTTP status) before the configurations point at it."""
        ctx = ssl.create_default_context(cafile=str(self.workdir / "webhook-certs" / "tls.crt"))
        deadline = time.monotonic() + timeout
        url = f"https://127.0.0.1:{self.ports['webhook']}/healthz"
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(url, context=ctx, timeout=5).close()
                return
            except urllib.error.HTTPError:
                return
            except (urllib.error.URLError, OSError):
                time.sleep(0.3)
        raise TimeoutError(f"kueue's webhook server not up within {timeout}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 40) -> str:
        with contextlib.suppress(OSError):
            return "\n".join((self.workdir / "kueue.log").read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def main() -> None:
    files = ensure_kueue()
    print(files.binary)


if __name__ == "__main__":
    main()
