"""`scripts/chaos.py`: run the chaos suite, print the table (and `--json`), exit 0 when the goals are met,
1 when not, 2 when the run itself could not be made."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from adapter_devtools.chaos import faults
from adapter_devtools.chaos.suite import Config, run

LONG = {"devices": 40, "rate": 4.0, "warmup": 5.0, "settle": 8.0, "kill_spacing": 4.0}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="chaos.py", description="Faults under load; what the receiver got, per fault "
                                                             "(docs/reliability.md).")
    p.add_argument("--layout", choices=[faults.SINGLE, faults.CLUSTER], default=faults.SINGLE)
    p.add_argument("--faults", help=f"comma-separated, in order, of: {', '.join(faults.FAULTS)} "
                                    "(default: the layout's short or long list)")
    p.add_argument("--long", action="store_true", help="every fault of the layout, longer load and settle times")
    p.add_argument("--devices", type=int)
    p.add_argument("--rate", type=float, help="events per second per device")
    p.add_argument("--settle", type=float, help="s after each fault still counted against it")
    p.add_argument("--warmup", type=float, help="s of load before the first fault")
    p.add_argument("--connections", type=int, default=0,
                   help="the load pipelines its requests on this many connections, as EMQX's HTTP connector does "
                        "(8 in this project's config); 0 (default): one request per connection at a time (aiohttp)")
    p.add_argument("--target-concurrency", type=int, help="ADAPTER_DELIVERY_TARGET_CONCURRENCY (the duplicate cap)")
    p.add_argument("--recovery-goal", type=float, default=2.0)
    p.add_argument("--full-coverage", choices=["yes", "no"], default="no",
                   help="the cluster's cluster-require-full-coverage (default no, as docs/cluster.md advises)")
    p.add_argument("--env", action="append", default=[], metavar="ADAPTER_X=V", help="more adapter settings")
    p.add_argument("--logs", type=Path, help="keep the processes' logs in this directory")
    p.add_argument("--records", type=Path, help="write every item, arrival and ingest answer here (JSON)")
    p.add_argument("--json", nargs="?", const="-", metavar="PATH", help="the summary as JSON (to PATH, or stdout)")
    return p


def config_of(args: argparse.Namespace) -> Config:
    listed = faults.LONG if args.long else faults.SHORT
    names = tuple(n.strip() for n in args.faults.split(",")) if args.faults else listed[args.layout]
    for name in names:
        if name not in faults.FAULTS or args.layout not in faults.FAULTS[name].layouts:
            raise SystemExit(f"chaos.py: {name!r} is not a fault of layout {args.layout}")
    base = LONG if args.long else {}
    given = {k: v for k, v in {"devices": args.devices, "rate": args.rate, "settle": args.settle,
                               "warmup": args.warmup}.items() if v is not None}
    extra = dict(e.split("=", 1) for e in args.env)
    return Config(layout=args.layout, faults=names, target_concurrency=args.target_concurrency,
                  recovery_goal=args.recovery_goal, logs=args.logs, records=args.records, extra_env=extra,
                  full_coverage=args.full_coverage == "yes", connections=args.connections,
                  **(base | given))


def _terminated(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)  # unwinds the run: every process it started is stopped, every directory removed


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    config = config_of(args)
    signal.signal(signal.SIGTERM, _terminated)
    try:
        result = run(config)
    except (RuntimeError, OSError, TimeoutError) as exc:
        print(f"chaos.py: the run failed: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    summary = result.to_json()
    if args.json == "-":
        print(json.dumps(summary, indent=2))
    else:
        from adapter_devtools.chaos.report import text

        print(text(result))
        if args.json:
            Path(args.json).write_text(json.dumps(summary, indent=2))
    return 0 if result.passed else 1
