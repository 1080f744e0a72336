"""emqx-config/ and rules/ against what the adapter expects (issue 8, item 2; issue 25): every HOCON file
parses, the rules reach an existing action and connector, the events they send are exactly those the ingest
handles, the message rules leave out the REST API's own publishes and the ack rule keeps only the adapter's
own deliveries, the action's timeout and buffer fit the adapter's deadlines, the generated files are current,
render.sh fills in every placeholder (EMQX's HOCON reads no environment variables) and renders the TLS that
`adapter emqx apply` installs, and docs/emqx.md's production table and device examples say the same."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pyhocon import ConfigFactory, ConfigTree

from adapter.broker import emqx_config
from adapter.protocol import topics
from adapter.protocol.events import V5_PARSERS
from adapter.settings import Settings
from adapter.store.batcher import READ_TIMEOUT
from scripts import gen_emqx_config

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "emqx-config"
HOCON_FILES = ("node.hocon", "bridge.hocon", "rules.hocon", "auth.hocon")
RENDERED = {"ADAPTER_BASE_URL", "ADAPTER_INGEST_TOKEN", "ADAPTER_EMQX_API_KEY", "ADAPTER_EMQX_API_SECRET",
            "ADAPTER_SSL"}
DOCS = ROOT / "docs" / "emqx.md"
EMQX_EVENTS = ROOT.parent / "shared" / "emqx" / "events"
ENV = {"ADAPTER_BASE_URL": "http://adapter.internal:8000", "ADAPTER_INGEST_TOKEN": "tok-123_ABC.~+/=",
       "ADAPTER_EMQX_API_KEY": "adapter-key", "ADAPTER_EMQX_API_SECRET": "s3cret-VALUE"}


def parse(name: str) -> ConfigTree:
    return ConfigFactory.parse_file(str(CONFIG / name))


def rules() -> dict[str, Any]:
    tree: dict[str, Any] = parse("rules.hocon")["rule_engine"]["rules"]
    return tree


def from_topics(sql: str) -> list[str]:
    m = re.search(r"\bFROM\s+((?:\"[^\"]+\"\s*,?\s*)+)", sql)
    assert m, sql
    return re.findall(r"\"([^\"]+)\"", m.group(1))


def events_of(sql: str) -> set[str]:
    """The `event` values a rule sends: `$events/x_y` -> `x.y`; a topic filter -> message.publish."""
    out = set()
    for topic in from_topics(sql):
        if topic.startswith("$events/"):
            out.add(topic.removeprefix("$events/").replace("_", ".", 1))
        else:
            out.add("message.publish")
    return out


@pytest.mark.parametrize("name", HOCON_FILES)
def test_every_hocon_file_parses(name: str) -> None:
    tree = parse(name)
    assert tree, name


@pytest.mark.parametrize("name", [*HOCON_FILES, "api_key.conf", "render.sh"])
def test_config_files_are_ascii(name: str) -> None:
    """EMQX's HOCON parser does not promise Unicode support (emqx/hocon README)."""
    (CONFIG / name).read_text(encoding="ascii")


def test_the_generated_files_are_the_committed_ones() -> None:
    for path, text in gen_emqx_config.generated().items():
        assert path.read_text(encoding="utf-8") == text, f"{path.name} is stale: run gen_emqx_config.py"


def test_every_rule_file_is_a_rule_in_the_config() -> None:
    from_files = {r.id: r for r in emqx_config.load_rules(ROOT / "rules")}
    assert set(rules()) == set(from_files)
    for rule_id, rule in rules().items():
        assert rule["sql"] == from_files[rule_id].sql
        assert rule["enable"] is True


def test_every_rule_names_an_existing_action_on_an_existing_connector() -> None:
    bridge = parse("bridge.hocon")
    for rule_id, rule in rules().items():
        assert rule["actions"], rule_id
        for ref in rule["actions"]:
            kind, _, name = ref.partition(":")
            assert kind == "http" and name in bridge["actions"]["http"], (rule_id, ref)
            assert bridge["actions"]["http"][name]["connector"] in bridge["connectors"]["http"]


def test_the_events_the_rules_send_are_the_events_the_ingest_handles() -> None:
    sent = set().union(*(events_of(r["sql"]) for r in rules().values()))
    assert sent == set(V5_PARSERS)


_TERM = re.compile(r"^(NOT )?(\w+) (=~|!=|=) '([^']*)'$")


