"""What every job command shares: kubectl as the transport, job references, errors, tables.

Why kubectl: the CLI acts with the user's own kubeconfig, context and rights (exactly what
`kubectl get batchjobs` would be allowed to do), with kubectl's authentication plugins, and
needs no client library of its own. Errors split as kubectl's do: a bad argument is exit code 2
with a message naming it (argparse's convention), a refused or failed request is exit code 1.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from batchyard.core.arrays import MAX_ARRAY_SIZE


class UsageError(Exception):
    """A bad argument: printed as `batchyard <command>: error: ...`, exit code 2."""


class CommandError(Exception):
    """The request failed (not found, refused by the API server): exit code 1."""


def add_kube_args(p: argparse.ArgumentParser, all_namespaces: bool = False) -> None:
    p.add_argument("--namespace", "-n", default=None, help="namespace (default: the context's)")
    if all_namespaces:
        p.add_argument("--all-namespaces", "-A", action="store_true", help="every namespace")
    p.add_argument("--kubectl", default=shutil.which("kubectl") or "kubectl", help="kubectl binary")


@dataclass(frozen=True)
class Kubectl:
    """kubectl with the user's kubeconfig, scoped to one namespace (or all)."""

    binary: str
    namespace: str | None = None
    all_namespaces: bool = False

    @classmethod
    def of(cls, args: argparse.Namespace) -> Kubectl:
        return cls(args.kubectl, args.namespace, bool(getattr(args, "all_namespaces", False)))

    def ns_args(self) -> list[str]:
        if self.all_namespaces:
            return ["--all-namespaces"]
        return ["-n", self.namespace] if self.namespace else []

    def run(self, *args: str, input: str | None = None, namespaced: bool = True) -> str:
        cmd = [self.binary, *args, *(self.ns_args() if namespaced else [])]
        try:
            proc = subprocess.run(cmd, input=input, capture_output=True, text=True)
        except FileNotFoundError:
            raise CommandError(f"kubectl not found at {self.binary!r} (use --kubectl)") from None
        if proc.returncode != 0:
            raise CommandError(proc.stderr.strip() or f"kubectl {' '.join(args)} failed")
        return proc.stdout

    def get(self, *args: str, namespaced: bool = True) -> Any:
        return json.loads(self.run("get", *args, "-o", "json", namespaced=namespaced))

    def get_or_none(self, *args: str) -> Any:
        """One object, or None when it does not exist (other errors still raise)."""
        try:
            return self.get(*args)
        except CommandError as err:
            if "NotFound" in str(err) or "not found" in str(err):
                return None
            raise


@dataclass(frozen=True)
class JobRef:
    """`<job>`, `<job>:<index>` (an array child, AWS `jobId:index`) or `<job>#<node>` (a node of a
    multi-node parallel job, AWS `jobId#node`)."""

    name: str
    index: int | None = None
    node: int | None = None

    def __str__(self) -> str:
        if self.index is not None:
            return f"{self.name}:{self.index}"
        return f"{self.name}#{self.node}" if self.node is not None else self.name


_REF = re.compile(r"^(?P<name>[a-z0-9]([-a-z0-9.]*[a-z0-9])?)(?:(?P<sep>[:#])(?P<num>.*))?$")


def parse_job_ref(text: str, allow_node: bool = False) -> JobRef:
    """Parse a job reference, or raise UsageError naming what is wrong with it."""
    m = _REF.match(text)
    if not m:
        raise UsageError(f"job {text!r}: expected a BatchJob name (lower-case letters, digits, '-', '.')")
    name, sep, num = m["name"], m["sep"], m["num"]
    if sep is None:
        return JobRef(name)
    if sep == "#" and not allow_node:
        raise UsageError(f"job {text!r}: '#<node>' names a node of a multi-node job; not valid here")
    if not num.isdigit() or int(num) >= MAX_ARRAY_SIZE:
        what = "array index" if sep == ":" else "node index"
        raise UsageError(f"job {text!r}: the {what} after {sep!r} must be a number from 0 to 9999")
    return JobRef(name, index=int(num)) if sep == ":" else JobRef(name, node=int(num))


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def age(text: str | None, now: datetime | None = None, *, seconds: int | None = None) -> str:
    """kubectl's short age: 45s, 12m, 3h, 6d (of ``text`` until ``now``, or of ``seconds``)."""
    if seconds is None:
        then = parse_time(text)
        if then is None:
            return "<unknown>"
        seconds = int(((now or datetime.now(UTC)) - then).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size or (unit == "m" and seconds >= size):
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def estimated_start(status: dict[str, Any], now: datetime | None = None) -> str:
    """A RUNNABLE job's estimated start as people read it: "~in 45s", "~now", "" when none."""
    at = parse_time(status.get("estimatedStartAt"))
    if at is None:
        return ""
    seconds = int((at - (now or datetime.now(UTC))).total_seconds())
    if seconds <= 0:
        return "~now"
    return f"~in {age(None, None, seconds=seconds)}"


def table(header: list[str], rows: list[list[str]]) -> str:
    """kubectl-style columns: upper-case header, left-aligned, three spaces apart."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [
        "   ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [header, *rows]
    ]
    return "\n".join(lines)


def cut(text: str | None, width: int) -> str:
    text = (text or "").replace("\n", " ")
    return text if len(text) <= width else text[: width - 3] + "..."


def show(render: Callable[[], str], watch: bool, interval: float = 2.0) -> int:
    """Print once, or (`--watch`) redraw every `interval` seconds until Ctrl-C: a live table on a
    terminal (screen cleared), a new block per refresh when piped."""
    if not watch:
        print(render())
        return 0
    tty = sys.stdout.isatty()
    try:
        while True:
            text = render()
            if tty:
                print(
                    "\x1b[H\x1b[2J" + time.strftime("%H:%M:%S") + f"  (every {interval:g}s, Ctrl-C stops)\n",
                    end="",
                )
            print(text + ("" if tty else "\n"), flush=True)
            time.sleep(interval)
    except KeyboardInterrupt:
        return 0
