"""The report of a run: a table per fault, the end state, the goals met or missed, the processes' notable log
lines; and the same as JSON."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from adapter_devtools.chaos.counting import Figures, Goals, Stuck, misses, stuck_misses
from adapter_devtools.chaos.model import Exit

COLUMNS = ("fault", "on s", "accepted", "lost", "order", "dup", "gap s", "delay s", "exits", "503 %", "err", "dropped")
NOTABLE = re.compile(r"\b(WARNING|ERROR|CRITICAL|Traceback)\b|^\w+(\.\w+)*(Error|Exception)\b")
STAMP = re.compile(r"^\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d[,.]\d+\s+")


@dataclass
class Result:
    layout: str
    commit: str
    settings: dict[str, Any]
    rows: list[Figures]
    stuck: Stuck
    goals: Goals
    exits: list[Exit]
    retired: int  # devices that stopped: a status change of theirs was dropped
    malformed: int  # requests the receiver could not read
    seconds: float
    logs: dict[str, list[tuple[int, str]]] = field(default_factory=dict)

    def misses(self) -> dict[str, list[str]]:
        out = {r.name: m for r in self.rows if (m := misses(r, self.goals))}
        if stuck := stuck_misses(self.stuck):
            out["end"] = stuck
        return out

    @property
    def passed(self) -> bool:
        return not self.misses()

    def to_json(self) -> dict[str, Any]:
        rows = [{**asdict(r), "share_503": r.share_503} for r in self.rows]
        return {"layout": self.layout, "commit": self.commit, "settings": self.settings, "faults": rows,
                "stuck": {**asdict(self.stuck), "total": self.stuck.total}, "goals": asdict(self.goals),
                "misses": self.misses(), "passed": self.passed, "exits": [asdict(e) for e in self.exits],
                "retired_devices": self.retired, "malformed_requests": self.malformed,
                "seconds": round(self.seconds, 1), "logs": {k: [list(x) for x in v] for k, v in self.logs.items()}}


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def row_cells(r: Figures) -> list[str]:
    share = None if r.share_503 is None else 100 * r.share_503
    return [r.name, _num(r.length, ".1f"), str(r.accepted), str(r.lost), str(r.order), str(r.duplicates),
            _num(r.gap, ".2f") + "+" * r.gap_open, _num(r.delay, ".2f") + "+" * r.delay_open, str(r.exits),
            _num(share, ".1f"), str(r.errors), str(r.dropped + r.rejected)]


def table(rows: Iterable[list[str]]) -> str:
    rows = list(rows)
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths,
                                                                                                   strict=True)))
                     for row in rows)


def text(result: Result) -> str:
    s = result.settings
    pipelined = (f", pipelined on {s['connections']} connections (at most {s.get('most_in_flight', 0)} requests in "
                 f"flight on one)" if s.get("connections") else "")
    out = [f"chaos: layout {result.layout}, {s['devices']} devices x {s['rate']:g}/s{pipelined}, adapter at "
           f"{result.commit} (its last commit), {result.seconds:.0f} s"]
    out.append(table([list(COLUMNS), *(row_cells(r) for r in result.rows)]))
    notes = [f"  {r.name}: {r.note}" for r in result.rows if r.note]
    if notes:
        out += ["notes:", *notes]
    st = result.stuck
    held = ", ".join(f"{t} {n}" for t, n in st.held.items())
    out.append(f"stuck at the end: {st.total} (held {held}; retry sets {st.retry}; hold lists {st.hold_entries} "
               f"held + {st.marks} bare marks; pending {st.pending}; unread {st.unread})")
    if st.where:
        out.append("  in " + ", ".join(f"{k} ({n})" for k, n in sorted(st.where.items())[:12]))
    for e in result.exits:
        out.append(f"exit: {e.process} exited on its own with {e.code}")
    if result.retired or result.malformed:
        out.append(f"devices stopped after a dropped status change: {result.retired}; unreadable requests at the "
                   f"receiver: {result.malformed}")
    for kind, lines in result.logs.items():
        out.append(f"{kind} logs, most frequent notable lines:")
        out += [f"  {n:>5} x {line}" for n, line in lines]
    g = result.goals
    out.append(f"goals: 0 lost, 0 stuck, 0 out of order, duplicates <= {g.cap} per fault, 0 worker exits, "
               f"recovery (gap and delay) <= {g.recovery:g} s")
    missed = result.misses()
    out += [f"  MISSED {name}: {', '.join(m)}" for name, m in missed.items()]
    out.append("goals met" if not missed else "goals NOT met")
    return "\n".join(out)


def notable_lines(paths: Iterable[Path], top: int = 8) -> list[tuple[int, str]]:
    """The most frequent warning, error and traceback lines of `paths`, with timestamps dropped and numbers
    written as #, so that one kind of failure is one line."""
    seen: Counter[str] = Counter()
    for path in paths:
        if not path.exists():
            continue
        for line in path.read_text(errors="replace").splitlines():
            if NOTABLE.search(line):
                seen[re.sub(r"\d+", "#", STAMP.sub("", line.strip()))[:160]] += 1
    return [(n, line) for line, n in seen.most_common(top)]
