"""What handing an array's RUNNABLE children to the scheduler costs after a restart (issue 14):
one ``Scheduler.add_runnable`` per child against one ``add_runnables`` per array, on the same
views (the children of an array share their demand and submission time, as
``core.views.SharedView`` gives them).

Run: ``PYTHONPATH=operator python bench/bench_add_runnables.py [ARRAYS] [CHILDREN]``
(default 100 x 10,000: the scale bench's 1,000,000 children). Prints seconds per way, best of 3.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "operator"))

from batchyard.core.capacity import CEView, Resources
from batchyard.core.scheduler import JobView, QueueView, Scheduler, World


def main() -> None:
    arrays = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    size = int(sys.argv[2]) if len(sys.argv) > 2 else 10_000
    world = World.of([CEView(name="ce", max_vcpus=1000)], [QueueView("q", 1, ("ce",))], [])
    demand = Resources.of(1, 512)
    views = [
        [
            JobView(key=("ns", f"a{a}", i), queue="q", submitted_at=float(a), demand=demand)
            for i in range(size)
        ]
        for a in range(arrays)
    ]

    def one_by_one() -> None:
        s = Scheduler()
        s.set_world(world)
        for children in views:
            for v in children:
                s.add_runnable(v, 1.0)

    def per_array() -> None:
        s = Scheduler()
        s.set_world(world)
        for children in views:
            s.add_runnables(children, 1.0)

    print(f"{arrays} arrays x {size} children; load {os.getloadavg()[0]:.1f}")
    for name, fn in (("add_runnable per child", one_by_one), ("add_runnables per array", per_array)) * 3:
        gc.collect()
        t0 = time.perf_counter()
        fn()
        print(f"  {name}: {time.perf_counter() - t0:.2f} s")


if __name__ == "__main__":
    main()
