"""The generated CRDs: committed YAML is current, schemas are structural, every rule names its field.

The API server itself is exercised by tests/cluster/test_api_validation.py; these checks catch
the same classes of mistakes without a cluster.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from batchyard import GROUP, VERSION
from batchyard.api import ALL_KINDS, BatchJob, ComputeEnvironment, JobQueue
from batchyard.api.common import KubeObject
from batchyard.api.crdgen import SchemaError, all_crds, crd_for, main

REPO = Path(__file__).resolve().parents[2]
KINDS = {k.KIND: k for k in ALL_KINDS}


@functools.cache
def schema_of(kind: type[KubeObject]) -> dict[str, Any]:
    return crd_for(kind)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]  # type: ignore[no-any-return]


def nodes(schema: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every schema node with its path (properties by name, items as [], maps as {})."""
    yield path, schema
    for name, sub in schema.get("properties", {}).items():
        yield from nodes(sub, f"{path}.{name}")
    if "items" in schema:
        yield from nodes(schema["items"], f"{path}[]")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from nodes(schema["additionalProperties"], f"{path}{{}}")


# --- generated == committed --------------------------------------------------------------------


def test_committed_crds_match_the_generator() -> None:
    committed = {p.name: p.read_text(encoding="utf-8") for p in (REPO / "crds").glob(f"{GROUP}_*.yaml")}
    generated = all_crds()
    assert sorted(committed) == sorted(generated), "run `make generate`"
    stale = [name for name, text in generated.items() if committed[name] != text]
    assert stale == [], f"crds/ is out of date for {stale}: run `make generate`"


def test_generator_writes_every_output_directory(tmp_path: Path) -> None:
    a, b = tmp_path / "crds", tmp_path / "helm" / "crds"
    (a).mkdir()
    (a / f"{GROUP}_oldkinds.yaml").write_text("stale")
    assert main(["--out", str(a), "--out", str(b)]) == 0
    assert sorted(p.name for p in a.iterdir()) == sorted(all_crds())
    assert sorted(p.name for p in b.iterdir()) == sorted(all_crds())


# --- structural schemas ------------------------------------------------------------------------


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_schema_is_structural(kind: str) -> None:
    problems = []
    for path, node in nodes(schema_of(KINDS[kind])):
        for bad in ("$ref", "anyOf", "allOf", "oneOf", "not", "$defs", "title", "propertyNames"):
            if bad in node:
                problems.append(f"{path}: {bad}")
        if "type" not in node and not node.get("x-kubernetes-preserve-unknown-fields"):
            problems.append(f"{path}: no type")
        if "properties" in node and "additionalProperties" in node:
            problems.append(f"{path}: properties and additionalProperties")
        fields = {"properties", "additionalProperties", "x-kubernetes-preserve-unknown-fields"} & set(node)
        if node.get("type") == "object" and path not in ("", ".metadata") and not fields:
            problems.append(f"{path}: object without fields")
    assert problems == []


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_every_field_is_documented(kind: str) -> None:
    undocumented = [
        path
        for path, node in nodes(schema_of(KINDS[kind]))
        if path.startswith((".spec.", ".status."))
        and not path.endswith(("[]", "{}"))
        and not node.get("description")
    ]
    # A few tiny ECS-only/compat shapes describe themselves through their parent's description.
    allowed = re.compile(
        r"(authorizationConfig|efsVolumeConfiguration|ulimits|secrets|secretOptions|logConfiguration|"
        r"firelensConfiguration|dependsOn\[\]\.(containerName|condition)|runtimePlatform|"
        r"networkConfiguration|fargatePlatformConfiguration|repositoryCredentials|ownerReferences|"
        r"taskProperties\[\]\.|securityContext\.run|hostPath\.path|secret\.|persistentVolumeClaim\.|"
        r"imagePullSecrets\[\]\.name|devices\[\]\.|tmpfs\[\]\.|nodeClassRef\.|infrastructureRef\.|"
        r"bootstrapConfigRef\.|nodeTaints\[\]\.|ec2Configuration|statusSummary\.|jobCounts\.|"
        r"nodePropertyOverrides\[\]\.(containerOverrides|ecsPropertiesOverride|eksPropertiesOverride|"
        r"consumableResourcePropertiesOverride)$|provider\.(kwok|karpenter|clusterapi|unmanaged)$|"
        r"\.(ecsProperties|container)\..+|executionRoleArn|platformVersion|ipcMode|pidMode|taskRoleArn|"
        r"enableExecuteCommand|ephemeralStorage$|volumes$|mountPoints$|linuxParameters$|privileged$|"
        r"readonlyRootFilesystem$|user$|\.environment$|resourceRequirements$|command$|image$|essential$|name$)"
    )
    assert [p for p in undocumented if not allowed.search(p)] == []


