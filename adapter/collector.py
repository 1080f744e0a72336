"""The garbage collector's schedule in the long-running processes (`adapter api`, `adapter worker`).

CPython collects the youngest generation every 700 net allocations of container objects and, now and then, the
whole heap. A process that serves events allocates a few dozen containers per event (the event, its plan, the
tasks and futures of its awaits), nearly all freed by reference counting at once; the collector finds almost no
cycles, yet it cost 8–9 % of the API's and the workers' CPU in a reconnect storm (perf: gc_collect_main,
visit_decref, visit_reachable) and each full collection of the API's heap (its modules, caches, route table) held
the loop for ~60 ms (docs/benchmarks.md "The collector's schedule").

`settle()`, once a process has started (its modules imported, its connections and tables set up): a collection,
then everything alive moves to the permanent generation (`gc.freeze`: no later collection walks it), and the
youngest generation is collected every THRESHOLD[0] allocations instead of 700. Cycles are still collected, later.
"""

from __future__ import annotations

import gc

THRESHOLD = (10_000, 20, 50)


def settle() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLD)
