"""The `adapter` command line (docs/design.md §14). Each command fails with one line, never a traceback,
when its configuration is wrong or Redis does not answer.

`dev`, `devbroker` and `simulate` are the dev tools (`adapter_devtools`, a distribution of its own under
devtools/, not in the service's wheel): imported here lazily, and only here; without them these commands
say so in one line (exit 2).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Iterator

from adapter.errors import AppError
from adapter.settings import ConfigError, Settings

# the dev tools' package and what it needs that the service does not
DEVTOOLS_MODULES = frozenset({"adapter_devtools", "amqtt", "paho"})
DEVTOOLS_HINT = "pip install -e ./devtools (make install, make run and make test do this)"


class DevToolsMissing(Exception):
    """A dev command ran where the dev tools are not installed (the production image, a service-only venv)."""


@contextlib.contextmanager
def devtools(command: str) -> Iterator[None]:
    """Around the lazy import of a dev tool: a missing dev tools package becomes `DevToolsMissing`."""
    try:
        yield
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] not in DEVTOOLS_MODULES:
            raise
        raise DevToolsMissing(f"adapter {command} needs the dev tools (no module named {exc.name!r}): "
                              f"{DEVTOOLS_HINT}") from None


def _api(args: argparse.Namespace) -> int:
    from adapter.api.protocol import IngestProtocol
    from adapter.broker import emqx_auth
    from adapter.http import runner

    settings = Settings.from_env()
    emqx_auth.parse_clients(settings.mqtt_clients)  # a domain setting, checked where it is used: before serving
    return runner.run_api(settings, host=args.host, port=args.port, workers=args.workers, protocol=IngestProtocol)


def _worker(args: argparse.Namespace) -> int:
    from adapter import worker

    return worker.run(Settings.from_env(), burst=args.burst)


def _user(args: argparse.Namespace) -> int:
    from adapter.auth import users_cli

    return users_cli.run(Settings.from_env(), args)


def _store(args: argparse.Namespace) -> int:
    from adapter.migrate import run

    return run.run(run.Options(source=args.source, target=args.to, partitions=args.partitions, prefix=args.prefix,
                               batch=args.batch, dry_run=args.dry_run, verify_only=args.verify,
                               yes_stopped=args.yes_stopped))


def _dev(args: argparse.Namespace) -> int:
    with devtools("dev"):
        from adapter_devtools import dev

    return dev.run(args)


def _devbroker(argv: list[str]) -> int:
    with devtools("devbroker"):
        from adapter_devtools.devbroker import main as devbroker_main

    return devbroker_main(argv)


def _emqx(argv: list[str]) -> int:
    from adapter.broker import emqx_apply

    if argv[:1] != ["apply"]:
        print("usage: adapter emqx apply --adapter-url URL [--rules DIR] [--auth] [--ca-file PATH | --no-tls-verify] "
              "[--force] [--dry-run]", file=sys.stderr)
        return 2
    return emqx_apply.main(argv[1:])


def _simulate(argv: list[str]) -> int:
    with devtools("simulate"):
        from adapter_devtools.simulator import main as simulate_main

    return simulate_main(argv)


def _positive(raw: str) -> int:
    if not raw.isdigit() or int(raw) < 1:
        raise argparse.ArgumentTypeError(f"a positive whole number, not {raw!r}")
    return int(raw)


# commands with a parser of their own: everything after the command's name is theirs
PASS_THROUGH: dict[str, Callable[[list[str]], int]] = {"devbroker": _devbroker, "simulate": _simulate,
                                                       "emqx": _emqx}


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="adapter", description="EMQX device-management adapter")
    sub = top.add_subparsers(dest="command", required=True)

    api = sub.add_parser("api", help="serve the HTTP API")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8000)
    api.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    api.set_defaults(run=_api)

    worker = sub.add_parser("worker", help="run an RQ worker with the scheduler")
    worker.add_argument("--burst", action="store_true", help="exit when the queues are empty")
    worker.set_defaults(run=_worker)

    user = sub.add_parser("user", help="manage API users")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    add = user_sub.add_parser("add", help="add a user (password from stdin or a prompt)")
    add.add_argument("name")
    add.add_argument("--role", choices=["admin", "viewer"], default="viewer")
    user_sub.add_parser("list", help="list users")
    passwd = user_sub.add_parser("passwd", help="set a user's password (ends its logins)")
    passwd.add_argument("name")
    delete = user_sub.add_parser("del", help="delete a user")
    delete.add_argument("name")
    user.set_defaults(run=_user)

    store = sub.add_parser("store", help="the store itself: `adapter store migrate` between layouts")
    store_sub = store.add_subparsers(dest="store_command", required=True)
    migrate = store_sub.add_parser(
        "migrate", help="copy a store into another key layout (one Redis <-> Redis Cluster, or other partitions)",
        description="Copies every key of the service's store from --from into --to, spelled for the layout of --to "
                    "(redis+cluster:// = Redis Cluster with --partitions partitions, redis:// = one Redis), then "
                    "compares the counts per kind. Never writes to --from. Rerun the same command to resume. "
                    "docs/cluster.md \"Moving a store between layouts\".")
    migrate.add_argument("--from", dest="source", required=True, metavar="URL", help="the store to read")
    migrate.add_argument("--to", required=True, metavar="URL", help="where to write it (must hold no store)")
    migrate.add_argument("--partitions", type=_positive, default=Settings.cluster_partitions,
                         help="the target cluster's ADAPTER_CLUSTER_PARTITIONS (default %(default)s)")
    migrate.add_argument("--prefix", default=Settings.key_prefix, help="ADAPTER_KEY_PREFIX (default %(default)s)")
    migrate.add_argument("--batch", type=_positive, default=1000, help="keys per SCAN page (default %(default)s)")
    migrate.add_argument("--dry-run", action="store_true", help="check and count, write nothing")
    migrate.add_argument("--verify", action="store_true", help="only compare the counts of --from and --to")
    migrate.add_argument("--yes-stopped", action="store_true",
                         help="every API process and worker on --from is stopped (required to write)")
    store.set_defaults(run=_store)

    dev = sub.add_parser("dev", help="the whole stack on the embedded default (dev tools)")
    dev.add_argument("--port", type=int, default=8000)
    dev.add_argument("--mqtt-port", type=int, default=1884)
    dev.add_argument("--broker-api-port", type=int, default=18083)
    dev.set_defaults(run=_dev)

    sub.add_parser("devbroker", help="the dev broker alone (dev tools; see `adapter devbroker --help`)", add_help=False)
    sub.add_parser("simulate", help="simulated DMA devices (dev tools; see `adapter simulate --help`)", add_help=False)
    sub.add_parser("emqx", help="`adapter emqx apply`: install connector, action, rules (--auth: authn/authz) in EMQX",
                   add_help=False)
    return top


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv and argv[0] in PASS_THROUGH:
            return PASS_THROUGH[argv[0]](argv[1:])
        args = parser().parse_args(argv)
        run: Callable[[argparse.Namespace], int] = args.run
        return run(args)
    except ConfigError as exc:
        print(f"adapter: {exc}", file=sys.stderr)
        return 2
    except AppError as exc:  # a command that refuses to run (adapter store migrate)
        print(f"adapter: {exc.msg}", file=sys.stderr)
        return 2
    except DevToolsMissing as exc:
        print(exc, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