def where_holds(sql: str, event: dict[str, Any]) -> bool:
    """Whether a rule's WHERE (a conjunction of `[NOT] field =|!=|=~ 'literal'`, as every rule here is) holds
    for `event`, with `=~` as EMQX's topic match."""
    where = sql.partition(" WHERE ")[2]
    if not where:
        return True
    for term in where.split(" AND "):
        m = _TERM.match(term.strip())
        assert m, f"a term this test cannot read: {term!r}"
        negate, name, op, literal = m.groups()
        value = str(event.get(name, "undefined"))
        held = {"=": value == literal, "!=": value != literal, "=~": topics.matches(literal, value)}[op]
        if held == bool(negate):
            return False
    return True


def publish(clientid: str, topic: str) -> dict[str, Any]:
    return {"event": "message.publish", "clientid": clientid, "topic": topic}


def acked(acker: str, publisher: str, topic: str) -> dict[str, Any]:
    """message.acked: `clientid` is the client that acknowledged, `from_clientid` the one that published."""
    return {"event": "message.acked", "clientid": acker, "from_clientid": publisher, "topic": topic}


def sends(event: dict[str, Any]) -> list[str]:
    """The rules that send `event` to the adapter."""
    return [rid for rid, r in rules().items() if event["event"] in events_of(r["sql"])
            and (event["event"] != "message.publish" or any(topics.matches(t, event["topic"])
                                                           for t in from_topics(r["sql"])))
            and where_holds(r["sql"], event)]


def test_message_rules_leave_out_the_rest_apis_own_publishes() -> None:
    """EMQX runs rules on messages published through its REST API too (clientid "http_api"): the adapter's
    commands must not come back as uplink."""
    assert sends(publish("http_api", "dma/cmd/GW0001")) == []
    assert sends(publish("http_api", "dma/report/GW0001/heartbeat")) == []
    assert sends(publish("GW0001", "dma/report/GW0001/heartbeat")) == ["adapter_device_messages"]
    assert sends(publish("GW0001", "dma/resp/cmd")) == ["adapter_device_messages"]
    assert sends(publish("console", "plant/7/temp")) == ["adapter_other_messages"]


def test_the_ack_rule_sends_acks_of_the_adapters_own_commands_only() -> None:
    """In message.acked the device that acknowledged is `clientid`; the publisher is `from_clientid`."""
    assert sends(acked("GW0001", "http_api", "dma/cmd/GW0001")) == ["adapter_command_acks"]
    assert sends(acked("GW0001", "console", "dma/cmd/GW0001")) == [], "a command the adapter did not send"
    assert sends(acked("watcher", "http_api", "plant/7/temp")) == [], "not a command topic"


def test_the_shared_ack_sample_is_read_the_same_way() -> None:
    sample = EMQX_EVENTS / "message_acked.json"
    if not sample.exists():
        pytest.skip(f"no {sample}")
    body = json.loads(sample.read_text())
    assert (body["from_clientid"], body["clientid"]) == ("http_api", body["username"]), "publisher vs acker"
    assert sends({**body, "topic": f"dma/cmd/{body['clientid']}"}) == ["adapter_command_acks"]


def test_message_rules_cover_every_topic_once() -> None:
    """The catch-all rule base64-encodes and excludes exactly the DMA topics the plain rule sends."""
    publish = {rid: r["sql"] for rid, r in rules().items() if events_of(r["sql"]) == {"message.publish"}}
    catch_all = [rid for rid, sql in publish.items() if from_topics(sql) == ["#"]]
    assert len(catch_all) == 1
    sql = publish.pop(catch_all[0])
    assert "base64_encode(payload) AS payload" in sql and "'base64' AS payload_encoding" in sql
    where = sql.partition(" WHERE ")[2]
    excluded = set(re.findall(r"NOT topic =~ '([^']+)'|topic != '([^']+)'", where))
    excluded = {a or b for a, b in excluded}
    plain = {t for other in publish.values() for t in from_topics(other)}
    assert excluded == plain == {"dma/report/#", "dma/resp/cmd"}


def test_the_action_posts_the_whole_event_to_the_ingest_at_least_once() -> None:
    action = parse("bridge.hocon")["actions"]["http"][emqx_config.ACTION]
    params, opts = action["parameters"], action["resource_opts"]
    assert (params["method"], params["path"], params["body"]) == ("post", "/emqx/events", "${.}")
    assert "max_retries" not in params, "EMQX 5.8 accepts parameters.max_retries and ignores it"
    assert {"request_ttl", "max_buffer_bytes"} <= set(opts)
    assert not {"batch_size", "batch_time"} & set(opts), "the HTTP action rejects batching"


def seconds(duration: str) -> float:
    m = re.fullmatch(r"(\d+)(ms|s|m|h)", duration)
    assert m, duration
    return int(m.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m.group(2)]


