"""Generate the CustomResourceDefinitions from the pydantic models.

Why this module exists: the models are the single source of truth; crds/ (and later the Helm
chart's crds/) are derived from them so that field documentation, constraints and CEL rules
never drift. `make generate` writes the files, `make verify` and a unit test fail when the
committed YAML differs from what this module produces.

The pure part (`crd_for`, `all_crds`, `render`) turns models into dicts and YAML text. It
converts pydantic's JSON Schema into a *structural* OpenAPI v3 schema, as the API server
requires: `$ref`s are inlined, `Optional` unions collapse to their non-null branch, JSON-Schema
`exclusiveMinimum` numbers become OpenAPI booleans, titles and null defaults are dropped, and
every node keeps a type. Only `main` writes files.

    python -m batchyard.api.crdgen --out crds/ [--out helm/batchyard/crds/]
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from batchyard import GROUP, VERSION
from batchyard.api import ALL_KINDS
from batchyard.api.common import CEL_KEY, KubeObject

CATEGORY = "batchyard"
HEADER = "# Generated from operator/batchyard/api by `make generate` (batchyard.api.crdgen). Do not edit.\n"
OPAQUE_KEY = "x-batchyard-opaque"

# JSON Schema keywords copied as they are (everything else is either handled or dropped).
_PASSTHROUGH = (
    "type",
    "description",
    "format",
    "enum",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "maximum",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "required",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-preserve-unknown-fields",
)
_SCALARS = ("string", "integer", "number", "boolean")


class SchemaError(ValueError):
    """The model produced a schema that can't be made structural."""


def clean_description(text: str) -> str:
    """Docstring -> description: paragraphs kept, lines within a paragraph joined."""
    paragraphs = re.split(r"\n\s*\n", text.strip())
    return "\n\n".join(" ".join(line.strip() for line in p.splitlines()) for p in paragraphs)


def _ref_name(ref: str) -> str:
    prefix = "#/$defs/"
    if not ref.startswith(prefix):
        raise SchemaError(f"unsupported $ref {ref}")
    return ref[len(prefix) :]


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """Overlay a field's own keywords on the schema of its type; CEL rules accumulate."""
    out = dict(base)
    for key, value in over.items():
        if key == CEL_KEY:
            out[CEL_KEY] = [*base.get(CEL_KEY, []), *value]
        else:
            out[key] = value
    return out


