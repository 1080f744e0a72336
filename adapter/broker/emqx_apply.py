"""`adapter emqx apply`: installs the adapter's integration (emqx_config.py) into a running EMQX 5 through its
REST API: the HTTP connector, the HTTP action and the rules, and with `--auth` the HTTP authenticator and
authorization source.

Applying is idempotent: each resource is read (`GET`), compared with what it should be, and only then
created (`POST`, when missing) or replaced (`PUT`, when it differs). A second run changes nothing. EMQX
masks secrets in what it returns (the `authorization` header reads `******`), so a masked value counts as
equal; `--force` replaces every resource, for instance after changing the ingest token.

Authentication and authorization are lists in EMQX (the chain, the sources), and a running cluster has its
own entries in them: `--auth` adds or replaces only the adapter's entry and moves it to the front, where its
"ignore" for clients it does not know hands them on to the cluster's other entries. EMQX allows one HTTP
authenticator and one HTTP source: one that calls another service than the adapter is left alone and the
run stops (exit 1). Writing the lists into etc/emqx.conf instead would replace the cluster's own entries
(emqx.conf is read after cluster.hocon, so its lists win), which is why this goes through the API.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import httpx

from adapter.broker.emqx_config import (
    ACTION,
    ACTION_REF,
    AUTHENTICATOR_ID,
    AUTHN_PATH,
    AUTHZ_PATH,
    AUTHZ_SOURCE,
    CONNECTOR,
    Rule,
    action_config,
    authn_config,
    authz_config,
    check_tls,
    connector_config,
    load_rules,
    ssl_config,
)
from adapter.settings import ConfigError, Settings

MASKED = "******"

Step = Literal["create", "update", "unchanged", "front"]


@dataclass(frozen=True)
class Resource:
    """One thing to install: `kind` is the API collection, `create` the POST body, `update` the PUT body.

    `owned_url`: the end of the URL the adapter's own entry calls; an entry with another URL at `path`
    belongs to someone else (authentication and authorization). `leads`: it must be first in its chain.
    """

    kind: str  # connectors | actions | rules | authentication | authorization/sources
    id: str
    create: dict[str, Any]
    update: dict[str, Any]
    owned_url: str = ""
    leads: bool = False

    @property
    def path(self) -> str:
        return f"/{self.kind}/{self.id}"


def resources(base_url: str, token: str, rules: Sequence[Rule], ssl: dict[str, Any], *,
              auth: bool = False) -> list[Resource]:
    """Everything to install, in dependency order (connector, action, rules), then authn and authz."""
    connector = connector_config(base_url, token, ssl)
    action = action_config()
    out = [
        Resource("connectors", f"http:{CONNECTOR}", {"type": "http", "name": CONNECTOR, **connector},
                 connector),
        Resource("actions", ACTION_REF, {"type": "http", "name": ACTION, **action}, action),
    ]
    out += [Resource("rules", r.id, {"id": r.id, **r.config()}, r.config()) for r in rules]
    if auth:
        authn, authz = authn_config(base_url, token, ssl), authz_config(base_url, token, ssl)
        out += [Resource("authentication", AUTHENTICATOR_ID, authn, authn, AUTHN_PATH, leads=True),
                Resource("authorization/sources", AUTHZ_SOURCE, authz, authz, AUTHZ_PATH, leads=True)]
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


class ApplyError(Exception):
    """EMQX refused a request or could not be reached; the message is one line."""


def plan(resource: Resource, current: Mapping[str, Any] | None, *, force: bool = False) -> Step:
    if current is None:
        return "create"
    if resource.owned_url and not str(current.get("url", "")).endswith(resource.owned_url):
        raise ApplyError(f"{resource.path}: EMQX already has one that calls {current.get('url')!r}, not the "
                         f"adapter's {resource.owned_url}; EMQX allows only one, so it was left alone")
    if force or not same(resource.update, current):
        return "update"
    return "unchanged"


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

    def chain(self, resource: Resource) -> list[str]:
        """The ids of `resource`'s chain (the authenticators, the authorization sources), in EMQX's order."""
        path = f"/{resource.kind}"
        r = self._send("GET", path)
        body = self._expect(r, "GET", path, 200)
        if isinstance(body, Mapping):  # GET /authorization/sources: {"sources": [...]}
            body = body.get("sources")
        if not isinstance(body, list) or not all(isinstance(item, Mapping) for item in body):
            raise ApplyError(f"GET {path}: EMQX answered {r.status_code} without a list")
        return [str(item.get("id") or item.get("type") or f"{item.get('mechanism')}:{item.get('backend')}")
                for item in body]

    def move_to_front(self, resource: Resource) -> None:
        if resource.kind == "authentication":  # the position is in the path, there is no body
            path = f"{resource.path}/position/front"
            self._expect(self._send("PUT", path), "PUT", path, 200, 204)
        else:  # emqx_authz_api_sources.erl (v5.8.9): POST /authorization/sources/:type/move {"position": "front"}
            path = f"{resource.path}/move"
            self._expect(self._send("POST", path, {"position": "front"}), "POST", path, 200, 204)

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
    """Bring EMQX to `todo`, in order; return what was (or, with `dry_run`, would be) done to each.

    A resource that `leads` its chain and is not first there (EMQX adds new entries at one end) is moved
    to the front: one more ("front") step. The chain's other entries are never written.
    """
    done: list[tuple[Resource, Step]] = []
    for resource in todo:
        step = plan(resource, admin.get(resource.path), force=force)
        if not dry_run:
            admin.write(step, resource)
        done.append((resource, step))
        if resource.leads and not leads(admin.chain(resource), resource.id, dry_run and step == "create"):
            if not dry_run:
                admin.move_to_front(resource)
            done.append((resource, "front"))
    return done


def leads(chain: list[str], ident: str, to_be_added: bool) -> bool:
    """Whether `ident` is first in `chain`; one still to be added leads only an empty chain."""
    return chain[:1] == [ident] or (to_be_added and not chain)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="adapter emqx apply",
        description="Install the adapter's HTTP connector, HTTP action and rules (and with --auth its HTTP "
                    "authentication and authorization) into a running EMQX 5 through its REST API "
                    "(ADAPTER_EMQX_API_URL, _KEY, _SECRET). Idempotent.")
    p.add_argument("--adapter-url", required=True,
                   help="base URL at which the EMQX nodes reach this service, e.g. http://adapter:8000")
    p.add_argument("--rules", type=Path, default=Path("rules"), help="directory of the rule files (rules)")
    p.add_argument("--auth", action="store_true",
                   help="also install the HTTP authenticator and authorization source, first in their chains; "
                        "the cluster's other authenticators and sources are kept")
    p.add_argument("--ca-file", default="", metavar="PATH",
                   help="with an https --adapter-url: the CA certificate (PEM) that signed the adapter's "
                        "certificate, a path on every EMQX node; EMQX then verifies the adapter (verify_peer)")
    p.add_argument("--no-tls-verify", action="store_true",
                   help="with an https --adapter-url: let EMQX skip verifying the adapter's certificate "
                        "(verify_none; anyone on the path can then read the ingest token)")
    p.add_argument("--force", action="store_true", help="replace every resource, even when it looks the same "
                   "(EMQX hides the ingest token, so use this after changing ADAPTER_INGEST_TOKEN)")
    p.add_argument("--dry-run", action="store_true", help="only say what would change")
    return p


def plan_from(args: argparse.Namespace, settings: Settings) -> list[Resource]:
    """The resources the command line asks for; ConfigError when it cannot be done as asked."""
    settings.require("ingest_token", "emqx_api_key", "emqx_api_secret")
    url = args.adapter_url.rstrip("/")
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"--adapter-url must be an http(s) URL, not {args.adapter_url!r}")
    if not url.startswith("https://") and (args.ca_file or args.no_tls_verify):
        raise ConfigError("--ca-file and --no-tls-verify are for an https --adapter-url")
    if args.ca_file and args.no_tls_verify:
        raise ConfigError("give --ca-file or --no-tls-verify, not both")
    check_tls(url, args.ca_file, not args.no_tls_verify, ca_name="--ca-file", off_name="--no-tls-verify")
    ssl = ssl_config(url, args.ca_file, not args.no_tls_verify)
    return resources(url, settings.ingest_token, load_rules(args.rules), ssl, auth=args.auth)


VERBS: dict[Step, str] = {"create": "created", "update": "updated", "unchanged": "unchanged", "front": "moved"}


def report(resource: Resource, step: Step, dry_run: bool) -> str:
    line = f"{'would be ' if dry_run and step != 'unchanged' else ''}{VERBS[step]:<9} {resource.kind}/{resource.id}"
    return f"{line} to the front" if step == "front" else line


def main(argv: Sequence[str] | None = None, *, settings: Settings | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = settings or Settings.from_env()
        todo = plan_from(args, settings)
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
    for resource, step in done:
        print(report(resource, step, args.dry_run))
    return 0
