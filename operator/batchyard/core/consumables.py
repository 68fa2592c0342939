"""Consumable-resource accounting (AWS Batch "resource-aware scheduling").

Why this exists: a job may need licence tokens or other countable, non-compute resources. AWS:
"Batch ... makes sure that a job is scheduled to run only when all the required consumable
resources are available"; "Resources are locked once the job moves to STARTING and are then
unlocked when the job moves to SUCCEEDED or FAILED".

Rules implemented here:

* all-or-nothing: a job acquires every resource it lists, or none;
* held from dispatch (STARTING) until the attempt ends; a retried job re-acquires at its next
  dispatch (AWS leaves retries unstated; an attempt that ended holds nothing);
* REPLENISHABLE: released quantities return to ``available``;
  NON_REPLENISHABLE: AWS "the number of consumed resources is subtracted from both the total and
  available quantities and won't be added back". The cumulative consumed quantity is reported so
  the caller can persist it in the ConsumableResource status and hand it back in
  ``ConsumableView.consumed`` (the ledger keeps the larger of both, so a late status update never
  double-counts);
* at admission (``requirement_problems``) a job that needs a resource that does not exist, or
  more of one than its total quantity, can never run: it FAILS with a reason naming the resource
  instead of sitting RUNNABLE at the head of its queue and blocking every job behind it (AWS
  validates resource names at submission);
* a resource deleted after admission is simply not available: the job waits in RUNNABLE (AWS:
  "If you delete a consumable resource and re-create it with the same name, it is considered to
  be the same resource and it can be used by RUNNABLE jobs");
* a total lowered below what is in use makes ``available`` 0 until enough jobs end (AWS:
  "Batch reduces the available quantity immediately and, as jobs finish, ... reduces the total").
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass, field
from typing import Final

REPLENISHABLE: Final = "REPLENISHABLE"
NON_REPLENISHABLE: Final = "NON_REPLENISHABLE"


@dataclass(frozen=True, slots=True)
class ConsumableView:
    """A ConsumableResource as the scheduler sees it."""

    name: str
    total_quantity: int
    resource_type: str = REPLENISHABLE
    # NON_REPLENISHABLE only: quantity already consumed for good, as persisted in status.
    consumed: int = 0


@dataclass(frozen=True, slots=True)
class ConsumableUsage:
    """Status of one ConsumableResource after a cycle (AWS DescribeConsumableResource fields)."""

    name: str
    total_quantity: int  # for NON_REPLENISHABLE: the original total minus what was consumed
    in_use_quantity: int
    available_quantity: int
    consumed: int  # cumulative consumed quantity (NON_REPLENISHABLE); persist it


@dataclass(slots=True)
class ConsumableLedger:
    in_use: dict[str, int] = field(default_factory=dict)
    consumed: dict[str, int] = field(default_factory=dict)
    held: dict[Hashable, Mapping[str, int]] = field(default_factory=dict)

    def available(self, view: ConsumableView | None) -> int:
        if view is None:
            return 0
        consumed = max(self.consumed.get(view.name, 0), view.consumed)
        return max(0, view.total_quantity - consumed - self.in_use.get(view.name, 0))

    def shortfall(
        self, needs: Mapping[str, int], views: Mapping[str, ConsumableView]
    ) -> list[tuple[str, int, int]]:
        """[(name, needed, available)] for every resource that cannot be granted now."""
        out = []
        for name, qty in needs.items():
            have = self.available(views.get(name))
            if qty > have:
                out.append((name, qty, have))
        return out

    def acquire(self, key: Hashable, needs: Mapping[str, int]) -> None:
        if not needs:
            return
        self.held[key] = dict(needs)
        for name, qty in needs.items():
            self.in_use[name] = self.in_use.get(name, 0) + qty

    def release(self, key: Hashable, views: Mapping[str, ConsumableView], consume: bool) -> dict[str, int]:
        """Unlock what ``key`` holds. ``consume``: the attempt really ran (not an undo), so a
        NON_REPLENISHABLE resource is used up. Returns the quantities consumed for good."""
        needs = self.held.pop(key, None)
        gone: dict[str, int] = {}
        if not needs:
            return gone
        for name, qty in needs.items():
            self.in_use[name] = self.in_use.get(name, 0) - qty
            view = views.get(name)
            if consume and view is not None and view.resource_type == NON_REPLENISHABLE:
                base = max(self.consumed.get(name, 0), view.consumed)
                self.consumed[name] = base + qty
                gone[name] = qty
        return gone

    def usage(self, view: ConsumableView) -> ConsumableUsage:
        consumed = max(self.consumed.get(view.name, 0), view.consumed)
        in_use = self.in_use.get(view.name, 0)
        total = (
            view.total_quantity - consumed if view.resource_type == NON_REPLENISHABLE else view.total_quantity
        )
        return ConsumableUsage(
            name=view.name,
            total_quantity=total,
            in_use_quantity=in_use,
            available_quantity=self.available(view),
            consumed=consumed,
        )


def requirement_problems(needs: Mapping[str, int], views: Mapping[str, ConsumableView]) -> list[str]:
    """Why a new job's consumable-resource needs can never be met (empty: they can be).

    The most a job can ever get of a resource is its total quantity (for NON_REPLENISHABLE, what
    is left of it after earlier jobs consumed theirs).
    """
    problems = []
    for name, qty in sorted(needs.items()):
        view = views.get(name)
        if view is None:
            problems.append(f"consumable resource {name} does not exist")
            continue
        total = view.total_quantity - (view.consumed if view.resource_type == NON_REPLENISHABLE else 0)
        if qty > total:
            problems.append(
                f"the job needs {qty} of consumable resource {name}, whose total quantity is {total}"
            )
    return problems