def mib(size: str) -> float:
    m = re.fullmatch(r"(\d+)(KB|MB|GB)", size)
    assert m, size
    return int(m.group(1)) * {"KB": 1 / 1024, "MB": 1, "GB": 1024}[m.group(2)]


def test_the_action_waits_within_the_adapters_deadlines() -> None:
    """In EMQX 5.8.9 `request_ttl` is also each HTTP request's timeout (emqx/emqx#15911): longer than the
    adapter needs to answer or say 503 (its Redis deadline), no longer than the adapter waits for a command's
    answer, so a hung adapter does not hold EMQX's in-flight slots for minutes."""
    opts = parse("bridge.hocon")["actions"]["http"][emqx_config.ACTION]["resource_opts"]
    assert READ_TIMEOUT < seconds(opts["request_ttl"]) <= Settings().command_ack_timeout
    assert "also the timeout of each HTTP request" in (CONFIG / "bridge.hocon").read_text()


def test_the_action_buffer_is_bounded_per_node() -> None:
    """`max_buffer_bytes` is per buffer worker: the node's worst case is workers x bytes, held to 256 MB."""
    opts = parse("bridge.hocon")["actions"]["http"][emqx_config.ACTION]["resource_opts"]
    assert opts["worker_pool_size"] * mib(opts["max_buffer_bytes"]) <= 256


def test_no_rule_puts_not_over_a_parenthesised_and_or() -> None:
    """EMQX 5.8's rule runtime cannot evaluate `NOT (a OR b)` (function_clause on every message)."""
    for rule_id, rule in rules().items():
        assert not emqx_config.negated_groups(rule["sql"]), rule_id
        assert not re.search(r"\bNOT\s*\(", rule["sql"], re.IGNORECASE), rule_id


@pytest.mark.parametrize(("sql", "found"), [
    ("SELECT * FROM \"#\" WHERE NOT (topic =~ 'a/#' OR topic = 'b')", ["NOT (topic =~ 'a/#' OR topic = 'b')"]),
    ("SELECT * FROM \"#\" WHERE x = 1 AND not(a = 1 and (b = 2))", ["not(a = 1 and (b = 2))"]),
    ("SELECT * FROM \"#\" WHERE NOT topic =~ 'a/#' AND topic != 'b'", []),
    ("SELECT * FROM \"#\" WHERE NOT (topic = 'x OR y')", []),
    ("SELECT 'NOT (a OR b)' AS s FROM \"#\"", []),
])
def test_negated_groups_finds_not_over_and_or_only(sql: str, found: list[str]) -> None:
    assert emqx_config.negated_groups(sql) == found


def test_loading_and_generating_refuse_a_rule_with_not_over_or(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.sql").write_text("-- x\nSELECT * FROM \"#\" WHERE NOT (topic = 'a' OR topic = 'b')\n")
    with pytest.raises(ValueError, match="rule bad: NOT over a parenthesised AND/OR"):
        emqx_config.load_rules(tmp_path)
    monkeypatch.setattr(gen_emqx_config, "RULES_DIR", tmp_path)
    assert gen_emqx_config.main(["--check"]) == 2
    assert "rule bad: NOT over" in capsys.readouterr().err


def test_the_token_is_sent_as_a_bearer_header_everywhere() -> None:
    bearer = "Bearer ${ADAPTER_INGEST_TOKEN}"
    auth = parse("auth.hocon")
    assert parse("bridge.hocon")["connectors"]["http"]["adapter"]["headers"]["authorization"] == bearer
    assert auth["authentication"][0]["headers"]["authorization"] == bearer
    assert auth["authorization"]["sources"][0]["headers"]["authorization"] == bearer


def test_authn_and_authz_point_at_the_hooks_with_the_fields_they_read() -> None:
    auth = parse("auth.hocon")
    authn, = auth["authentication"]
    source, = auth["authorization"]["sources"]
    assert (authn["backend"], authn["method"]) == ("http", "post")
    assert authn["url"] == "${ADAPTER_BASE_URL}/emqx/authn"
    assert {"clientid", "username", "password"} <= set(authn["body"])
    assert (source["type"], source["url"]) == ("http", "${ADAPTER_BASE_URL}/emqx/authz")
    assert dict(source["body"]).items() >= {"clientid": "${clientid}", "username": "${username}",
                                            "topic": "${topic}", "action": "${action}"}.items()
    assert auth["authorization"]["no_match"] == "deny"


def test_the_api_key_bootstrap_file_has_one_key_line() -> None:
    lines = [line for line in (CONFIG / "api_key.conf").read_text().splitlines() if line.strip()]
    assert lines == ["${ADAPTER_EMQX_API_KEY}:${ADAPTER_EMQX_API_SECRET}"]
    assert parse("node.hocon")["api_key"]["bootstrap_file"] == "/opt/emqx/etc/adapter_api_key.conf"


