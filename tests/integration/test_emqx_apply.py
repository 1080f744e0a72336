"""`adapter emqx apply` against a recording fake of EMQX 5's REST API (`/api/v5/connectors`, `/actions`,
`/rules`, `/authentication`, `/authorization/sources`) on loopback. The fake checks every request against the
documented fields (an unknown or mistyped field is a 400, as EMQX's schema check gives), masks secrets on GET
as EMQX does, keeps the authentication chain and the authorization sources in order (a new entry goes to
the end), and records every call, so the tests can say exactly what a run wrote: everything once, then
nothing, and nothing of the cluster's own authenticators and sources."""

from __future__ import annotations

import base64
import copy
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from adapter.broker import emqx_apply, emqx_config
from adapter.settings import Settings
from tests.support.servers import free_port, serve

pytestmark = pytest.mark.layout_free  # EMQX's REST API: run once, on one Redis

KEY, SECRET, TOKEN = "apply-key", "apply-secret-1", "ingest-token-1"
BASIC = "Basic " + base64.b64encode(f"{KEY}:{SECRET}".encode()).decode()
RULES = Path(__file__).resolve().parents[2] / "rules"
RULE_COUNT = len(list(RULES.glob("*.sql")))
ADAPTER_URL = "http://adapter.internal:8000"
CA_FILE = "/etc/emqx/certs/adapter-ca.pem"

DURATION = {"type": "string", "pattern": r"^\d+(ms|s|m|h)$"}
BYTESIZE = {"type": "string", "pattern": r"^\d+(KB|MB|GB)$"}
HEADERS = {"type": "object", "additionalProperties": {"type": "string"}}
COUNT = {"type": "integer", "minimum": 1}


def _closed(properties: dict[str, Any], required: tuple[str, ...] = ()) -> dict[str, Any]:
    return {"type": "object", "properties": properties, "required": list(required),
            "additionalProperties": False}


# emqx_schema: client_ssl_opts_schema (a subset: what the adapter may send)
SSL = _closed({"enable": {"type": "boolean"}, "verify": {"enum": ["verify_peer", "verify_none"]},
               "cacertfile": {"type": "string", "minLength": 1}, "server_name_indication": {"type": "string"}},
              ("enable",))
# emqx_bridge_http_schema: fields("config_connector"), fields("http_action"), fields(action_resource_opts)
CONNECTOR = {
    "enable": {"type": "boolean"}, "description": {"type": "string"}, "tags": {"type": "array"},
    "url": {"type": "string", "pattern": r"^https?://[^\s/]+"}, "headers": HEADERS,
    "connect_timeout": DURATION, "pool_type": {"enum": ["random", "hash"]}, "pool_size": COUNT,
    "enable_pipelining": COUNT, "ssl": SSL,
    "resource_opts": _closed({"health_check_interval": DURATION, "start_timeout": DURATION,
                              "start_after_created": {"type": "boolean"}}),
}
ACTION = {
    "enable": {"type": "boolean"}, "description": {"type": "string"}, "tags": {"type": "array"},
    "connector": {"type": "string", "minLength": 1},
    "parameters": _closed({"method": {"enum": ["post", "put", "get", "delete"]}, "path": {"type": "string"},
                           "headers": HEADERS, "body": {"type": "string"},
                           "max_retries": {"type": "integer", "minimum": 0}}),
    "resource_opts": _closed({"query_mode": {"enum": ["async", "sync"]}, "worker_pool_size": COUNT,
                              "inflight_window": COUNT, "request_ttl": DURATION, "max_buffer_bytes": BYTESIZE,
                              "health_check_interval": DURATION, "start_timeout": DURATION}),
}
# emqx_rule_engine_schema: fields("rules"); POST also takes "id" (emqx_rule_engine_api '/rules'(post, ...))
RULE = {"name": {"type": "string"}, "sql": {"type": "string", "pattern": r"^\s*(SELECT|FOREACH)\s"},
        "actions": {"type": "array", "items": {"type": "string", "pattern": r"^http:[A-Za-z0-9_.-]+$"}},
        "enable": {"type": "boolean"}, "description": {"type": "string"}, "metadata": {"type": "object"}}
