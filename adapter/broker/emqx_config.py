"""The adapter's integration with EMQX 5, defined once: the HTTP connector and action, the rules
(`rules/*.sql`), HTTP authentication and authorization, and the TLS they share.

`adapter emqx apply` (emqx_apply.py) installs these through EMQX's REST API; `scripts/gen_emqx_config.py`
writes them as HOCON into `emqx-config/` for the file route (docker-compose). Each value that an operator
may ask about says why it is what it is; docs/emqx.md ("What to set in production") has the same table.

A rule is one `rules/<name>.sql` file: leading `--` lines are its description, the rest its SQL, and its id
is `adapter_` + the file name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapter.settings import ConfigError

CONNECTOR = "adapter"
ACTION = "adapter_events"
ACTION_REF = f"http:{ACTION}"
RULE_PREFIX = "adapter_"
INGEST_PATH = "/emqx/events"
AUTHN_PATH = "/emqx/authn"
AUTHZ_PATH = "/emqx/authz"
AUTHENTICATOR_ID = "password_based:http"  # EMQX's id of an HTTP authenticator: one per chain
AUTHZ_SOURCE = "http"  # EMQX's type of an HTTP authorization source: one per cluster

# The action's `request_ttl`. In EMQX 5.8.9 it is also the timeout of each HTTP request (emqx/emqx#15911),
# so a hung adapter holds an in-flight slot this long per try. The adapter answers every event within its
# own Redis deadline (10 s for a batch, then 503), and gives up on a command's answer after
# ADAPTER_COMMAND_ACK_TIMEOUT (30 s): an event older than that is of little use (presence is repaired by
# the reconciliation, a lost answer is sent again).
REQUEST_TTL = "30s"
# The action's buffer, per buffer worker (16 a node): at most 16 x 16 MB = 256 MB of memory on each EMQX node
# while the adapter does not answer. It holds 30 s (REQUEST_TTL: older events are dropped anyway) of about
# 8,500 events/s of 1 KB per node.
WORKER_POOL_SIZE = 16
MAX_BUFFER_MB = 16
MAX_BUFFER_BYTES = f"{MAX_BUFFER_MB}MB"


def ssl_config(base_url: str, ca_file: str = "", verify: bool = True) -> dict[str, Any]:
    """The `ssl` block of the connector, the authenticator and the authorization source.

    EMQX's default for these clients is `verify_none` (emqx_schema): over https it would send the ingest
    token to anyone who answers. So an https URL gets `verify_peer` against `ca_file` (a path on every EMQX
    node; the certificate must be valid for the URL's host); `verify=False` is the explicit opt-out.
    Callers make sure an https URL with `verify` has a `ca_file` (`check_tls`).
    """
    if not base_url.startswith("https://"):
        return {"enable": False}
    if not verify:
        return {"enable": True, "verify": "verify_none"}
    return {"enable": True, "verify": "verify_peer", "cacertfile": ca_file}


def check_tls(base_url: str, ca_file: str, verify: bool, *, ca_name: str, off_name: str) -> None:
    """Refuse an https URL whose certificate EMQX could not check (the names are the caller's flags)."""
    if base_url.startswith("https://") and verify and not ca_file:
        raise ConfigError(f"the adapter URL is https: give {ca_name} (the CA that signed the adapter's "
                          f"certificate, a path on every EMQX node) or {off_name} to skip the check")


def connector_config(base_url: str, token: str, ssl: Any) -> dict[str, Any]:
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
        "ssl": ssl,
        "resource_opts": {"health_check_interval": "15s"},
    }


def action_config() -> dict[str, Any]:
    """The HTTP action (`actions.http.adapter_events`): the whole selected event as the JSON body.

    At least once, within limits: requests the adapter answers with 503 (Redis unavailable), 429 or not at
    all are retried (up to 3 attempts at once, a number fixed in EMQX's connector, then from the buffer) until
    they are `request_ttl` (REQUEST_TTL, 30 s) old, and each attempt waits at most that long for an answer:
    EMQX 5.8.9 uses `request_ttl` as the HTTP request timeout too. The buffer holds up to `max_buffer_bytes`
    per buffer worker (MAX_BUFFER_BYTES x 16 workers per node) before it drops the oldest. There is no
    `parameters.max_retries`: EMQX 5.8 accepts the field and ignores it (emqx_bridge_http_connector).
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
            "worker_pool_size": WORKER_POOL_SIZE,
            "inflight_window": 100,
            "request_ttl": REQUEST_TTL,
            "max_buffer_bytes": MAX_BUFFER_BYTES,
            "health_check_interval": "15s",
        },
    }


def _http_client(url: str, token: str, ssl: Any) -> dict[str, Any]:
    """What the authenticator and the authorization source share: one POST with the token, TLS, timeouts.

    The adapter answers from a cache in about a millisecond; a secret that misses it costs one argon2id
    check (tens of ms, queued at most about 3 s). A timeout counts as "ignore".
    """
    return {
        "enable": True,
        "method": "post",
        "url": url,
        "headers": {"content-type": "application/json", "authorization": f"Bearer {token}"},
        "request_timeout": "5s",
        "connect_timeout": "5s",
        "pool_size": 8,
        "enable_pipelining": 100,
        "ssl": ssl,
    }


def authn_config(base_url: str, token: str, ssl: Any) -> dict[str, Any]:
    """The HTTP authenticator (`password_based:http`): device secrets and configured clients."""
    return {
        "mechanism": "password_based",
        "backend": "http",
        **_http_client(f"{base_url}{AUTHN_PATH}", token, ssl),
        "body": {"clientid": "${clientid}", "username": "${username}", "password": "${password}",
                 "peerhost": "${peerhost}"},
    }


def authz_config(base_url: str, token: str, ssl: Any) -> dict[str, Any]:
    """The HTTP authorization source: each device on its own topics, configured clients on theirs."""
    return {
        "type": AUTHZ_SOURCE,
        **_http_client(f"{base_url}{AUTHZ_PATH}", token, ssl),
        "body": {"clientid": "${clientid}", "username": "${username}", "topic": "${topic}",
                 "action": "${action}"},
    }


def authorization_settings() -> dict[str, Any]:
    """The `authorization` settings of the file route, where the adapter is the only source.

    A client the adapter does not know (answer "ignore") is refused everything (`no_match = deny`). The
    adapter's decisions depend only on the client id and the user name, so a long cache is safe.
    `adapter emqx apply --auth` leaves a running cluster's settings as they are.
    """
    return {"no_match": "deny", "deny_action": "ignore", "cache": {"enable": True, "max_size": 64, "ttl": "10m"}}


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