def test_status_is_a_subresource_and_kinds_share_the_batchyard_category() -> None:
    for kind in ALL_KINDS:
        version = crd_for(kind)["spec"]["versions"][0]
        names = crd_for(kind)["spec"]["names"]
        assert version["name"] == VERSION and version["subresources"] == {"status": {}}
        assert names["categories"] == ["batchyard"]
        assert names["shortNames"], kind.KIND


def test_short_names_are_unique_and_do_not_shadow_built_ins() -> None:
    built_in = {
        "cm",
        "cs",
        "csr",
        "ds",
        "deploy",
        "ep",
        "ev",
        "hpa",
        "ing",
        "limits",
        "netpol",
        "no",
        "ns",
        "pdb",
        "po",
        "pc",
        "psp",
        "pv",
        "pvc",
        "quota",
        "rc",
        "rs",
        "sa",
        "sc",
        "sts",
        "svc",
        "crd",
    }
    short = [s for k in ALL_KINDS for s in k.SHORT_NAMES]
    assert len(short) == len(set(short))
    assert not set(short) & built_in


@pytest.mark.parametrize(
    ("kind", "columns"),
    [
        (BatchJob, ["Status", "Queue", "Attempts", "Progress", "Reason", "Age"]),
        (JobQueue, ["State", "Status", "Priority", "Runnable", "Running", "Policy", "Age"]),
        (ComputeEnvironment, ["State", "Status", "Desired", "In-Use", "Max", "Provider", "Age"]),
    ],
    ids=[
        "batchjob: status queue attempts, array progress, reason age",
        "jobqueue: state status priority runnable running",
        "computeenvironment: state status desired in-use vCPUs",
    ],
)
def test_printer_columns(kind: type[KubeObject], columns: list[str]) -> None:
    got = [c["name"] for c in crd_for(kind)["spec"]["versions"][0]["additionalPrinterColumns"]]
    assert got == columns


def test_batchjobs_are_selectable_by_status_queue_definition_share_and_name() -> None:
    # ListJobs filters, done by the API server: `kubectl get bj --field-selector spec.jobQueue=gpu`.
    version = crd_for(BatchJob)["spec"]["versions"][0]
    assert [f["jsonPath"] for f in version["selectableFields"]] == [
        ".status.status",
        ".spec.jobQueue",
        ".spec.jobDefinition",
        ".spec.shareIdentifier",
        ".spec.jobName",
    ]


def test_a_selectable_field_must_be_a_scalar() -> None:
    # The API server rejects the whole CRD for a selectable object or missing field: catch it here.
    class Broken(BatchJob):
        SELECTABLE_FIELDS = (".spec.arrayProperties",)

    with pytest.raises(SchemaError, match=r"selectable field \.spec\.arrayProperties"):
        crd_for(Broken)


# --- CEL rules ---------------------------------------------------------------------------------


@functools.cache
def all_rules() -> list[tuple[str, str, dict[str, Any], dict[str, Any]]]:
    return [
        (kind.KIND, path, node, r)
        for kind in ALL_KINDS
        for path, node in nodes(schema_of(kind))
        for r in node.get("x-kubernetes-validations", [])
    ]


def _field_names(path: str, node: dict[str, Any]) -> set[str]:
    names = set(node.get("properties", {}))
    last = re.sub(r"[\[\]{}]", "", path.rsplit(".", 1)[-1])
    if last:
        names.add(last)
    if not path:
        names.update({"metadata", "spec"})
    return names