TYPED = {"type": {"const": "http"}, "name": {"type": "string", "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"}}
# emqx_authn_http_schema fields(http_post) / emqx_authz_http_schema fields(http_post): the common HTTP client
# fields (emqx_bridge_http_connector:fields(config) less pool_type) and a body map of templates
HTTP_CLIENT = {"enable": {"type": "boolean"}, "method": {"const": "post"},
               "url": {"type": "string", "pattern": r"^https?://[^\s/]+/"}, "headers": HEADERS,
               "body": HEADERS, "request_timeout": DURATION, "connect_timeout": DURATION, "pool_size": COUNT,
               "enable_pipelining": COUNT, "ssl": SSL}
AUTHN = _closed({"mechanism": {"const": "password_based"}, "backend": {"const": "http"}, **HTTP_CLIENT},
                ("mechanism", "backend", "method", "url"))
AUTHZ = _closed({"type": {"const": "http"}, **HTTP_CLIENT}, ("type", "method", "url"))
SCHEMAS = {
    ("POST", "connectors"): _closed({**TYPED, **CONNECTOR}, ("type", "name", "url")),
    ("PUT", "connectors"): _closed(CONNECTOR, ("url",)),
    ("POST", "actions"): _closed({**TYPED, **ACTION}, ("type", "name", "connector", "parameters")),
    ("PUT", "actions"): _closed(ACTION, ("connector", "parameters")),
    ("POST", "rules"): _closed({"id": {"type": "string", "minLength": 1}, **RULE}, ("sql",)),
    ("PUT", "rules"): _closed(RULE, ("sql",)),
    ("POST", "authentication"): AUTHN, ("PUT", "authentication"): AUTHN,
    ("POST", "authorization/sources"): AUTHZ, ("PUT", "authorization/sources"): AUTHZ,
}
CHAINS = ("authentication", "authorization/sources")
MASKED_KEYS = {"authorization", "password", "secret", "token"}
# the cluster's own entries: another authenticator and another source
BUILT_IN_AUTHN = {"mechanism": "password_based", "backend": "built_in_database", "enable": True,
                  "user_id_type": "username", "password_hash_algorithm": {"name": "sha256", "salt_position": "suffix"}}
FILE_AUTHZ = {"type": "file", "enable": True, "path": "${EMQX_ETC_DIR}/acl.conf"}


def _masked(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: "******" if k.lower() in MASKED_KEYS else _masked(v) for k, v in value.items()}
    return value


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status)


def _ident(kind: str, body: dict[str, Any]) -> str:
    if kind == "rules":
        return str(body["id"])
    if kind == "authentication":
        return f"{body['mechanism']}:{body['backend']}"
    if kind == "authorization/sources":
        return str(body["type"])
    return f"{body['type']}:{body['name']}"


