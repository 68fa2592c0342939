"""Run a real Kubernetes control plane as plain processes on 127.0.0.1.

etcd -> kube-apiserver -> kube-scheduler, kube-controller-manager, kwok, each on a free
loopback port, with a fresh data directory, a static admin token and a kubeconfig. Every
process logs to `<workdir>/logs/<name>.log`; `state.json` records process ids and ports, so
`batchyard dev status` and `batchyard dev down` work from another process and `stop()` kills
only what we started, by its own process id.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import secrets
import signal
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from batchyard.devcluster.build import Binaries, ensure_binaries
from batchyard.devcluster.kwok import KWOK_LOG_CRI, KWOK_LOG_NAME, kwok_config
from batchyard.devcluster.nodes import node_manifest

COMPONENTS = ("etcd", "kube-apiserver", "kube-scheduler", "kube-controller-manager", "kwok")
# The node lifecycle controllers would taint nodes that kwok does not heartbeat fast enough;
# kwok owns node health here, so they are off.
KCM_CONTROLLERS = "*,-node-lifecycle-controller,-taint-eviction-controller,-cloud-node-lifecycle-controller"
_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:
    """In the child: get SIGKILL when the parent dies, so an interrupted test run leaves no orphans."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie is dead for our purposes.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        if stat.rsplit(")", 1)[1].split()[0] == "Z":
            return False
    return True


