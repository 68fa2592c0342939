"""Shared building blocks of every Batchyard API model.

Why this module exists: the six kinds share the Kubernetes envelope (ObjectMeta, conditions,
`from_body`), the AWS shapes that appear in several requests (tags, retry strategy, timeout,
consumable resource lists), and the small helpers that attach CEL rules
(`x-kubernetes-validations`) to a model or field so that `crdgen` can copy them into the CRD.

Conventions (read before adding a field):

* Field names are the AWS request names in camelCase; no aliases.
* A field's documentation is the docstring right below it (`use_attribute_docstrings`); it
  becomes the CRD description that `kubectl explain` prints.
* Spec models forbid unknown fields (`Spec`); status and metadata models ignore them (`Loose`),
  so an older operator can still read a newer object.
* Constraints that a single value can check (ranges, lengths, patterns, enums) are pydantic
  `Field` constraints, so the model and the CRD agree. Cross-field rules are CEL rules built
  with `rule(...)`; the model does not re-check them (the API server already has).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import BaseModel, ConfigDict, Field

# --- CEL helpers -------------------------------------------------------------------------------

CEL_KEY = "x-kubernetes-validations"


def rule(
    expr: str, message: str, *, field_path: str | None = None, reason: str | None = None
) -> dict[str, Any]:
    """One CEL validation rule. `message` must name the field it is about."""
    out: dict[str, Any] = {"rule": expr, "message": message}
    if field_path is not None:
        out["fieldPath"] = field_path
    if reason is not None:
        out["reason"] = reason
    return out


def cel(*rules: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """`json_schema_extra` for a Field or a model_config: CEL rules plus any other schema keys."""
    out: dict[str, Any] = dict(extra)
    if rules:
        out[CEL_KEY] = list(rules)
    return out


def immutable(path: str) -> dict[str, Any]:
    """Transition rule: the field may not change once set (AWS has no API to change it)."""
    return rule("self == oldSelf", f"{path} is immutable")


# --- model bases -------------------------------------------------------------------------------


class Spec(BaseModel):
    """Base for user-written objects: unknown fields are errors, like the CRD schema."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, validate_default=False)


class Loose(BaseModel):
    """Base for operator-written or Kubernetes-owned objects: unknown fields are ignored."""

    model_config = ConfigDict(extra="ignore", use_attribute_docstrings=True, validate_default=False)


# --- common scalar types -----------------------------------------------------------------------

# RFC 3339 timestamps are kept as strings: parsing is cheap and they round-trip exactly.
Timestamp = Annotated[str, Field(json_schema_extra={"format": "date-time"})]

# A Kubernetes object name (DNS-1123 subdomain).
K8S_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"
K8sName = Annotated[str, Field(min_length=1, max_length=253, pattern=K8S_NAME_PATTERN)]
# A DNS-1123 label (namespaces, container names).
DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"

# AWS: "Maximum number of 50 items. Key Length ... Minimum length of 1. Maximum length of 128.
# Value ... Maximum length of 256." (SubmitJob tags); "aws:" is a reserved prefix (Tag restrictions).
Tags = Annotated[
    dict[str, Annotated[str, Field(max_length=256)]],
    Field(
        max_length=50,
        json_schema_extra=cel(
            rule(
                "self.all(k, size(k) >= 1 && size(k) <= 128 && !k.startsWith('aws:'))",
                "tags keys must be 1 to 128 characters and must not start with the reserved prefix 'aws:'",
            ),
        ),
    ),
]

# Parameter substitution defaults / values: a plain string map (AWS: "String to string map").
Parameters = Annotated[
    dict[str, Annotated[str, Field(max_length=4096)]],
    Field(max_length=256),
]

CellState = Literal["ENABLED", "DISABLED"]
ResourceStatus = Literal["CREATING", "UPDATING", "DELETING", "DELETED", "VALID", "INVALID"]
JobStatus = Literal["SUBMITTED", "PENDING", "RUNNABLE", "STARTING", "RUNNING", "SUCCEEDED", "FAILED"]
JOB_STATES: tuple[JobStatus, ...] = (
    "SUBMITTED",
    "PENDING",
    "RUNNABLE",
    "STARTING",
    "RUNNING",
    "SUCCEEDED",
    "FAILED",
)


# --- Kubernetes envelope -----------------------------------------------------------------------