@dataclass
class FakeEmqx:
    store: dict[str, dict[str, dict[str, Any]]] = field(
        default_factory=lambda: {"connectors": {}, "actions": {}, "rules": {}, "authentication": {},
                                 "authorization/sources": {}})
    calls: list[tuple[str, str]] = field(default_factory=list)
    bodies: list[dict[str, Any]] = field(default_factory=list)
    refuse_sql: str | None = None

    def app(self) -> Starlette:
        routes = []
        for kind in self.store:
            routes.append(Route(f"/api/v5/{kind}", self._handler(kind, None), methods=["POST", "GET"]))
            routes.append(Route(f"/api/v5/{kind}/{{id}}", self._handler(kind, "id"), methods=["GET", "PUT"]))
        routes.append(Route("/api/v5/authentication/{id}/position/{position}", self._move("authentication"),
                            methods=["PUT"]))
        routes.append(Route("/api/v5/authorization/sources/{id}/move", self._move("authorization/sources"),
                            methods=["POST"]))  # emqx_authz_api_sources.erl (v5.8.9)
        return Starlette(routes=routes)

    def writes(self) -> list[tuple[str, str]]:
        return [c for c in self.calls if c[0] != "GET"]

    def order(self, kind: str) -> list[str]:
        return list(self.store[kind])

    def _handler(self, kind: str, key: str | None) -> Any:
        async def run(request: Request) -> Response:
            ident = request.path_params.get(key) if key else None
            self.calls.append((request.method, f"/{kind}" + (f"/{ident}" if ident else "")))
            if request.headers.get("authorization") != BASIC:
                return _error(401, "BAD_API_KEY_OR_SECRET", "Check api_key/api_secret")
            if request.method == "GET":
                return self._get(kind, str(ident)) if ident else self._list(kind)
            body = await request.json()
            self.bodies.append(body)
            validator = Draft202012Validator(SCHEMAS[request.method, kind])
            errors = sorted(e.message for e in validator.iter_errors(body))
            if errors:
                return _error(400, "BAD_REQUEST", "; ".join(errors))
            if self.refuse_sql and self.refuse_sql in str(body.get("sql", "")):
                return _error(400, "BAD_REQUEST", "parse_error")
            return self._write(kind, str(ident) if ident else None, body)
        return run

    def _move(self, kind: str) -> Any:
        async def run(request: Request) -> Response:
            ident = request.path_params["id"]
            self.calls.append((request.method, request.url.path.removeprefix("/api/v5")))
            position = request.path_params.get("position") or (await request.json()).get("position")
            if ident not in self.store[kind]:
                return _error(404, "NOT_FOUND", f"{ident} not found")
            if position != "front":
                return _error(400, "BAD_REQUEST", f"position {position}")
            entries = self.store[kind]
            self.store[kind] = {ident: entries[ident], **{k: v for k, v in entries.items() if k != ident}}
            return Response(status_code=204)
        return run

    def _list(self, kind: str) -> Response:
        if kind == "authentication":
            return JSONResponse([{"id": k, **_masked(v)} for k, v in self.store[kind].items()])
        if kind == "authorization/sources":
            return JSONResponse({"sources": [_masked(v) for v in self.store[kind].values()]})
        return _error(405, "METHOD_NOT_ALLOWED", "not in the fake")

    def _get(self, kind: str, ident: str) -> Response:
        stored = self.store[kind].get(ident)
        if stored is None:
            return _error(404, "NOT_FOUND", f"{kind} {ident} not found")
        extra: dict[str, Any] = {"from": ["t/#"], "created_at": "2024-01-01T00:00:00Z"}
        if kind in CHAINS:
            extra = {"id": ident} if kind == "authentication" else {}
        elif kind != "rules":
            extra = {"status": "connected", "description": "",
                     "node_status": [{"node": "emqx@10.0.0.1", "status": "connected"}]}
        return JSONResponse({**extra, **_masked(stored)})

    def _write(self, kind: str, ident: str | None, body: dict[str, Any]) -> Response:
        if ident is None:
            ident = _ident(kind, body)
            if ident in self.store[kind]:
                return _error(400, "ALREADY_EXISTS", f"{ident} already exists")
            status = 201
        elif ident not in self.store[kind]:
            return _error(404, "NOT_FOUND", f"{ident} not found")
        else:
            status = 200
        if kind == "actions" and f"http:{body['connector']}" not in self.store["connectors"]:
            return _error(400, "BAD_REQUEST", "connector_not_found")
        self.store[kind][ident] = self._merged(self.store[kind].get(ident, {}), body)
        return JSONResponse(self.store[kind][ident], status_code=status)

    @staticmethod
    def _merged(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
        """A masked value sent back keeps the stored one, as EMQX does."""
        out = copy.deepcopy(new)
        for section in ("headers",):
            for k, v in (out.get(section) or {}).items():
                if v == "******":
                    out[section][k] = old[section][k]
        return out


@pytest.fixture
def fake() -> Iterator[tuple[FakeEmqx, Settings]]:
    emqx = FakeEmqx()
    with serve(emqx.app()) as url:
        yield emqx, settings_for(url)


def settings_for(url: str, **changes: str) -> Settings:
    env = {"ADAPTER_EMQX_API_URL": f"{url}/api/v5", "ADAPTER_EMQX_API_KEY": KEY,
           "ADAPTER_EMQX_API_SECRET": SECRET, "ADAPTER_INGEST_TOKEN": TOKEN, **changes}
    return Settings.from_env(env, dotenv=None)


def run(settings: Settings, *extra: str) -> int:
    return emqx_apply.main(["--adapter-url", ADAPTER_URL, "--rules", str(RULES), *extra], settings=settings)


def test_the_first_run_creates_everything_in_order(fake: tuple[FakeEmqx, Settings],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    emqx, settings = fake
    assert run(settings) == 0, capsys.readouterr().err
    rules = [("POST", "/rules")] * RULE_COUNT
    assert emqx.writes() == [("POST", "/connectors"), ("POST", "/actions"), *rules]
    connector = emqx.store["connectors"]["http:adapter"]
    assert connector["url"] == ADAPTER_URL
    assert connector["headers"]["authorization"] == f"Bearer {TOKEN}"
    action = emqx.store["actions"]["http:adapter_events"]
    assert (action["connector"], action["parameters"]["body"]) == ("adapter", "${.}")
    assert set(emqx.store["rules"]) == {r.id for r in emqx_config.load_rules(RULES)}
    assert all(r["actions"] == ["http:adapter_events"] for r in emqx.store["rules"].values())
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 2 + RULE_COUNT and all(line.startswith("created") for line in out)


def test_a_second_run_changes_nothing(fake: tuple[FakeEmqx, Settings],
                                      capsys: pytest.CaptureFixture[str]) -> None:
    emqx, settings = fake
    assert run(settings) == 0
    emqx.calls.clear()
    assert run(settings) == 0
    assert emqx.writes() == []
    assert len(emqx.calls) == 2 + RULE_COUNT
    assert capsys.readouterr().out.count("unchanged") == 2 + RULE_COUNT


def test_only_what_drifted_is_replaced(fake: tuple[FakeEmqx, Settings]) -> None:
    emqx, settings = fake
    assert run(settings) == 0
    emqx.store["rules"]["adapter_presence"]["sql"] = "SELECT clientid FROM \"$events/client_connected\""
    emqx.store["connectors"]["http:adapter"]["pool_size"] = 1
    emqx.calls.clear()
    assert run(settings) == 0
    assert emqx.writes() == [("PUT", "/connectors/http:adapter"), ("PUT", "/rules/adapter_presence")]
    assert emqx.store["connectors"]["http:adapter"]["pool_size"] == 8
    assert emqx.store["connectors"]["http:adapter"]["headers"]["authorization"] == f"Bearer {TOKEN}"


def test_force_replaces_everything_and_carries_a_new_token(fake: tuple[FakeEmqx, Settings]) -> None:
    emqx, settings = fake
    assert run(settings) == 0
    emqx.calls.clear()
    rotated = settings.with_overrides(ingest_token="rotated-token")
    assert run(rotated) == 0
    assert emqx.writes() == [], "the token is masked on GET, so a plain run cannot see it changed"
    assert run(rotated, "--force") == 0
    assert len(emqx.writes()) == 2 + RULE_COUNT
    assert all(method == "PUT" for method, _ in emqx.writes())
    assert emqx.store["connectors"]["http:adapter"]["headers"]["authorization"] == "Bearer rotated-token"


def test_dry_run_only_reads(fake: tuple[FakeEmqx, Settings], capsys: pytest.CaptureFixture[str]) -> None:
    emqx, settings = fake
    assert run(settings, "--dry-run") == 0
    assert emqx.writes() == []
    assert capsys.readouterr().out.count("would be created") == 2 + RULE_COUNT


def test_a_refused_api_key_is_one_line_and_writes_nothing(fake: tuple[FakeEmqx, Settings],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    emqx, settings = fake
    assert run(settings.with_overrides(emqx_api_secret="wrong")) == 1
    err = capsys.readouterr().err
    assert "401" in err and "ADAPTER_EMQX_API_KEY" in err and err.count("\n") == 1
    assert emqx.writes() == []


def test_a_request_emqx_refuses_stops_the_run_with_its_message(fake: tuple[FakeEmqx, Settings],
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    emqx, settings = fake
    emqx.refuse_sql = "message_acked"
    assert run(settings) == 1
    assert "POST /rules: EMQX answered 400 BAD_REQUEST: parse_error" in capsys.readouterr().err


def test_emqx_not_answering(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(settings_for(f"http://127.0.0.1:{free_port()}")) == 1
    assert "does not answer" in capsys.readouterr().err


@pytest.mark.parametrize(("changes", "argv", "message"), [
    ({"ADAPTER_INGEST_TOKEN": ""}, (), "ADAPTER_INGEST_TOKEN is required"),
    ({"ADAPTER_EMQX_API_KEY": ""}, (), "ADAPTER_EMQX_API_KEY is required"),
    ({}, ("--rules", "/nonexistent"), "no rules"),
])
def test_configuration_errors_exit_2(changes: dict[str, str], argv: tuple[str, ...], message: str,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    settings = settings_for(f"http://127.0.0.1:{free_port()}", **changes)
    assert run(settings, *argv) == 2
    assert message in capsys.readouterr().err


def test_the_fake_refuses_what_emqx_refuses(fake: tuple[FakeEmqx, Settings]) -> None:
    """The schema check is real: a batching option or a stray field is a 400."""
    emqx, settings = fake
    admin = emqx_apply.EmqxAdmin(settings.emqx_api_url, KEY, SECRET)
    body = {"type": "http", "name": "x", "connector": "adapter", "parameters": {},
            "resource_opts": {"batch_size": 10}}
    try:
        bad = emqx_apply.Resource("actions", "http:x", body, {})
        with pytest.raises(emqx_apply.ApplyError, match="400"):
            admin.write("create", bad)
    finally:
        admin.close()
    assert emqx.calls == [("POST", "/actions")]


# --- what the bodies say (issue 25) ------------------------------------------------------------------


def posted(emqx: FakeEmqx, key: str, value: str) -> dict[str, Any]:
    found = [b for b in emqx.bodies if b.get(key) == value]
    assert len(found) == 1, (key, value, found)
    return found[0]


def test_the_action_times_out_and_buffers_within_the_adapters_deadlines(fake: tuple[FakeEmqx, Settings]) -> None:
    """request_ttl is also each HTTP request's timeout in 5.8.9: 30 s, not 120; 16 MB of buffer per worker."""
    emqx, settings = fake
    assert run(settings) == 0
    opts = posted(emqx, "name", emqx_config.ACTION)["resource_opts"]
    assert (opts["request_ttl"], opts["max_buffer_bytes"], opts["worker_pool_size"]) == ("30s", "16MB", 16)


def test_the_ack_rule_sent_keeps_only_the_adapters_own_deliveries(fake: tuple[FakeEmqx, Settings]) -> None:
    emqx, settings = fake
    assert run(settings) == 0
    where = posted(emqx, "id", "adapter_command_acks")["sql"].partition(" WHERE ")[2]
    assert "from_clientid = 'http_api'" in where and " clientid !=" not in f" {where}"


def ssl_sent(emqx: FakeEmqx) -> list[dict[str, Any]]:
    return [b["ssl"] for b in emqx.bodies if "ssl" in b]


def test_an_https_adapter_is_verified_against_the_ca_file(fake: tuple[FakeEmqx, Settings]) -> None:
    emqx, settings = fake
    assert run(settings, "--adapter-url", "https://adapter.internal:8443", "--ca-file", CA_FILE, "--auth") == 0
    want = {"enable": True, "verify": "verify_peer", "cacertfile": CA_FILE}
    assert ssl_sent(emqx) == [want] * 3, "connector, authenticator and authorization source"
    assert emqx.store["connectors"]["http:adapter"]["url"] == "https://adapter.internal:8443"


def test_an_https_adapter_without_verification_only_when_asked(fake: tuple[FakeEmqx, Settings]) -> None:
    emqx, settings = fake
    assert run(settings, "--adapter-url", "https://adapter.internal:8443", "--no-tls-verify") == 0
    assert ssl_sent(emqx) == [{"enable": True, "verify": "verify_none"}]


def test_an_http_adapter_has_no_tls(fake: tuple[FakeEmqx, Settings]) -> None:
    emqx, settings = fake
    assert run(settings, "--auth") == 0
    assert ssl_sent(emqx) == [{"enable": False}] * 3


@pytest.mark.parametrize(("argv", "message"), [
    (("--adapter-url", "https://adapter.internal:8443"), "the adapter URL is https: give --ca-file"),
    (("--ca-file", CA_FILE), "--ca-file and --no-tls-verify are for an https --adapter-url"),
    (("--adapter-url", "https://a:1", "--ca-file", CA_FILE, "--no-tls-verify"), "not both"),
])
def test_tls_that_cannot_be_done_as_asked_exits_2_before_any_request(fake: tuple[FakeEmqx, Settings],
                                                                     argv: tuple[str, ...], message: str,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    emqx, settings = fake
    assert run(settings, *argv) == 2
    assert message in capsys.readouterr().err
    assert emqx.calls == []


# --- authentication and authorization through the API (--auth) --------------------------------------------


def with_cluster_entries(emqx: FakeEmqx) -> None:
    emqx.store["authentication"]["password_based:built_in_database"] = copy.deepcopy(BUILT_IN_AUTHN)
    emqx.store["authorization/sources"]["file"] = copy.deepcopy(FILE_AUTHZ)


def test_auth_puts_the_adapter_first_and_keeps_the_clusters_entries(fake: tuple[FakeEmqx, Settings],
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    emqx, settings = fake
    with_cluster_entries(emqx)
    assert run(settings, "--auth") == 0, capsys.readouterr().err
    assert emqx.order("authentication") == ["password_based:http", "password_based:built_in_database"]
    assert emqx.order("authorization/sources") == ["http", "file"]
    assert emqx.store["authentication"]["password_based:built_in_database"] == BUILT_IN_AUTHN
    assert emqx.store["authorization/sources"]["file"] == FILE_AUTHZ
    assert [w for w in emqx.writes() if "built_in_database" in w[1] or w[1].endswith("/file")] == []
    authn = emqx.store["authentication"]["password_based:http"]
    assert authn["url"] == f"{ADAPTER_URL}/emqx/authn"
    assert authn["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert authn["body"]["password"] == "${password}"
    assert emqx.store["authorization/sources"]["http"]["url"] == f"{ADAPTER_URL}/emqx/authz"
    out = capsys.readouterr().out
    assert "moved     authentication/password_based:http to the front" in out
    assert "moved     authorization/sources/http to the front" in out


def test_auth_a_second_run_changes_nothing_though_secrets_are_masked(fake: tuple[FakeEmqx, Settings],
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    emqx, settings = fake
    with_cluster_entries(emqx)
    assert run(settings, "--auth") == 0
    emqx.calls.clear()
    capsys.readouterr()
    assert run(settings, "--auth") == 0
    assert emqx.writes() == []
    assert capsys.readouterr().out.count("unchanged") == 4 + RULE_COUNT


def test_auth_moves_the_adapter_back_to_the_front(fake: tuple[FakeEmqx, Settings]) -> None:
    emqx, settings = fake
    assert run(settings, "--auth") == 0
    with_cluster_entries(emqx)
    emqx.store["authentication"] = {k: emqx.store["authentication"][k]
                                    for k in ("password_based:built_in_database", "password_based:http")}
    emqx.calls.clear()
    assert run(settings, "--auth") == 0
    assert emqx.writes() == [("PUT", "/authentication/password_based:http/position/front")]
    assert emqx.order("authentication")[0] == "password_based:http"


def test_auth_leaves_another_services_http_authenticator_alone(fake: tuple[FakeEmqx, Settings],
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    emqx, settings = fake
    theirs = {**emqx_config.authn_config("http://sso.internal", "x", {"enable": False}),
              "url": "http://sso.internal/mqtt/auth"}
    emqx.store["authentication"]["password_based:http"] = copy.deepcopy(theirs)
    assert run(settings, "--auth") == 1
    err = capsys.readouterr().err
    assert "/authentication/password_based:http" in err and "http://sso.internal/mqtt/auth" in err
    assert emqx.store["authentication"]["password_based:http"] == theirs
    assert not [w for w in emqx.writes() if w[1].startswith("/authentication")]


def test_auth_dry_run_says_what_it_would_move_and_writes_nothing(fake: tuple[FakeEmqx, Settings],
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    emqx, settings = fake
    with_cluster_entries(emqx)
    assert run(settings, "--auth", "--dry-run") == 0
    assert emqx.writes() == []
    out = capsys.readouterr().out
    assert "would be created   authentication/password_based:http" in out
    assert "would be moved     authentication/password_based:http to the front" in out


def test_without_auth_the_chains_are_not_touched(fake: tuple[FakeEmqx, Settings]) -> None:
    emqx, settings = fake
    assert run(settings) == 0
    assert not [c for c in emqx.calls if c[1].startswith(("/authentication", "/authorization"))]