def structural(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """Convert one pydantic JSON Schema node into a structural OpenAPI v3 schema node."""
    siblings = {k: v for k, v in node.items() if k not in ("$ref", "anyOf", "allOf")}
    if OPAQUE_KEY in node:
        out: dict[str, Any] = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        if "description" in node:
            out["description"] = clean_description(node["description"])
        return out
    if "$ref" in node:
        return structural(_merge(defs[_ref_name(node["$ref"])], siblings), defs)
    if "allOf" in node:
        if len(node["allOf"]) != 1:
            raise SchemaError("allOf with several branches is not structural")
        return structural(_merge(node["allOf"][0], siblings), defs)
    if "anyOf" in node:
        branches = [b for b in node["anyOf"] if b.get("type") != "null"]
        if len(branches) != 1:
            raise SchemaError(f"a union of several types is not structural: {node['anyOf']}")
        return structural(_merge(branches[0], siblings), defs)

    out = {k: copy.deepcopy(node[k]) for k in _PASSTHROUGH if k in node}
    if "description" in out:
        out["description"] = clean_description(out["description"])
    if "const" in node:
        out["enum"] = [node["const"]]
        out.setdefault("type", "string")
    # JSON Schema 2020-12 numeric exclusive bounds -> OpenAPI 3.0 boolean flags.
    if "exclusiveMinimum" in node:
        out["minimum"] = node["exclusiveMinimum"]
        out["exclusiveMinimum"] = True
    if "exclusiveMaximum" in node:
        out["maximum"] = node["exclusiveMaximum"]
        out["exclusiveMaximum"] = True
    default = node.get("default")
    if isinstance(default, str | int | float | bool) and not isinstance(default, type(None)):
        out["default"] = default
    if "enum" in out and "type" not in out:
        out["type"] = "string"
    if "type" not in out:
        raise SchemaError(f"untyped schema node: {node}")

    if out["type"] == "object":
        props = node.get("properties")
        extra = node.get("additionalProperties")
        if props:
            out["properties"] = {name: structural(sub, defs) for name, sub in props.items()}
        elif isinstance(extra, dict):
            out["additionalProperties"] = structural(extra, defs)
        elif not out.get("x-kubernetes-preserve-unknown-fields"):
            raise SchemaError(f"object without properties or additionalProperties: {node}")
    elif out["type"] == "array":
        out["items"] = structural(node["items"], defs)
    elif out["type"] not in _SCALARS:
        raise SchemaError(f"unsupported type {out['type']}")

    if CEL_KEY in node:
        out[CEL_KEY] = copy.deepcopy(node[CEL_KEY])
    return _ordered(out)


_ORDER = (
    "description",
    "type",
    "format",
    "default",
    "enum",
    "pattern",
    "minLength",
    "maxLength",
    "minimum",
    "exclusiveMinimum",
    "maximum",
    "exclusiveMaximum",
    "minItems",
    "maxItems",
    "minProperties",
    "maxProperties",
    "required",
    "properties",
    "additionalProperties",
    "items",
    "x-kubernetes-list-type",
    "x-kubernetes-list-map-keys",
    "x-kubernetes-preserve-unknown-fields",
    CEL_KEY,
)


def _ordered(d: dict[str, Any]) -> dict[str, Any]:
    """Stable, readable key order for the YAML output."""
    known = {k: d[k] for k in _ORDER if k in d}
    rest = {k: d[k] for k in sorted(d) if k not in known}
    return {**known, **rest}


def object_schema(kind: type[KubeObject]) -> dict[str, Any]:
    """The openAPIV3Schema of one kind."""
    raw = kind.model_json_schema(mode="validation")
    defs = raw.get("$defs", {})
    props = raw["properties"]
    root: dict[str, Any] = {
        "description": clean_description(kind.__doc__ or kind.KIND),
        "type": "object",
        "required": ["spec"] if "spec" in raw.get("required", []) else [],
        "properties": {
            "apiVersion": {
                "description": "APIVersion defines the versioned schema of this representation of an object.",
                "type": "string",
            },
            "kind": {
                "description": "Kind is the REST resource this object represents.",
                "type": "string",
            },
            "metadata": {"type": "object"},
            "spec": structural(props["spec"], defs),
            "status": structural(props["status"], defs),
        },
    }
    if not root["required"]:
        del root["required"]
    if kind.OBJECT_RULES:
        root[CEL_KEY] = [dict(r) for r in kind.OBJECT_RULES]
    return _ordered(root)


def selectable_fields(kind: type[KubeObject], schema: dict[str, Any]) -> list[dict[str, str]]:
    """CRD selectableFields, each checked against the schema: the API server accepts only paths
    to string, integer or boolean fields, and rejects the whole CRD otherwise."""
    out = []
    for path in kind.SELECTABLE_FIELDS:
        node: dict[str, Any] = schema
        for part in path.lstrip(".").split("."):
            node = node.get("properties", {}).get(part) or {}
        if node.get("type") not in ("string", "integer", "boolean"):
            raise SchemaError(f"{kind.KIND} selectable field {path} is not a string, integer or boolean")
        out.append({"jsonPath": path})
    return out


def crd_for(kind: type[KubeObject]) -> dict[str, Any]:
    """The CustomResourceDefinition of one kind, as a dict."""
    columns = [
        {"name": n, "type": t, "jsonPath": p, "description": d, **({"priority": prio} if prio else {})}
        for n, p, t, d, prio in kind.PRINTER_COLUMNS
    ]
    schema = object_schema(kind)
    selectable = selectable_fields(kind, schema)
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{kind.PLURAL}.{GROUP}",
            "labels": {"app.kubernetes.io/name": "batchyard", "app.kubernetes.io/part-of": "batchyard"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced" if kind.NAMESPACED else "Cluster",
            "names": {
                "kind": kind.KIND,
                "listKind": f"{kind.KIND}List",
                "plural": kind.PLURAL,
                "singular": kind.SINGULAR,
                "shortNames": list(kind.SHORT_NAMES),
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    **({"selectableFields": selectable} if selectable else {}),
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def filename(kind: type[KubeObject]) -> str:
    """crds/ file name: batchyard.io_<plural>.yaml."""
    return f"{GROUP}_{kind.PLURAL}.yaml"


def render(crd: dict[str, Any]) -> str:
    """Deterministic YAML text of one CRD."""
    body: str = yaml.safe_dump(crd, sort_keys=False, default_flow_style=False, width=120, allow_unicode=True)
    return HEADER + body


def _validation(expression: str, message: str, message_expression: str | None = None) -> dict[str, Any]:
    out = {"expression": expression, "message": message, "reason": "Invalid"}
    if message_expression is not None:
        out["messageExpression"] = message_expression
    return out


def policy_for(kind: type[KubeObject]) -> list[dict[str, Any]]:
    """The kind's ValidatingAdmissionPolicy and its binding, for its ADMISSION_RULES (else none).

    The policy matches CREATE and UPDATE of the object, and not its status subresource (a
    resource rule names subresources explicitly), so the operator's status writes never pay for
    these rules. `failurePolicy: Fail`: a rule the API server can't evaluate refuses the write.
    """
    if not kind.ADMISSION_RULES:
        return []
    name = f"{kind.PLURAL}.{GROUP}"
    labels = {"app.kubernetes.io/name": "batchyard", "app.kubernetes.io/part-of": "batchyard"}
    policy = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "failurePolicy": "Fail",
            "matchConstraints": {
                "resourceRules": [
                    {
                        "apiGroups": [GROUP],
                        "apiVersions": [VERSION],
                        "operations": ["CREATE", "UPDATE"],
                        "resources": [kind.PLURAL],
                    }
                ]
            },
            "validations": [_validation(*rule) for rule in kind.ADMISSION_RULES],
        },
    }
    binding = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name, "labels": labels},
        "spec": {"policyName": name, "validationActions": ["Deny"]},
    }
    return [policy, binding]


