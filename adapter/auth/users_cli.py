"""`adapter user add|list|passwd|del`: manage API users from a terminal."""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys

from adapter.auth.users import UserStore
from adapter.errors import AppError
from adapter.settings import ConfigError, Settings
from adapter.store.connections import async_redis, check_redis
from adapter.store.keys import Keys


def read_password() -> str:
    if not sys.stdin.isatty():
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise ConfigError("no password on standard input")
        return line
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise ConfigError("the passwords differ")
    return first


async def _run(settings: Settings, args: argparse.Namespace) -> int:
    client = async_redis(settings)
    store = UserStore(client, Keys.of(settings))
    try:
        if args.user_command == "add":
            await store.add(args.name, args.role, read_password())
            print(f"added {args.name} ({args.role})")
        elif args.user_command == "list":
            for row in await store.list():
                print(f"{row['user']}\t{row['role']}")
        elif args.user_command == "passwd":
            await store.set_password(args.name, read_password())
            print(f"password of {args.name} changed; its logins ended")
        elif args.user_command == "del":
            await store.delete(args.name)
            print(f"deleted {args.name}")
    finally:
        await client.aclose()
    return 0


def run(settings: Settings, args: argparse.Namespace) -> int:
    check_redis(settings)
    try:
        return asyncio.run(_run(settings, args))
    except AppError as exc:
        print(f"adapter: {exc.msg}", file=sys.stderr)
        return 1