def test_render_substitutes_exactly_the_placeholders_in_the_files() -> None:
    used = set()
    for name in (*HOCON_FILES, "api_key.conf"):
        used |= set(re.findall(r"\$\{(ADAPTER_[A-Z_]+)\}", (CONFIG / name).read_text()))
    assert used == RENDERED
    script = (CONFIG / "render.sh").read_text()
    for name in RENDERED - {"ADAPTER_SSL"}:
        assert f"s|\\${{{name}}}|" in script
    assert 's|\\"\\${ADAPTER_SSL}\\"|' in script, "the ssl placeholder is a quoted string, replaced whole"


def _render(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "ADAPTER_EMQX_CONFIG_DEST": str(tmp_path), **env}
    return subprocess.run(["sh", str(CONFIG / "render.sh")], env=full, capture_output=True, text=True,
                          timeout=10, check=False)


@pytest.mark.skipif(shutil.which("sed") is None, reason="needs sed")
def test_render_writes_one_emqx_conf_with_the_values(tmp_path: Path) -> None:
    done = _render(tmp_path, **ENV)
    assert done.returncode == 0, done.stderr
    text = (tmp_path / "emqx.conf").read_text()
    assert "${ADAPTER_" not in text
    conf = ConfigFactory.parse_string(text)
    bearer = f"Bearer {ENV['ADAPTER_INGEST_TOKEN']}"
    assert conf["connectors"]["http"]["adapter"]["url"] == ENV["ADAPTER_BASE_URL"]
    assert conf["connectors"]["http"]["adapter"]["headers"]["authorization"] == bearer
    assert conf["authentication"][0]["url"] == "http://adapter.internal:8000/emqx/authn"
    assert conf["authentication"][0]["body"]["password"] == "${password}", "EMQX's own placeholders stay"
    assert conf["authorization"]["sources"][0]["headers"]["authorization"] == bearer
    assert set(conf) == {"node", "cluster", "dashboard", "api_key", "connectors", "actions", "rule_engine",
                         "authentication", "authorization"}
    assert (tmp_path / "adapter_api_key.conf").read_text() == "adapter-key:s3cret-VALUE\n"
    assert (tmp_path / "adapter_api_key.conf").stat().st_mode & 0o077 == 0
    assert (tmp_path / "emqx.conf").stat().st_mode & 0o077 == 0, "it holds the token"


def ssl_blocks(conf: ConfigTree) -> list[dict[str, Any]]:
    """The `ssl` of the connector, the authenticator and the authorization source."""
    return [dict(conf["connectors"]["http"]["adapter"]["ssl"]), dict(conf["authentication"][0]["ssl"]),
            dict(conf["authorization"]["sources"][0]["ssl"])]


@pytest.mark.parametrize(("url", "extra", "ca", "verify"), [
    ("http://adapter.internal:8000", {}, "", True),
    ("http://adapter.internal:8000", {"ADAPTER_CA_FILE": "/etc/certs/ca.pem"}, "/etc/certs/ca.pem", True),
    ("https://adapter.internal:8443", {"ADAPTER_CA_FILE": "/opt/emqx/etc/certs/adapter-ca.pem"},
     "/opt/emqx/etc/certs/adapter-ca.pem", True),
    ("https://adapter.internal:8443", {"ADAPTER_TLS_VERIFY": "false"}, "", False),
])
@pytest.mark.skipif(shutil.which("sed") is None, reason="needs sed")
def test_render_writes_the_tls_that_apply_installs(tmp_path: Path, url: str, extra: dict[str, str], ca: str,
                                                   verify: bool) -> None:
    """EMQX's default is verify_none: an https adapter is verified against ADAPTER_CA_FILE unless turned off,
    in the connector, the authenticator and the authorization source alike, as `adapter emqx apply` does."""
    done = _render(tmp_path, **{**ENV, "ADAPTER_BASE_URL": url, **extra})
    assert done.returncode == 0, done.stderr
    conf = ConfigFactory.parse_string((tmp_path / "emqx.conf").read_text())
    assert conf["authentication"][0]["url"] == f"{url}/emqx/authn"
    assert ssl_blocks(conf) == [emqx_config.ssl_config(url, ca, verify)] * 3
    if url.startswith("https://") and verify:
        assert ssl_blocks(conf)[0]["verify"] == "verify_peer"