class OwnerReference(Loose):
    """A Kubernetes owner reference (only what the operator reads)."""

    apiVersion: str
    kind: str
    name: str
    uid: str
    controller: bool | None = None
    blockOwnerDeletion: bool | None = None


class ObjectMeta(Loose):
    """The part of Kubernetes ObjectMeta the operator reads; everything else is ignored."""

    name: str | None = None
    namespace: str | None = None
    uid: str | None = None
    generation: int | None = None
    resourceVersion: str | None = None
    creationTimestamp: str | None = None
    deletionTimestamp: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None
    ownerReferences: list[OwnerReference] | None = None


class Condition(Loose):
    """A standard Kubernetes condition (metav1.Condition)."""

    type: Annotated[str, Field(max_length=316)]
    """Type of condition in CamelCase, e.g. Ready, Blocked."""
    status: Literal["True", "False", "Unknown"]
    """Status of the condition: True, False or Unknown."""
    reason: Annotated[str, Field(max_length=1024)] | None = None
    """A programmatic CamelCase identifier for the last transition."""
    message: Annotated[str, Field(max_length=32768)] | None = None
    """A human-readable message about the last transition."""
    lastTransitionTime: Timestamp | None = None
    """When the condition last changed status (RFC 3339)."""
    observedGeneration: int | None = None
    """The metadata.generation the condition was computed from."""


Conditions = Annotated[
    list[Condition],
    Field(
        max_length=32,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    ),
]


class KubeObject(BaseModel):
    """Common envelope of all six kinds. Subclasses set KIND, PLURAL, etc. and type spec/status."""

    model_config = ConfigDict(extra="ignore", use_attribute_docstrings=True)

    KIND: ClassVar[str]
    PLURAL: ClassVar[str]
    SINGULAR: ClassVar[str]
    SHORT_NAMES: ClassVar[tuple[str, ...]]
    NAMESPACED: ClassVar[bool]
    # (name, jsonPath, type, description, priority)
    PRINTER_COLUMNS: ClassVar[tuple[tuple[str, str, str, str, int], ...]] = ()
    # Scalar fields `kubectl get --field-selector` may filter on (CRD selectableFields, GA in 1.32).
    SELECTABLE_FIELDS: ClassVar[tuple[str, ...]] = ()
    # CEL rules on the whole object (they may read self.metadata.name).
    OBJECT_RULES: ClassVar[tuple[dict[str, Any], ...]] = ()
    # Rules a ValidatingAdmissionPolicy checks on CREATE and UPDATE of the object itself, never on
    # its status subresource: (CEL expression over `object` / `oldObject`, message naming the
    # field[, CEL messageExpression]). For a kind whose status is written often, a CRD rule at
    # the root or at spec level is evaluated by the API server on every status write (measured:
    # ~1.2 ms of its CPU per BatchJob status patch, ~30 %); the policy never is. See
    # crdgen.policy_for.
    ADMISSION_RULES: ClassVar[tuple[tuple[str, ...], ...]] = ()

    apiVersion: str | None = None
    kind: str | None = None
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Self:
        """Parse a Kubernetes object dict (as kopf or the API returns it); status may be absent."""
        return cls.model_validate(body)

    def to_body(self) -> dict[str, Any]:
        """The object as a Kubernetes dict, without unset/None fields."""
        return self.model_dump(exclude_none=True)


# --- AWS shapes shared by several kinds --------------------------------------------------------

# AWS: onReason / onStatusReason "can contain letters, numbers, periods (.), colons (:), and white
# spaces (including spaces or tabs). It can optionally end with an asterisk (*)". Up to 512 chars.
REASON_GLOB = r"^[A-Za-z0-9.: \t]*\*?$"
# AWS: onExitCode "can contain only numbers, and can end with an asterisk (*)". Up to 512 chars.
EXIT_CODE_GLOB = r"^[0-9]*\*?$"


