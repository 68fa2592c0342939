"""The optional Kueue row's pure helpers: webhook registration by url, the manager's config."""

from __future__ import annotations

import base64
from pathlib import Path

from batchyard.devcluster.kueue import KueueFiles, manager_config, webhook_configurations


def _hook(name: str, group: str, resource: str, path: str) -> dict[str, object]:
    return {
        "name": name,
        "admissionReviewVersions": ["v1"],
        "clientConfig": {"service": {"name": "webhook-service", "namespace": "system", "path": path}},
        "failurePolicy": "Fail",
        "sideEffects": "None",
        "rules": [
            {"apiGroups": [group], "apiVersions": ["v1"], "operations": ["CREATE"], "resources": [resource]}
        ],
    }


MANIFESTS = [
    {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "mutating-webhook-configuration"},
        "webhooks": [
            _hook("mjob.kb.io", "batch", "jobs", "/mutate-batch-v1-job"),
            _hook("mpod.kb.io", "", "pods", "/mutate--v1-pod"),
            _hook("mdeployment.kb.io", "apps", "deployments", "/mutate-apps-v1-deployment"),
            _hook(
                "mcq.kb.io", "kueue.x-k8s.io", "clusterqueues", "/mutate-kueue-x-k8s-io-v1beta2-clusterqueue"
            ),
        ],
    },
    {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "validating-webhook-configuration"},
        "webhooks": [_hook("vcronjob.kb.io", "batch", "cronjobs", "/validate-batch-v1-cronjob")],
    },
    None,  # an empty YAML document
]


def test_webhooks_point_at_loopback_url_with_the_ca_and_keep_only_enabled_kinds() -> None:
    out = webhook_configurations(MANIFESTS, 9443, b"PEM")
    assert [c["kind"] for c in out] == ["MutatingWebhookConfiguration", "ValidatingWebhookConfiguration"]
    assert [c["metadata"]["name"] for c in out] == [
        "kueue-mutating-webhook-configuration",
        "kueue-validating-webhook-configuration",
    ]
    hooks = out[0]["webhooks"]
    assert [h["name"] for h in hooks] == ["mjob.kb.io", "mcq.kb.io"]
    assert hooks[0]["clientConfig"] == {
        "url": "https://127.0.0.1:9443/mutate-batch-v1-job",
        "caBundle": base64.b64encode(b"PEM").decode(),
    }
    assert hooks[0]["failurePolicy"] == "Fail" and hooks[0]["rules"] == MANIFESTS[0]["webhooks"][0]["rules"]  # type: ignore[index]
    assert out[1]["webhooks"] == []  # cronjobs: not an enabled integration
    # The input is not modified.
    assert "service" in MANIFESTS[0]["webhooks"][0]["clientConfig"]  # type: ignore[index]


def test_manager_config_is_loopback_without_leader_election_or_cert_management() -> None:
    cfg = manager_config(health=1, metrics=2, webhook=3, cert_dir=Path("/c"))
    assert cfg["kind"] == "Configuration" and cfg["apiVersion"] == "config.kueue.x-k8s.io/v1beta2"
    assert cfg["health"]["healthProbeBindAddress"] == "127.0.0.1:1"
    assert cfg["metrics"]["bindAddress"] == "127.0.0.1:2"
    assert cfg["webhook"] == {"port": 3, "host": "127.0.0.1", "certDir": "/c"}
    assert cfg["leaderElection"] == {"leaderElect": False}
    assert cfg["internalCertManagement"] == {"enable": False}
    assert cfg["integrations"] == {"frameworks": ["batch/job"]}


def test_files_live_under_the_cache_keyed_by_version(tmp_path: Path) -> None:
    files = KueueFiles.at(tmp_path)
    assert files.binary.parent.name.startswith("kueue-") and files.binary.parent.parent == tmp_path / "bin"
    assert set(files.missing()) == {
        files.binary,
        files.crds / "kueue.x-k8s.io_workloads.yaml",
        files.webhooks,
    }
