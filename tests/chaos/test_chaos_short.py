"""The chaos suite's short form (docs/reliability.md, issue 20 item 6): one Redis of the suite's own (AOF), the
API and 2 workers as real processes, 20 devices at 4 events/s through the ingest to a route and a callback,
while Redis is paused, full, demoted and restarted and workers are SIGKILLed. Everything accepted arrives, in
order per device, nothing stays held, no worker exits on its own, duplicates stay within the in-flight cap.
Recovery is printed (`pytest -s`) and held only to a generous bound: CI machines are noisy.

The same from the command line, with the table: `.venv/bin/python scripts/chaos.py` (the long form: `--long`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from adapter_devtools.chaos import report
from adapter_devtools.chaos.faults import SHORT, SINGLE
from adapter_devtools.chaos.model import STEADY
from adapter_devtools.chaos.suite import Config, run

pytestmark = pytest.mark.chaos
RECOVERY_BOUND = 15.0  # s; the goal is 2 s (reported), this only catches a delivery that never resumes


def test_short_chaos_on_one_redis(tmp_path: Path) -> None:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    result = run(Config(layout=SINGLE, faults=SHORT[SINGLE], devices=20, logs=tmp_path / "logs"))
    text = report.text(result)
    print("\n" + text)
    total = next(r for r in result.rows if r.name == "all")
    faults = [r for r in result.rows if r.name not in ("all", STEADY)]
    wrong = [f"{total.lost} lost" if total.lost else "", f"{result.stuck.total} stuck" if result.stuck.total else "",
             f"{total.order} out of order" if total.order else "",
             f"{total.exits} worker exits" if total.exits else "",
             f"{total.rejected} rejected by the ingest" if total.rejected else ""]
    wrong += [f"{r.name}: {r.duplicates} duplicates > {result.goals.cap}" for r in faults
              if r.duplicates > result.goals.cap]
    wrong += [f"{r.name}: no recovery within {RECOVERY_BOUND:g} s ({max(r.gap or 0, r.delay or 0):.1f} s)"
              for r in faults if max(r.gap or 0, r.delay or 0) > RECOVERY_BOUND]
    assert total.accepted > 0 and len(faults) == len(SHORT[SINGLE])
    assert not [w for w in wrong if w], "; ".join(w for w in wrong if w) + "\n" + text