class EvaluateOnExit(Spec):
    """A condition under which a failed attempt is retried or the job fails (AWS EvaluateOnExit).

    An entry matches when every condition it specifies matches (AND). Entries are evaluated in list
    order and the first match wins; when none matches, the job is retried (AWS default).
    Patterns are an exact string, or a prefix followed by a single trailing `*`.
    """

    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                "has(self.onStatusReason) || has(self.onReason) || has(self.onExitCode)",
                "spec.retryStrategy.evaluateOnExit entries must specify at least one of onStatusReason, "
                "onReason or onExitCode",
            )
        )
    )

    onStatusReason: Annotated[str, Field(min_length=1, max_length=512, pattern=REASON_GLOB)] | None = None
    """Glob matched against the job's statusReason. Up to 512 characters: letters, numbers, periods
    (.), colons (:) and white space, optionally ending with one `*` (prefix match)."""
    onReason: Annotated[str, Field(min_length=1, max_length=512, pattern=REASON_GLOB)] | None = None
    """Glob matched against the container's reason (e.g. OOMKilled, Error). Up to 512 characters:
    letters, numbers, periods (.), colons (:) and white space, optionally ending with one `*`."""
    onExitCode: Annotated[str, Field(min_length=1, max_length=512, pattern=EXIT_CODE_GLOB)] | None = None
    """Glob matched against the decimal exit code. Up to 512 characters: digits only, optionally
    ending with one `*` (e.g. `137`, `1*`, `*`)."""
    action: Annotated[str, Field(pattern=r"^([Rr][Ee][Tt][Rr][Yy]|[Ee][Xx][Ii][Tt])$")]
    """RETRY or EXIT, applied when all specified conditions match. Not case sensitive (AWS)."""

    def normalized_action(self) -> Literal["RETRY", "EXIT"]:
        """The action in upper case (AWS: "The values aren't case sensitive")."""
        return "RETRY" if self.action.upper() == "RETRY" else "EXIT"


class RetryStrategy(Spec):
    """How often a failed job is retried (AWS RetryStrategy).

    On a job it replaces the job definition's retry strategy entirely. Cancelled, terminated and
    timed-out attempts are never retried.
    """

    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                "!has(self.evaluateOnExit) || has(self.attempts)",
                "spec.retryStrategy.attempts must be set when spec.retryStrategy.evaluateOnExit is set",
            )
        )
    )

    attempts: Annotated[int, Field(ge=1, le=10)] | None = None
    """Number of attempts, 1 to 10 (default 1). With a value above one, a failed attempt is retried
    until that many attempts have run."""
    evaluateOnExit: Annotated[list[EvaluateOnExit], Field(max_length=5)] | None = None
    """Up to 5 conditions that decide between RETRY and EXIT after a failed attempt; first match
    wins; no match means RETRY. Requires attempts."""


class JobTimeout(Spec):
    """Attempt timeout (AWS JobTimeout)."""

    attemptDurationSeconds: Annotated[int, Field(ge=60)] | None = None
    """Seconds an attempt may run, measured from the attempt's startedAt (RUNNING), at least 60; no
    maximum. A timed-out attempt gets SIGTERM, then SIGKILL 30 seconds later, and is not retried.
    For array jobs the timeout applies to each child."""


class ConsumableResourceRequirement(Spec):
    """How much of one ConsumableResource each instance of the job holds while it runs."""

    consumableResource: Annotated[str, Field(min_length=1, max_length=253, pattern=K8S_NAME_PATTERN)]
    """Name of a cluster-scoped ConsumableResource (the AWS name or ARN becomes an object name)."""
    quantity: Annotated[int, Field(ge=1)]
    """Units held from STARTING until the attempt ends."""


class ConsumableResourceProperties(Spec):
    """Consumable resources a job needs (AWS ConsumableResourceProperties)."""

    model_config = ConfigDict(
        json_schema_extra=cel(
            rule(
                "self.consumableResourceList.all(a, "
                "self.consumableResourceList.exists_one(b, b.consumableResource == a.consumableResource))",
                "consumableResourceList must not name the same consumableResource twice",
            )
        )
    )

    consumableResourceList: Annotated[list[ConsumableResourceRequirement], Field(max_length=5)]
    """Up to 5 resources (AWS: "You can specify up to 5 resources for each job you define")."""


class KeyValuePair(Spec):
    """An environment variable (AWS KeyValuePair)."""

    name: Annotated[str, Field(min_length=1, max_length=256)]
    """Variable name. Names starting with AWS_BATCH are reserved for the variables Batchyard sets."""
    value: Annotated[str, Field(max_length=32768)] | None = None
    """Variable value."""


Environment = Annotated[
    list[KeyValuePair],
    Field(
        max_length=256,
        json_schema_extra=cel(
            rule(
                "self.all(e, !e.name.startsWith('AWS_BATCH'))",
                "environment variable names must not start with AWS_BATCH (reserved for variables "
                "AWS Batch sets)",
            )
        ),
    ),
]