@pytest.mark.parametrize(("change", "message"), [
    ({"ADAPTER_INGEST_TOKEN": ""}, "ADAPTER_INGEST_TOKEN is required"),
    ({"ADAPTER_INGEST_TOKEN": "a|b"}, "ADAPTER_INGEST_TOKEN may contain only"),
    ({"ADAPTER_EMQX_API_SECRET": 'x"y'}, "ADAPTER_EMQX_API_SECRET may contain only"),
    ({"ADAPTER_EMQX_API_KEY": "a:b"}, "ADAPTER_EMQX_API_KEY may contain only"),
    ({"ADAPTER_BASE_URL": "api:8000"}, "ADAPTER_BASE_URL must be an http(s) URL"),
    ({"ADAPTER_BASE_URL": "https://a:8443"}, "ADAPTER_BASE_URL is https: set ADAPTER_CA_FILE"),
    ({"ADAPTER_BASE_URL": "https://a:8443", "ADAPTER_CA_FILE": "ca.pem"}, "ADAPTER_CA_FILE must be an absolute"),
    ({"ADAPTER_BASE_URL": "https://a:8443", "ADAPTER_CA_FILE": "/c/a b.pem"}, "ADAPTER_CA_FILE may contain only"),
    ({"ADAPTER_BASE_URL": "https://a:8443", "ADAPTER_TLS_VERIFY": "no"}, "ADAPTER_TLS_VERIFY must be true or false"),
])
@pytest.mark.skipif(shutil.which("sed") is None, reason="needs sed")
def test_render_refuses_values_it_cannot_write_safely(tmp_path: Path, change: dict[str, str],
                                                     message: str) -> None:
    done = _render(tmp_path, **{**ENV, **change})
    assert done.returncode == 2
    assert message in done.stderr
    assert not (tmp_path / "emqx.conf").exists()


def test_render_runs_the_given_command(tmp_path: Path) -> None:
    full = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "ADAPTER_EMQX_CONFIG_DEST": str(tmp_path), **ENV}
    done = subprocess.run(["sh", str(CONFIG / "render.sh"), "echo", "started"], env=full, capture_output=True,
                          text=True, timeout=10, check=False)
    assert (done.returncode, done.stdout) == (0, "started\n")


# --- docs/emqx.md says the same (issue 25) -------------------------------------------------------------


def production_table() -> dict[str, list[str]]:
    text = DOCS.read_text()
    section = text[text.index("## What to set in production"):]
    section = section[:section.index("\n## ", 1)]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| setting")]
    return {cells[0]: cells[1:] for cells in ([c.strip() for c in row.strip("|").split("|")] for row in rows)}


def test_the_production_table_gives_a_reason_for_every_value_and_the_shipped_values() -> None:
    table = production_table()
    assert all(len(cells) == 2 and cells[0] and len(cells[1]) > 20 for cells in table.values()), table
    opts = emqx_config.action_config()["resource_opts"]
    assert table["action `request_ttl`"][0] == f"`{opts['request_ttl']}`"
    assert table["action `max_buffer_bytes`"][0] == f"`{opts['max_buffer_bytes']}`"
    assert table["action `worker_pool_size`, `inflight_window`"][0] == \
        f"`{opts['worker_pool_size']}`, `{opts['inflight_window']}`"
    assert table["connector `pool_type`"][0] == f"`{emqx_config.connector_config('', '', {})['pool_type']}`"
    tls = next(cells for name, cells in table.items() if name.startswith("`ssl.verify`"))
    assert emqx_config.ssl_config("https://a", "/ca.pem")["verify"] in tls[0]
    authn = emqx_config.authn_config("", "", {})
    assert table["authentication and authorization `request_timeout`"][0] == f"`{authn['request_timeout']}`"
    assert "QoS 1" in table["devices' subscription to `dma/cmd/{sn}`"][0]


def test_the_docs_say_request_ttl_is_what_the_config_sets() -> None:
    text = DOCS.read_text()
    ttl = emqx_config.REQUEST_TTL.removesuffix("s")
    assert f"`request_ttl` = {ttl} s" in text and "120 s" not in text


def test_every_device_example_subscribes_to_its_commands_with_qos_1() -> None:
    """`message.acked` fires only for QoS 1 deliveries: a device that subscribes with QoS 0 never acks."""
    commands = []
    for path in (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))):
        text = path.read_text().replace("\\\n", " ")
        commands += [(path.name, line) for line in text.splitlines() if "mosquitto_sub" in line
                     and "dma/cmd/" in line and not line.lstrip().startswith("|")]
    assert commands, "docs/emqx.md shows a device subscribing to its commands"
    for name, line in commands:
        assert re.search(r"\s-q 1\b", line), (name, line)
