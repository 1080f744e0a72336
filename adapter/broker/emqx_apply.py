"""The adapter's integration with EMQX 5 (HTTP connector, HTTP action, rules), defined once, and
`adapter emqx apply`, which installs it into a running EMQX through its REST API.

The same definitions are written as HOCON into `emqx-config/` by `scripts/gen_emqx_config.py`, so the file
route (docker-compose) and the API route (an existing cluster) install the same thing. The rules come from
`rules/*.sql`, one rule a file: leading `--` lines are its description, the rest its SQL, and its id is
`adapter_` + the file name.

Applying is idempotent: each resource is read (`GET`), compared with what it should be, and only then
created (`POST`, when missing) or replaced (`PUT`, when it differs). A second run changes nothing. EMQX
masks secrets in what it returns (the `authorization` header reads `******`), so a masked value counts as
equal; `--force` replaces every resource, for instance after changing the ingest token.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx

from adapter.settings import ConfigError, Settings

CONNECTOR = "adapter"
ACTION = "adapter_events"
ACTION_REF = f"http:{ACTION}"
RULE_PREFIX = "adapter_"
INGEST_PATH = "/emqx/events"
MASKED = "******"

Step = Literal["create", "update", "unchanged"]


def connector_config(base_url: str, token: str) -> dict[str, Any]:
    """The HTTP connector (`connectors.http.adapter`): where the adapter is and the shared secret it checks.

    `pool_type = hash` sends one client's events through one connection (fewer reorderings).
    """
    return {
        "enable": True,
        "url": base_url,
        "headers": {"content-type": "application/json", "authorization": f"Bearer {token}"},
        "connect_timeout": "5s",
        "pool_type": "hash",
        "pool_size": 8,
        "enable_pipelining": 100,
        "ssl": {"enable": False},
        "resource_opts": {"health_check_interval": "15s"},
    }


def action_config() -> dict[str, Any]:
    """The HTTP action (`actions.http.adapter_events`): the whole selected event as the JSON body.

    At least once: requests the adapter answers with 503 (Redis unavailable), 429 or not at all are retried
    (up to 3 attempts at once, a number fixed in EMQX's connector, then by the buffer) for `request_ttl`; the
    buffer holds up to `max_buffer_bytes` per buffer worker (16 workers) before it drops the oldest. There is
    no `parameters.max_retries`: EMQX 5.8 accepts the field and ignores it (emqx_bridge_http_connector).
    """
    return {
        "enable": True,
        "connector": CONNECTOR,
        "parameters": {
            "method": "post",
            "path": INGEST_PATH,
            "headers": {"content-type": "application/json"},
            "body": "${.}",
        },
        "resource_opts": {
            "query_mode": "async",
            "worker_pool_size": 16,
            "inflight_window": 100,
            "request_ttl": "120s",
            "max_buffer_bytes": "64MB",
            "health_check_interval": "15s",
        },
    }


@dataclass(frozen=True)
class Rule:
    id: str
    sql: str
    description: str

    def config(self) -> dict[str, Any]:
        return {"sql": self.sql, "actions": [ACTION_REF], "enable": True, "description": self.description}


def parse_rule(name: str, text: str) -> Rule:
    """A rule from one `rules/<name>.sql` file: `--` lines describe it, the others are its SQL (one line)."""
    comments, sql = [], []
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("--"):
            comments.append(stripped[2:].strip())
        elif stripped:
            sql.append(stripped)
    if not sql:
        raise ValueError(f"rule {name}: no SQL")
    rule = Rule(f"{RULE_PREFIX}{name}", " ".join(sql), " ".join(comments))
    if negated_groups(rule.sql):
        raise ValueError(f"rule {name}: NOT over a parenthesised AND/OR ({negated_groups(rule.sql)[0]}); "
                         "EMQX 5.8's rule runtime cannot evaluate it: negate each comparison instead")
    return rule


_STRING = re.compile(r"'[^']*'|\"[^\"]*\"")
_NOT_GROUP = re.compile(r"\bNOT\s*\(", re.IGNORECASE)
_AND_OR = re.compile(r"\b(AND|OR)\b", re.IGNORECASE)


def negated_groups(sql: str) -> list[str]:
    """Each `NOT (...)` of `sql` whose parentheses hold an AND or OR (string literals do not count)."""
    blank = _STRING.sub(lambda m: "'" + " " * (len(m.group()) - 2) + "'", sql)
    found = []
    for m in _NOT_GROUP.finditer(blank):
        depth, end = 0, len(blank)
        for i in range(m.end() - 1, len(blank)):
            depth += {"(": 1, ")": -1}.get(blank[i], 0)
            if depth == 0:
                end = i + 1
                break
        if _AND_OR.search(blank, m.end(), end):
            found.append(sql[m.start():end])
    return found


def load_rules(directory: Path) -> list[Rule]:
    files = sorted(directory.glob("*.sql"))
    if not files:
        raise ConfigError(f"no rules (*.sql) in {directory}")
    return [parse_rule(f.stem, f.read_text(encoding="utf-8")) for f in files]


@dataclass(frozen=True)
class Resource:
    """One thing to install: `kind` is the API collection, `create` the POST body, `update` the PUT body."""

    kind: str  # connectors | actions | rules
    id: str
    create: dict[str, Any]
    update: dict[str, Any]

    @property
    def path(self) -> str:
        return f"/{self.kind}/{self.id}"


def resources(base_url: str, token: str, rules: Sequence[Rule]) -> list[Resource]:
    """Everything to install, in dependency order (connector, action, rules)."""
    connector = connector_config(base_url, token)
    action = action_config()
    out = [
        Resource("connectors", f"http:{CONNECTOR}", {"type": "http", "name": CONNECTOR, **connector},
                 connector),
        Resource("actions", ACTION_REF, {"type": "http", "name": ACTION, **action}, action),
    ]
    out += [Resource("rules", r.id, {"id": r.id, **r.config()}, r.config()) for r in rules]
    return out


def same(desired: Any, current: Any) -> bool:
    """Whether `current` (as EMQX returns it) already has every value of `desired`.

    Fields EMQX adds (defaults, status, metrics) are ignored; a masked secret matches any value.
    """
    if current == MASKED:
        return True
    if isinstance(desired, Mapping):
        return isinstance(current, Mapping) and all(k in current and same(v, current[k])
                                                    for k, v in desired.items())
    if isinstance(desired, list):
        return (isinstance(current, list) and len(current) == len(desired)
                and all(same(d, c) for d, c in zip(desired, current, strict=True)))
    return bool(desired == current)


def plan(resource: Resource, current: Mapping[str, Any] | None, *, force: bool = False) -> Step:
    if current is None:
        return "create"
    if force or not same(resource.update, current):
        return "update"
    return "unchanged"


class ApplyError(Exception):
    """EMQX refused a request or could not be reached; the message is one line."""


class EmqxAdmin:
    """The few calls `apply` needs, with the API key over HTTP Basic."""

    def __init__(self, api_url: str, key: str, secret: str, timeout: float = 10.0) -> None:
        self.client = httpx.Client(base_url=api_url.rstrip("/"), auth=(key, secret), timeout=timeout)

    def close(self) -> None:
        self.client.close()

    def get(self, path: str) -> dict[str, Any] | None:
        r = self._send("GET", path)
        if r.status_code == 404:
            return None
        body = self._expect(r, "GET", path, 200)
        if not isinstance(body, dict):
            raise ApplyError(f"GET {path}: EMQX answered {r.status_code} without a JSON object")
        return body

    def write(self, step: Step, resource: Resource) -> None:
        if step == "create":
            path = f"/{resource.kind}"
            self._expect(self._send("POST", path, resource.create), "POST", path, 200, 201)
        elif step == "update":
            self._expect(self._send("PUT", resource.path, resource.update), "PUT", resource.path, 200)

    def _send(self, method: str, path: str, body: Any = None) -> httpx.Response:
        try:
            return self.client.request(method, path, json=body)
        except httpx.HTTPError as exc:
            raise ApplyError(f"{method} {path}: EMQX at {self.client.base_url} does not answer: {exc}") \
                from None

    @staticmethod
    def _expect(r: httpx.Response, method: str, path: str, *ok: int) -> Any:
        if r.status_code in ok:
            try:
                return r.json() if r.content else None
            except ValueError:
                raise ApplyError(f"{method} {path}: EMQX answered {r.status_code}, not JSON") from None
        raise ApplyError(f"{method} {path}: EMQX answered {r.status_code} {_reason(r)}")


def _reason(r: httpx.Response) -> str:
    if r.status_code == 401:
        return "(the API key and secret were refused: ADAPTER_EMQX_API_KEY / ADAPTER_EMQX_API_SECRET)"
    try:
        body = r.json()
    except ValueError:
        return r.text[:200]
    if isinstance(body, dict):
        return f"{body.get('code', '')}: {body.get('message', '')}"[:300]
    return str(body)[:200]


def apply(admin: EmqxAdmin, todo: Sequence[Resource], *, force: bool = False,
          dry_run: bool = False) -> list[tuple[Resource, Step]]:
    """Bring EMQX to `todo`, in order; return what was (or, with `dry_run`, would be) done to each."""
    done = []
    for resource in todo:
        step = plan(resource, admin.get(resource.path), force=force)
        if not dry_run:
            admin.write(step, resource)
        done.append((resource, step))
    return done


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="adapter emqx apply",
        description="Install the adapter's HTTP connector, HTTP action and rules into a running EMQX 5 "
                    "through its REST API (ADAPTER_EMQX_API_URL, _KEY, _SECRET). Idempotent.")
    p.add_argument("--adapter-url", required=True,
                   help="base URL at which the EMQX nodes reach this service, e.g. http://adapter:8000")
    p.add_argument("--rules", type=Path, default=Path("rules"), help="directory of the rule files (rules)")
    p.add_argument("--force", action="store_true", help="replace every resource, even when it looks the same "
                   "(EMQX hides the ingest token, so use this after changing ADAPTER_INGEST_TOKEN)")
    p.add_argument("--dry-run", action="store_true", help="only say what would change")
    return p


def main(argv: Sequence[str] | None = None, *, settings: Settings | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = settings or Settings.from_env()
        settings.require("ingest_token", "emqx_api_key", "emqx_api_secret")
        if not args.adapter_url.startswith(("http://", "https://")):
            raise ConfigError(f"--adapter-url must be an http(s) URL, not {args.adapter_url!r}")
        todo = resources(args.adapter_url.rstrip("/"), settings.ingest_token, load_rules(args.rules))
    except (ConfigError, ValueError, OSError) as exc:
        print(f"adapter emqx apply: {exc}", file=sys.stderr)
        return 2
    admin = EmqxAdmin(settings.emqx_api_url, settings.emqx_api_key, settings.emqx_api_secret)
    try:
        done = apply(admin, todo, force=args.force, dry_run=args.dry_run)
    except ApplyError as exc:
        print(f"adapter emqx apply: {exc}", file=sys.stderr)
        return 1
    finally:
        admin.close()
    verbs = {"create": "created", "update": "updated", "unchanged": "unchanged"}
    prefix = "would be " if args.dry_run else ""
    for resource, step in done:
        print(f"{prefix if step != 'unchanged' else ''}{verbs[step]:<9} {resource.kind}/{resource.id}")
    return 0
