"""The chaos suite: bounded load with a sequence number per device through the ingest, to a route and a
callback at a recording receiver, while faults are injected one after another (Redis restart, pause, OOM,
demotion, worker SIGKILL; on a 3+3 cluster a primary killed or frozen and a live slot migration). Prints per
fault what was lost, out of order, duplicated, how long deliveries stalled, and whether the goals are met
(exit 0) or not (exit 1). docs/reliability.md.

    .venv/bin/python scripts/chaos.py                          # short form, one Redis (~1.5 min)
    .venv/bin/python scripts/chaos.py --long                   # every fault of one Redis
    .venv/bin/python scripts/chaos.py --layout cluster --long  # 3 primaries + 3 replicas
    .venv/bin/python scripts/chaos.py --faults pause,worker-kill --devices 20 --json out.json
"""

from __future__ import annotations

import sys

from adapter_devtools.chaos.cli import main

if __name__ == "__main__":
    sys.exit(main())
