"""Settings from the environment: defaults, conversions and one-line errors."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from adapter.settings import ConfigError, Settings, read_dotenv


def test_defaults() -> None:
    s = Settings.from_env({}, dotenv=None)
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.key_prefix == "iot"
    assert s.emqx_api_url == "http://127.0.0.1:18083/api/v5"
    assert s.token_ttl == 86400
    assert s.allow_private_urls is False
    assert s.max_body_bytes == 1024 * 1024
    assert (s.max_peripherals_per_gateway, s.peripheral_ttl_days) == (1000, 30)


def test_dev_allows_private_urls_unless_told_otherwise() -> None:
    assert Settings.from_env({}, dev=True, dotenv=None).allow_private_urls is True
    assert Settings.from_env({"ADAPTER_ALLOW_PRIVATE_URLS": "false"}, dev=True, dotenv=None).allow_private_urls is False


def test_conversions() -> None:
    s = Settings.from_env({"ADAPTER_TOKEN_TTL": "60", "ADAPTER_ALLOW_PRIVATE_URLS": "yes",
                           "ADAPTER_KEY_PREFIX": "acme"}, dotenv=None)
    assert (s.token_ttl, s.allow_private_urls, s.key_prefix) == (60, True, "acme")


@pytest.mark.parametrize(("env", "fragment"), [
    ({"ADAPTER_TOKEN_TTL": "soon"}, "ADAPTER_TOKEN_TTL must be an integer"),
    ({"ADAPTER_TOKEN_TTL": "0"}, "at least 1"),
    ({"ADAPTER_ALLOW_PRIVATE_URLS": "maybe"}, "true or false"),
    ({"ADAPTER_REDIS_URL": "http://x"}, "ADAPTER_REDIS_URL"),
    ({"ADAPTER_EMQX_API_URL": "ftp://x"}, "ADAPTER_EMQX_API_URL"),
    ({"ADAPTER_KEY_PREFIX": "a:b"}, "ADAPTER_KEY_PREFIX"),
    ({"ADAPTER_DELIVERY_SCHEDULE": "5s,soon"}, "ADAPTER_DELIVERY_SCHEDULE"),
])
def test_invalid_values_are_one_line_errors(env: dict[str, str], fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env(env, dotenv=None)
    assert fragment in str(info.value)
    assert "\n" not in str(info.value)


def test_require_names_the_variable() -> None:
    s = Settings.from_env({}, dotenv=None)
    with pytest.raises(ConfigError, match="ADAPTER_INGEST_TOKEN is required"):
        s.require("ingest_token")
    Settings.from_env({"ADAPTER_INGEST_TOKEN": "t"}, dotenv=None).require("ingest_token")


def test_dotenv_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text("# comment\nADAPTER_KEY_PREFIX='fromfile'\nexport ADAPTER_TOKEN_TTL=77\n\nBROKEN\n")
    assert read_dotenv(env_file) == {"ADAPTER_KEY_PREFIX": "fromfile", "ADAPTER_TOKEN_TTL": "77"}
    s = Settings.from_env({"ADAPTER_TOKEN_TTL": "5"}, dotenv=env_file)
    assert (s.key_prefix, s.token_ttl) == ("fromfile", 5)


@pytest.mark.parametrize(("url", "shown"), [
    ("redis://:s3cret-pw@db.internal:6379/0", "redis://:***@db.internal:6379/0"),
    ("rediss://app:s3cret-pw@db.internal/2", "rediss://app:***@db.internal/2"),
    ("redis://:p@ss:s3cret-pw@[::1]:6379/0", "redis://:***@[::1]:6379/0"),
    ("redis://db.internal/0?password=s3cret-pw&db=1", "redis://db.internal/0?password=***&db=1"),
    ("unix://:s3cret-pw@/run/redis.sock?db=0", "unix://:***@/run/redis.sock?db=0"),
    ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
    ("redis://app@db.internal/0", "redis://app@db.internal/0"),  # a user name alone is not a secret
])
def test_redact_url_hides_the_password(url: str, shown: str) -> None:
    from adapter.settings import redact_url

    assert redact_url(url) == shown


def test_repr_shows_no_secret() -> None:
    s = Settings.from_env({"ADAPTER_REDIS_URL": "redis://app:s3cret-pw@db.internal/0", "ADAPTER_INGEST_TOKEN": "tok-1",
                           "ADAPTER_ADMIN_PASSWORD": "admin-pw", "ADAPTER_EMQX_API_SECRET": "emqx-secret",
                           "ADAPTER_MQTT_CLIENTS": '[{"username":"svc","password":"mqtt-pw-long"}]'}, dotenv=None)
    text = repr(s)
    for secret in ("s3cret-pw", "tok-1", "admin-pw", "emqx-secret", "mqtt-pw-long"):
        assert secret not in text and secret not in str(s)
    assert "redis_url='redis://app:***@db.internal/0'" in text and "ingest_token='***'" in text
    assert "key_prefix='iot'" in text


def test_a_bad_redis_url_is_reported_without_its_password() -> None:
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({"ADAPTER_REDIS_URL": "http://:s3cret-pw@db.internal/0"}, dotenv=None)
    assert "s3cret-pw" not in str(caught.value) and "ADAPTER_REDIS_URL" in str(caught.value)


def test_forwarded_for_is_believed_only_from_the_trusted_proxies() -> None:
    from adapter.http.runner import trusted_proxies

    assert trusted_proxies(Settings()) == "127.0.0.1"
    assert trusted_proxies(Settings(trusted_proxies=" ")) is None
    assert trusted_proxies(Settings(trusted_proxies="10.1.0.0/16")) == "10.1.0.0/16"


def test_the_workers_niceness_is_0_to_19_and_the_worker_takes_it() -> None:
    assert Settings.from_env({}, dotenv=None).worker_nice == 0
    assert Settings.from_env({"ADAPTER_WORKER_NICE": "0"}, dotenv=None).worker_nice == 0  # other integers: >= 1
    assert Settings.from_env({"ADAPTER_WORKER_NICE": "19"}, dotenv=None).worker_nice == 19
    for bad, says in (("20", "at most 19"), ("-5", "at least 0"), ("x", "an integer")):
        with pytest.raises(ConfigError, match=f"ADAPTER_WORKER_NICE must be {says}"):
            Settings.from_env({"ADAPTER_WORKER_NICE": bad}, dotenv=None)
    code = ("import os; from adapter.settings import Settings; from adapter.worker import lower_priority; "
            "before = os.nice(0); after = lower_priority(Settings(worker_nice=7)); print(after - before)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert int(out) == min(7, 19 - os.nice(0))  # a process already at 19 cannot go lower


def test_replicas_the_ingest_waits_for_are_0_to_16() -> None:
    assert Settings.from_env({}, dotenv=None).ingest_wait_replicas == 0
    assert Settings.from_env({"ADAPTER_INGEST_WAIT_REPLICAS": "1", "ADAPTER_INGEST_WAIT_MS": "250"},
                             dotenv=None).ingest_wait_ms == 250
    for bad, says in (("17", "at most 16"), ("-1", "at least 0")):
        with pytest.raises(ConfigError, match=f"ADAPTER_INGEST_WAIT_REPLICAS must be {says}"):
            Settings.from_env({"ADAPTER_INGEST_WAIT_REPLICAS": bad}, dotenv=None)
    with pytest.raises(ConfigError, match="ADAPTER_INGEST_WAIT_MS must be at least 1"):
        Settings.from_env({"ADAPTER_INGEST_WAIT_MS": "0"}, dotenv=None)