@dataclass
class DevCluster:
    """One local control plane. `start()` brings it up; `stop()` always tears it down."""

    workdir: Path
    die_with_parent: bool = True
    binaries: Binaries | None = None
    ports: dict[str, int] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    token: str = ""
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)

    # -- paths -----------------------------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "kubeconfig"

    @property
    def logs(self) -> Path:
        return self.workdir / "logs"

    @property
    def state_file(self) -> Path:
        return self.workdir / "state.json"

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['kube-apiserver']}"

    @property
    def ca_file(self) -> Path:
        return self.workdir / "pki" / "ca.crt"

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self, timeout: float = 120.0) -> None:
        if self.binaries is None:
            self.binaries = ensure_binaries()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        self.token = self.token or secrets.token_hex(16)
        self.ports = {
            "etcd": free_port(),
            "etcd-peer": free_port(),
            "kube-apiserver": free_port(),
            "kube-scheduler": free_port(),
            "kube-controller-manager": free_port(),
            "kwok": free_port(),
        }
        try:
            self._pki()
            self._start_etcd(timeout)
            self._start_apiserver(timeout)
            self._write_kubeconfig()
            self._start_rest()
            self._save_state()
            self._wait_for_default_namespace(timeout)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop our processes in reverse order: SIGTERM, then SIGKILL after a grace period."""
        names = [n for n in reversed(COMPONENTS) if n in self.pids]
        for name in names:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pids[name], signal.SIGTERM)
        deadline = time.monotonic() + 10
        for name in names:
            pid = self.pids[name]
            proc = self._procs.get(name)
            while time.monotonic() < deadline:
                if proc is not None:
                    if proc.poll() is not None:
                        break
                elif not pid_alive(pid):
                    break
                time.sleep(0.05)
            else:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            if proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
        self.pids.clear()
        self._procs.clear()
        with contextlib.suppress(FileNotFoundError):
            self.state_file.unlink()

    def status(self) -> dict[str, bool]:
        return {name: pid_alive(pid) for name, pid in self.pids.items()}

    @classmethod
    def load(cls, workdir: Path) -> DevCluster:
        """Attach to a control plane started by another process (for `dev status` and `dev down`)."""
        state = json.loads((workdir / "state.json").read_text())
        return cls(
            workdir=workdir,
            die_with_parent=False,
            binaries=Binaries(**{k: Path(v) for k, v in state["binaries"].items()}),
            ports=state["ports"],
            pids=state["pids"],
            token=state["token"],
        )

    # -- helpers for tests and the CLI --------------------------------------------------------
    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        assert self.binaries is not None
        proc = subprocess.run(
            [str(self.binaries.kubectl), f"--kubeconfig={self.kubeconfig}", *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise RuntimeError(f"kubectl {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr}")
        return proc

    def apply(self, manifests: Iterable[Mapping[str, Any]]) -> None:
        self.kubectl("apply", "-f", "-", input="\n---\n".join(json.dumps(m) for m in manifests))

    def install_crds(self, directory: Path, timeout: float = 60) -> None:
        """`kubectl apply --server-side -f crds/`, then wait until the CRDs are served and the
        BatchJob admission policy is in force (the API server loads a new policy asynchronously:
        a job created just after the apply could otherwise slip past it). The probe is a
        server-side dry run of a job the policy refuses; nothing is stored."""
        self.kubectl("apply", "--server-side", "-f", str(directory))
        deadline = time.monotonic() + timeout
        while True:
            # A CRD the API server has not given a status yet makes `kubectl wait` fail at once
            # (".status.conditions accessor error") instead of waiting: ask again.
            proc = self.kubectl(
                "wait",
                "--for=condition=Established",
                f"--timeout={int(timeout)}s",
                "crd",
                "--all",
                check=False,
            )
            if proc.returncode == 0:
                break
            if "accessor error" not in proc.stderr or time.monotonic() > deadline:
                raise RuntimeError(f"the CRDs are not Established:\n{proc.stderr}")
            time.sleep(0.2)
        if not any(directory.glob("*.policy.yaml")):
            return
        probe = {
            "apiVersion": "batchyard.io/v1alpha1",
            "kind": "BatchJob",
            "metadata": {"name": "policy-probe-" + "x" * 120, "namespace": "default"},
            "spec": {"jobQueue": "probe", "jobDefinition": "probe"},
        }
        while True:
            proc = self.kubectl("create", "--dry-run=server", "-f", "-", input=json.dumps(probe), check=False)
            if proc.returncode != 0 and "at most 128 characters" in proc.stderr:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"the BatchJob admission policy is not in force: {proc.stdout}{proc.stderr}"
                )
            time.sleep(0.2)

    def add_nodes(self, nodes: Sequence[Mapping[str, Any]], wait: float = 60) -> None:
        """Create kwok nodes (see `nodes.node_manifest`) and wait until kwok reports them Ready."""
        self.kubectl("create", "-f", "-", input="\n---\n".join(json.dumps(n) for n in nodes))
        names = [n["metadata"]["name"] for n in nodes]
        self.kubectl(
            "wait", "--for=condition=Ready", f"--timeout={int(wait)}s", *[f"node/{n}" for n in names]
        )

    def add_node(self, name: str, **kwargs: Any) -> None:
        self.add_nodes([node_manifest(name, **kwargs)])

    def log_tails(self, lines: int = 30) -> str:
        out = []
        for name in COMPONENTS:
            path = self.logs / f"{name}.log"
            if path.exists():
                tail = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"==> {path} <==\n" + "\n".join(tail))
        return "\n".join(out)

    def rss_mib(self) -> dict[str, float]:
        """Resident memory per component, from /proc."""
        result = {}
        for name, pid in self.pids.items():
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        result[name] = int(line.split()[1]) / 1024
        return result

    # -- internals ----------------------------------------------------------------------------
    def _spawn(self, name: str, args: list[str], env: Mapping[str, str] | None = None) -> None:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
        proc = subprocess.Popen(
            args,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
            start_new_session=True,
            preexec_fn=_die_with_parent if self.die_with_parent else None,
        )
        log.close()
        self._procs[name] = proc
        self.pids[name] = proc.pid

    def _check_alive(self, name: str) -> None:
        proc = self._procs.get(name)
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode}:\n{self.log_tails(40)}")

    def _pki(self) -> None:
        """A CA, a serving certificate for 127.0.0.1/localhost, and the service-account key."""
        pki = self.workdir / "pki"
        pki.mkdir(exist_ok=True)

        def ssl_cmd(*args: str) -> None:
            subprocess.run(["openssl", *args], cwd=pki, check=True, capture_output=True)

        ssl_cmd("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
                "-days", "30", "-subj", "/CN=batchyard-dev-ca")  # fmt: skip
        (pki / "san.cnf").write_text(
            "[req]\ndistinguished_name=dn\n[dn]\n[ext]\n"
            "subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,"
            "DNS:kubernetes.default.svc,IP:10.96.0.1\n"
            "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        )
        ssl_cmd("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "apiserver.key", "-out", "apiserver.csr",
                "-subj", "/CN=kube-apiserver", "-config", "san.cnf")  # fmt: skip
        ssl_cmd("x509", "-req", "-in", "apiserver.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                "-out", "apiserver.crt", "-days", "30", "-extfile", "san.cnf", "-extensions", "ext")  # fmt: skip
        ssl_cmd("genrsa", "-out", "sa.key", "2048")
        (self.workdir / "tokens.csv").write_text(f'{self.token},admin,admin,"system:masters"\n')

    def _start_etcd(self, timeout: float) -> None:
        assert self.binaries is not None
        client = f"http://127.0.0.1:{self.ports['etcd']}"
        peer = f"http://127.0.0.1:{self.ports['etcd-peer']}"
        self._spawn(
            "etcd",
            [
                str(self.binaries.etcd),
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={client}",
                f"--advertise-client-urls={client}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=default={peer}",
                "--unsafe-no-fsync=true",
                "--quota-backend-bytes=8589934592",
                "--log-level=warn",
            ],
        )
        self._wait("etcd", f"{client}/health", timeout)

    def _start_apiserver(self, timeout: float) -> None:
        assert self.binaries is not None
        pki = self.workdir / "pki"
        self._spawn(
            "kube-apiserver",
            [
                str(self.binaries.kube_apiserver),
                f"--etcd-servers=http://127.0.0.1:{self.ports['etcd']}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={self.ports['kube-apiserver']}",
                f"--cert-dir={pki}",
                f"--tls-cert-file={pki / 'apiserver.crt'}",
                f"--tls-private-key-file={pki / 'apiserver.key'}",
                f"--client-ca-file={pki / 'ca.crt'}",
                "--service-cluster-ip-range=10.96.0.0/16",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={pki / 'sa.key'}",
                f"--service-account-signing-key-file={pki / 'sa.key'}",
                f"--token-auth-file={self.workdir / 'tokens.csv'}",
                "--authorization-mode=Node,RBAC",
                "--allow-privileged=true",
                # TaintNodesByCondition puts not-ready on every new Node and only the node
                # lifecycle controller (off: kwok owns node health) would lift it. ServiceAccount
                # admission races fresh test namespaces against the token controller.
                "--disable-admission-plugins=TaintNodesByCondition,ServiceAccount",
                "--enable-priority-and-fairness=false",
                "--max-requests-inflight=0",
                "--max-mutating-requests-inflight=0",
                # kwok nodes name themselves `localhost` (Hostname address, kwok's --node-name):
                # the API server reaches kwok's kubelet-like server there for `kubectl logs`.
                "--kubelet-preferred-address-types=Hostname",
                "--v=0",
            ],
        )
        self._wait("kube-apiserver", f"{self.server}/readyz", timeout, auth=True)

    def _write_kubeconfig(self) -> None:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "batchyard-dev",
                    "cluster": {"server": self.server, "certificate-authority": str(self.ca_file)},
                }
            ],
            "users": [{"name": "admin", "user": {"token": self.token}}],
            "contexts": [{"name": "batchyard-dev", "context": {"cluster": "batchyard-dev", "user": "admin"}}],
            "current-context": "batchyard-dev",
        }
        self.kubeconfig.write_text(json.dumps(config, indent=2))
        self.kubeconfig.chmod(0o600)

    def _start_rest(self) -> None:
        assert self.binaries is not None
        kc = f"--kubeconfig={self.kubeconfig}"
        self._spawn(
            "kube-scheduler",
            [
                str(self.binaries.kube_scheduler),
                kc,
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.ports['kube-scheduler']}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
                "--kube-api-qps=500",
                "--kube-api-burst=1000",
                "--v=0",
            ],
        )
        self._spawn(
            "kube-controller-manager",
            [
                str(self.binaries.kube_controller_manager),
                kc,
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={self.ports['kube-controller-manager']}",
                f"--authentication-kubeconfig={self.kubeconfig}",
                f"--authorization-kubeconfig={self.kubeconfig}",
                f"--root-ca-file={self.ca_file}",
                f"--service-account-private-key-file={self.workdir / 'pki' / 'sa.key'}",
                "--use-service-account-credentials=false",
                f"--controllers={KCM_CONTROLLERS}",
                "--concurrent-gc-syncs=10",
                "--kube-api-qps=500",
                "--kube-api-burst=1000",
                "--v=0",
            ],
        )
        kwok_dir = self.workdir / "kwok"
        kwok_dir.mkdir(exist_ok=True)
        (kwok_dir / KWOK_LOG_NAME).write_text(KWOK_LOG_CRI)
        (kwok_dir / "kwok.yaml").write_text(kwok_config(self.binaries.kwok_stages, kwok_dir / KWOK_LOG_NAME))
        self._spawn(
            "kwok",
            [
                str(self.binaries.kwok),
                kc,
                f"--config={kwok_dir / 'kwok.yaml'}",
                "--manage-all-nodes=false",
                "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
                "--node-lease-duration-seconds=40",
                "--cidr=10.244.0.0/16",
                # The kubelet-like server (container logs): HTTPS, as the API server dials
                # kubelets; it does not verify the certificate (no --kubelet-certificate-authority).
                f"--server-address=127.0.0.1:{self.ports['kwok']}",
                f"--node-port={self.ports['kwok']}",
                "--node-name=localhost",
                f"--tls-cert-file={self.workdir / 'pki' / 'apiserver.crt'}",
                f"--tls-private-key-file={self.workdir / 'pki' / 'apiserver.key'}",
            ],
            # kwok reads ~/.kwok/kwok.yaml before --config: give it a home of its own.
            env={"HOME": str(kwok_dir)},
        )
        self._wait("kube-scheduler", f"https://127.0.0.1:{self.ports['kube-scheduler']}/healthz", 60)
        self._wait(
            "kube-controller-manager",
            f"https://127.0.0.1:{self.ports['kube-controller-manager']}/healthz",
            60,
        )

    def _wait_for_default_namespace(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for name in ("kwok", "kube-scheduler", "kube-controller-manager"):
                self._check_alive(name)
            proc = self.kubectl("get", "serviceaccount", "default", "-n", "default", check=False)
            if proc.returncode == 0:
                return
            time.sleep(0.2)
        raise TimeoutError(f"the default ServiceAccount never appeared:\n{self.log_tails()}")

    def _wait(self, name: str, url: str, timeout: float, auth: bool = False) -> None:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        headers = {"Authorization": f"Bearer {self.token}"} if auth else {}
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            self._check_alive(name)
            try:
                req = urllib.request.Request(url, headers=headers)
                with urllib.request.urlopen(req, timeout=2, context=ctx) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError) as exc:
                last = str(exc)
            time.sleep(0.1)
        raise TimeoutError(f"{name} not ready at {url} after {timeout}s ({last}):\n{self.log_tails()}")

    def _save_state(self) -> None:
        assert self.binaries is not None
        state = {
            "ports": self.ports,
            "pids": self.pids,
            "token": self.token,
            "kubeconfig": str(self.kubeconfig),
            "binaries": {k: str(v) for k, v in self.binaries.__dict__.items()},
        }
        self.state_file.write_text(json.dumps(state, indent=2))
