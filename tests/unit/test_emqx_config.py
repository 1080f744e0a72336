"""emqx-config/ and rules/ against what the adapter expects (issue 8, item 2): every HOCON file parses, the
rules reach an existing action and connector, the events they send are exactly those the ingest handles,
every rule that sends messages leaves out the REST API's own publishes, the generated files are current,
and render.sh fills in every placeholder (EMQX's HOCON reads no environment variables)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pyhocon import ConfigFactory, ConfigTree

from adapter.broker import emqx_apply
from adapter.ingest.events import V5_PARSERS
from scripts import gen_emqx_config

ROOT = Path(__file__).resolve().parents[2]
CONFIG = ROOT / "emqx-config"
HOCON_FILES = ("node.hocon", "bridge.hocon", "rules.hocon", "auth.hocon")
RENDERED = {"ADAPTER_BASE_URL", "ADAPTER_INGEST_TOKEN", "ADAPTER_EMQX_API_KEY", "ADAPTER_EMQX_API_SECRET"}
MESSAGE_EVENTS = {"message.publish", "message.acked"}
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
    from_files = {r.id: r for r in emqx_apply.load_rules(ROOT / "rules")}
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


def test_every_rule_that_sends_messages_leaves_out_rest_api_publishes() -> None:
    """EMQX runs rules on messages published through its REST API too (clientid "http_api")."""
    for rule_id, rule in rules().items():
        if events_of(rule["sql"]) & MESSAGE_EVENTS:
            where = rule["sql"].partition(" WHERE ")[2]
            assert "clientid != 'http_api'" in where, rule_id


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
    action = parse("bridge.hocon")["actions"]["http"][emqx_apply.ACTION]
    params, opts = action["parameters"], action["resource_opts"]
    assert (params["method"], params["path"], params["body"]) == ("post", "/emqx/events", "${.}")
    assert "max_retries" not in params, "EMQX 5.8 accepts parameters.max_retries and ignores it"
    assert {"request_ttl", "max_buffer_bytes"} <= set(opts)
    assert not {"batch_size", "batch_time"} & set(opts), "the HTTP action rejects batching"


def test_no_rule_puts_not_over_a_parenthesised_and_or() -> None:
    """EMQX 5.8's rule runtime cannot evaluate `NOT (a OR b)` (function_clause on every message)."""
    for rule_id, rule in rules().items():
        assert not emqx_apply.negated_groups(rule["sql"]), rule_id
        assert not re.search(r"\bNOT\s*\(", rule["sql"], re.IGNORECASE), rule_id


@pytest.mark.parametrize(("sql", "found"), [
    ("SELECT * FROM \"#\" WHERE NOT (topic =~ 'a/#' OR topic = 'b')", ["NOT (topic =~ 'a/#' OR topic = 'b')"]),
    ("SELECT * FROM \"#\" WHERE x = 1 AND not(a = 1 and (b = 2))", ["not(a = 1 and (b = 2))"]),
    ("SELECT * FROM \"#\" WHERE NOT topic =~ 'a/#' AND topic != 'b'", []),
    ("SELECT * FROM \"#\" WHERE NOT (topic = 'x OR y')", []),
    ("SELECT 'NOT (a OR b)' AS s FROM \"#\"", []),
])
def test_negated_groups_finds_not_over_and_or_only(sql: str, found: list[str]) -> None:
    assert emqx_apply.negated_groups(sql) == found


def test_loading_and_generating_refuse_a_rule_with_not_over_or(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "bad.sql").write_text("-- x\nSELECT * FROM \"#\" WHERE NOT (topic = 'a' OR topic = 'b')\n")
    with pytest.raises(ValueError, match="rule bad: NOT over a parenthesised AND/OR"):
        emqx_apply.load_rules(tmp_path)
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
    for name in RENDERED:
        assert f"s|\\${{{name}}}|" in script


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


@pytest.mark.parametrize(("url", "tls"), [("http://adapter.internal:8000", False),
                                         ("https://adapter.internal:8443", True)])
@pytest.mark.skipif(shutil.which("sed") is None, reason="needs sed")
def test_render_turns_tls_on_for_authn_and_authz_exactly_when_the_url_is_https(tmp_path: Path, url: str,
                                                                              tls: bool) -> None:
    assert (CONFIG / "auth.hocon").read_text().count("ssl { enable = false }") == 2, "render.sh edits these"
    done = _render(tmp_path, **{**ENV, "ADAPTER_BASE_URL": url})
    assert done.returncode == 0, done.stderr
    conf = ConfigFactory.parse_string((tmp_path / "emqx.conf").read_text())
    assert conf["authentication"][0]["url"] == f"{url}/emqx/authn"
    assert conf["authentication"][0]["ssl"]["enable"] is tls
    assert conf["authorization"]["sources"][0]["ssl"]["enable"] is tls


@pytest.mark.parametrize(("change", "message"), [
    ({"ADAPTER_INGEST_TOKEN": ""}, "ADAPTER_INGEST_TOKEN is required"),
    ({"ADAPTER_INGEST_TOKEN": "a|b"}, "ADAPTER_INGEST_TOKEN may contain only"),
    ({"ADAPTER_EMQX_API_SECRET": 'x"y'}, "ADAPTER_EMQX_API_SECRET may contain only"),
    ({"ADAPTER_EMQX_API_KEY": "a:b"}, "ADAPTER_EMQX_API_KEY may contain only"),
    ({"ADAPTER_BASE_URL": "api:8000"}, "ADAPTER_BASE_URL must be an http(s) URL"),
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