def render_doc(doc: dict[str, Any]) -> str:
    """Deterministic YAML text of one object."""
    body: str = yaml.safe_dump(doc, sort_keys=False, default_flow_style=False, width=120, allow_unicode=True)
    return HEADER + body


def all_crds() -> dict[str, str]:
    """file name -> YAML text, for every kind: its CRD, and its admission policy and binding
    (`batchyard.io_<plural>.policy.yaml`, `.policybinding.yaml`) where it has ADMISSION_RULES."""
    files = {filename(kind): render(crd_for(kind)) for kind in ALL_KINDS}
    for kind in ALL_KINDS:
        for doc, suffix in zip(policy_for(kind), ("policy", "policybinding"), strict=False):
            files[f"{GROUP}_{kind.PLURAL}.{suffix}.yaml"] = render_doc(doc)
    return files


def main(argv: Sequence[str] | None = None) -> int:
    """Write the CRD files into each --out directory (stale batchyard.io_*.yaml files are removed)."""
    doc = (__doc__ or "").splitlines()[0]
    parser = argparse.ArgumentParser(prog="python -m batchyard.api.crdgen", description=doc)
    parser.add_argument("--out", action="append", type=Path, help="output directory (repeatable)")
    args = parser.parse_args(argv)
    outs: list[Path] = args.out or [Path("crds")]
    files = all_crds()
    for out in outs:
        out.mkdir(parents=True, exist_ok=True)
        for stale in out.glob(f"{GROUP}_*.yaml"):
            if stale.name not in files:
                stale.unlink()
        for name, text in files.items():
            (out / name).write_text(text, encoding="utf-8")
        print(f"wrote {len(files)} CRDs to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
