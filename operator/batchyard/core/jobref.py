"""Which job, or which array child, a decision is about.

Why this exists: the scheduler, the lifecycle and the loop all pass job identities around; a
plain tuple told apart by its length (``(ns, name)`` for a job, ``(ns, name, index)`` for an
array child) cannot be checked by the type checker and reads badly at every call site. A
``JobRef`` is hashable and frozen, so it serves as a dict key and a scheduler key alike
(Kubernetes' ``types.NamespacedName``, Kueue's ``workload.Key``, plus the AWS array index:
an array child's job ID is ``<parent>:<index>``).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class JobRef:
    """A BatchJob (``index`` None) or one child of an array job (``index`` 0..size-1)."""

    namespace: str
    name: str
    index: int | None = None

    @property
    def parent(self) -> JobRef:
        """The BatchJob object this refers to (itself for a job, the array parent for a child)."""
        return self if self.index is None else JobRef(self.namespace, self.name)

    @property
    def is_child(self) -> bool:
        return self.index is not None

    def child(self, index: int) -> JobRef:
        return JobRef(self.namespace, self.name, index)

    def __str__(self) -> str:
        # AWS: an array child's job ID is the parent's followed by ":<index>".
        suffix = "" if self.index is None else f":{self.index}"
        return f"{self.namespace}/{self.name}{suffix}"
