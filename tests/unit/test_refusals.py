"""core.refusals: a refused pod create is final (the job fails) or may clear (the job waits).

Messages are the API server's own wording (Pod Security admission, admission webhooks,
ValidatingAdmissionPolicy, ResourceQuota and LimitRange admission, RBAC).
"""

from __future__ import annotations

import pytest

from batchyard.core.refusals import (
    POD_REJECTED,
    SERVICE_ROLE_PERMISSIONS,
    STATUS_REASON_LIMIT,
    WAITING_POD_CREATE,
    WAITING_RESOURCE_QUOTA,
    classify_pod_refusal,
)

POD_SECURITY = (
    'pods "j-a1" is forbidden: violates PodSecurity "baseline:latest": privileged '
    '(container "main" must not set securityContext.privileged=true)'
)
WEBHOOK = 'admission webhook "deny.example.com" denied the request: images from docker.io are not allowed'
POLICY = (
    "pods \"j-a1\" is forbidden: ValidatingAdmissionPolicy 'no-root' with binding 'no-root' "
    "denied request: runAsNonRoot required"
)
QUOTA = 'pods "j-a1" is forbidden: exceeded quota: pods, requested: pods=1, used: pods=1, limited: pods=1'
QUOTA_UNKNOWN = 'pods "j-a1" is forbidden: status unknown for quota: cpu, resources: cpu'
LIMIT_RANGE = 'pods "j-a1" is forbidden: maximum cpu usage per Container is 1, but limit is 2'
TERMINATING = (
    'pods "j-a1" is forbidden: unable to create new content in namespace t because it is being terminated'
)
RBAC = 'pods is forbidden: User "system:serviceaccount:batchyard:batchyard" cannot create resource "pods"'


@pytest.mark.parametrize(
    ("status", "message", "permanent", "code"),
    [
        pytest.param(403, POD_SECURITY, True, POD_REJECTED, id="Pod Security refuses: final"),
        pytest.param(400, WEBHOOK, True, POD_REJECTED, id="a webhook denial (400): final"),
        pytest.param(403, WEBHOOK, True, POD_REJECTED, id="a webhook denial with its own 403: final"),
        pytest.param(403, POLICY, True, POD_REJECTED, id="a ValidatingAdmissionPolicy denial: final"),
        pytest.param(
            422, "spec.containers[0].image: Required value", True, POD_REJECTED, id="422 Invalid: final"
        ),
        pytest.param(400, "json: cannot unmarshal", True, POD_REJECTED, id="400 BadRequest: final"),
        pytest.param(403, LIMIT_RANGE, True, POD_REJECTED, id="over a LimitRange maximum: final"),
        pytest.param(403, TERMINATING, True, POD_REJECTED, id="the namespace is being deleted: final"),
        pytest.param(403, QUOTA, False, WAITING_RESOURCE_QUOTA, id="a full ResourceQuota: waits"),
        pytest.param(403, QUOTA_UNKNOWN, False, WAITING_RESOURCE_QUOTA, id="a quota not yet computed: waits"),
        pytest.param(
            403, RBAC, False, SERVICE_ROLE_PERMISSIONS, id="the operator's RBAC: waits for an admin"
        ),
        pytest.param(429, "too many requests", False, WAITING_POD_CREATE, id="throttled: waits"),
        pytest.param(500, "etcdserver: request timed out", False, WAITING_POD_CREATE, id="5xx: waits"),
        pytest.param(
            503,
            'failed calling webhook "x": connection refused',
            False,
            WAITING_POD_CREATE,
            id="a webhook down: waits",
        ),
        pytest.param(0, "no answer within 30 s", False, WAITING_POD_CREATE, id="a client timeout: waits"),
        pytest.param(
            404, 'namespaces "t" not found', False, WAITING_POD_CREATE, id="unknown: waits, never fails"
        ),
    ],
)
def test_classify_pod_refusal(status: int, message: str, permanent: bool, code: str) -> None:
    refusal = classify_pod_refusal(status, message)
    assert (refusal.permanent, refusal.code) == (permanent, code)
    assert refusal.status_reason.startswith(code)
    assert " ".join(message.split()) in refusal.status_reason  # quotes the API server


def test_the_reason_is_one_line_and_fits_a_status_reason() -> None:
    refusal = classify_pod_refusal(403, POD_SECURITY + "\n" + "x" * 5000)
    assert "\n" not in refusal.status_reason
    assert len(refusal.status_reason) == STATUS_REASON_LIMIT and refusal.status_reason.endswith("...")