@pytest.mark.parametrize(
    ("kind", "path", "message"),
    [(k, p, r["message"]) for k, p, n, r in all_rules()],
    ids=[f"{k}{p or '.'}: {r['message'][:50]}" for k, p, n, r in all_rules()],
)
def test_every_cel_message_names_a_field(kind: str, path: str, message: str) -> None:
    node = next(n for k, p, n, r in all_rules() if k == kind and p == path and r["message"] == message)
    assert any(re.search(rf"\b{re.escape(name)}\b", message) for name in _field_names(path, node)), message


def test_cel_rules_use_raw_strings_for_regular_expressions() -> None:
    # CEL rejects "\." in a normal string literal; regexes must be r'...' literals.
    for kind, path, _node, r in all_rules():
        for literal in re.findall(r"(?<!r)'([^']*)'", r["rule"]):
            assert "\\" not in literal, f"{kind}{path}: {r['rule']}"


# --- examples/ ---------------------------------------------------------------------------------


def example_documents() -> list[tuple[str, dict[str, Any]]]:
    docs = []
    for path in sorted((REPO / "examples").glob("*.yaml")):
        for i, doc in enumerate(yaml.safe_load_all(path.read_text(encoding="utf-8"))):
            if doc:
                docs.append((f"{path.name}#{i}:{doc['metadata']['name']}", doc))
    return docs


EXAMPLES = example_documents()


@pytest.mark.parametrize("doc", [d for _, d in EXAMPLES], ids=[n for n, _ in EXAMPLES])
def test_example_parses_with_its_model(doc: dict[str, Any]) -> None:
    assert doc["apiVersion"] == f"{GROUP}/{VERSION}"
    model = KINDS[doc["kind"]].from_body(doc)
    assert model.model_dump(exclude_unset=True)["spec"] == doc["spec"]


def test_examples_cover_every_kind() -> None:
    assert {d["kind"] for _, d in EXAMPLES} == set(KINDS)


# --- the BatchJob admission policy --------------------------------------------------------------


def test_batchjob_status_writes_pay_for_no_rule_at_the_root_or_spec() -> None:
    """Rules at the root or spec node run on every status patch (~30 % of the API server's CPU
    per patch, bench/RESULTS.md); the BatchJob's live in its admission policy instead."""
    from batchyard.api import BatchJob

    schema = crd_for(BatchJob)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert "x-kubernetes-validations" not in schema
    assert "x-kubernetes-validations" not in schema["properties"]["spec"]


def test_batchjob_policy_matches_the_object_not_its_status_and_names_every_immutable_field() -> None:
    from batchyard.api import BatchJob
    from batchyard.api.batchjob import _IMMUTABLE, immutable_message
    from batchyard.api.crdgen import policy_for

    policy, binding = policy_for(BatchJob)
    rules = policy["spec"]["matchConstraints"]["resourceRules"]
    assert rules == [
        {
            "apiGroups": ["batchyard.io"],
            "apiVersions": ["v1alpha1"],
            "operations": ["CREATE", "UPDATE"],
            "resources": ["batchjobs"],  # not batchjobs/status
        }
    ]
    assert policy["spec"]["failurePolicy"] == "Fail"
    assert binding["spec"] == {"policyName": policy["metadata"]["name"], "validationActions": ["Deny"]}
    # One rule for every immutable field (the API server pays per rule), naming the field.
    (rule,) = [v for v in policy["spec"]["validations"] if "oldObject" in v["expression"]]
    assert rule["expression"].startswith("oldObject == null || (")  # a CREATE evaluates no more
    for field in _IMMUTABLE:
        assert f"object.spec.{field} == oldObject.spec.{field}" in rule["expression"]
        assert f'"{immutable_message(field)}"' in rule["messageExpression"]
    assert immutable_message("jobQueue") == (
        "spec.jobQueue is immutable: it can't be set, changed or removed after submission"
    )
    assert len(policy["spec"]["validations"]) == 6
    files = all_crds()
    assert "batchyard.io_batchjobs.policy.yaml" in files
    assert "batchyard.io_batchjobs.policybinding.yaml" in files


def test_only_kinds_with_admission_rules_get_a_policy() -> None:
    from batchyard.api import ALL_KINDS
    from batchyard.api.crdgen import policy_for

    assert {k.KIND for k in ALL_KINDS if policy_for(k)} == {"BatchJob"}
