"""Third-party CRDs for the local control plane: Karpenter's NodePool and Cluster API's MachineDeployment.

Why this exists: the karpenter and clusterapi node-pool providers write objects that only the
real CRDs can judge (schemas, CEL rules, the scale subresource). Both projects ship their CRD
YAML inside their Go modules, so we take them from the module proxy (no GitHub release download,
no Go build): `go mod download -json <module>@<version>` names the module zip, and the YAML files
are read straight out of it. That also works when the module's `go` directive is newer than the
local toolchain, because only the zip is needed. Files are cached under
`<cache_root()>/crds/<module>-<version>/`.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from batchyard.devcluster.build import cache_root

KARPENTER_VERSION = "1.13.0"
CLUSTER_API_VERSION = "1.14.2"


@dataclass(frozen=True)
class ModuleCRDs:
    """CRD files inside one Go module; each entry lists candidate paths (layouts move between releases)."""

    module: str
    version: str
    files: tuple[tuple[str, ...], ...]

    @property
    def cache_dir(self) -> Path:
        return cache_root() / "crds" / f"{self.module.rsplit('/', 1)[-1]}-{self.version}"


KARPENTER = ModuleCRDs(
    "sigs.k8s.io/karpenter",
    f"v{KARPENTER_VERSION}",
    (
        ("pkg/apis/crds/karpenter.sh_nodepools.yaml",),
        ("pkg/apis/crds/karpenter.sh_nodeclaims.yaml",),
    ),
)
CLUSTER_API = ModuleCRDs(
    "sigs.k8s.io/cluster-api",
    f"v{CLUSTER_API_VERSION}",
    tuple(
        (
            f"core/config/crd/bases/cluster.x-k8s.io_{kind}.yaml",
            f"config/crd/bases/cluster.x-k8s.io_{kind}.yaml",
        )
        for kind in ("machinedeployments", "machinesets", "machines")
    ),
)


def _module_zip(mod: ModuleCRDs) -> Path:
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            ["go", "mod", "download", "-json", f"{mod.module}@{mod.version}"],
            cwd=tmp,
            # local: never fetch another toolchain for a module's newer `go` line
            env={**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=mod"},
            capture_output=True,
            text=True,
        )
    try:
        info = json.loads(proc.stdout)
    except ValueError as exc:
        raise RuntimeError(
            f"go mod download {mod.module}@{mod.version} failed: {proc.stderr[-2000:]}"
        ) from exc
    # A newer `go` directive than the local toolchain sets "Error" but the zip is still there.
    zip_path = Path(info.get("Zip", ""))
    if not info.get("Zip") or not zip_path.is_file():
        raise RuntimeError(
            f"go mod download {mod.module}@{mod.version}: {info.get('Error') or proc.stderr[-2000:]}"
        )
    return zip_path


def fetch(mod: ModuleCRDs) -> list[Path]:
    """The module's CRD files on disk, downloading and extracting them on first use."""
    out = [mod.cache_dir / Path(candidates[0]).name for candidates in mod.files]
    if all(p.is_file() for p in out):
        return out
    mod.cache_dir.mkdir(parents=True, exist_ok=True)
    prefix = f"{mod.module}@{mod.version}/"
    with zipfile.ZipFile(_module_zip(mod)) as zf:
        names = set(zf.namelist())
        for candidates, dest in zip(mod.files, out, strict=True):
            member = next((prefix + c for c in candidates if prefix + c in names), None)
            if member is None:
                raise RuntimeError(f"{mod.module}@{mod.version} has none of {', '.join(candidates)}")
            tmp = dest.with_suffix(".tmp")
            tmp.write_bytes(zf.read(member))
            tmp.replace(dest)
    return out


def crd_paths(which: Sequence[str] = ("karpenter", "clusterapi")) -> list[Path]:
    """Paths of the CRD YAML files for ``which`` ("karpenter", "clusterapi"), fetched if needed."""
    mods = {"karpenter": KARPENTER, "clusterapi": CLUSTER_API}
    return [p for name in which for p in fetch(mods[name])]


def main() -> None:
    for p in crd_paths():
        print(p)


if __name__ == "__main__":
    main()
