"""Configuration: read once from the environment (and an optional `.env`), validated at start.

`Settings.from_env` never raises anything but `ConfigError`, whose message is one line fit for a terminal.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlparse, urlsplit, urlunsplit


class ConfigError(Exception):
    """A missing or invalid setting; the message is one line."""


def _bool(name: str, raw: str) -> bool:
    low = raw.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name} must be true or false, not {raw!r}")


def _int(name: str, raw: str, minimum: int = 0, maximum: int | None = None) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be an integer, not {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, not {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(f"{name} must be at most {maximum}, not {value}")
    return value


def _float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, not {raw!r}") from None
    if value <= 0:
        raise ConfigError(f"{name} must be positive, not {value}")
    return value


def _url(name: str, raw: str, schemes: tuple[str, ...]) -> str:
    parsed = urlparse(raw)
    if parsed.scheme not in schemes or not (parsed.netloc or parsed.path):
        raise ConfigError(f"{name} must be a {'/'.join(schemes)} URL, not {redact_url(raw)!r}")
    return raw


def cluster_seeds(url: str) -> tuple[str, list[tuple[str, int]]]:
    """A Redis Cluster URL, `redis+cluster://[user:password@]host:port[,host:port…][/0][?options]` (or
    `rediss+cluster://`), read as redis-py wants it: the URL of its first seed with the plain scheme, and every seed
    (host, port). A seed without a port is on 6379; an IPv6 host is written in brackets (`[::1]:7001`). A cluster
    has database 0 only. Anything else is a ConfigError naming ADAPTER_REDIS_URL."""
    scheme, sep, rest = url.partition("://")
    if not sep or not scheme.endswith("+cluster"):
        raise ConfigError(f"ADAPTER_REDIS_URL {redact_url(url)!r} is not a redis+cluster:// URL")
    end = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
    netloc, tail = rest[:end], rest[end:]
    userinfo, at, hosts = netloc.rpartition("@")
    path = tail.partition("?")[0]
    if path not in ("", "/", "/0"):
        raise ConfigError(f"ADAPTER_REDIS_URL {redact_url(url)!r}: a Redis Cluster has database 0 only, not "
                          f"{path.lstrip('/')!r}")
    seeds = [_seed(url, part.strip()) for part in hosts.split(",")]
    first = f"{seeds[0][0]}:{seeds[0][1]}" if ":" not in seeds[0][0] else f"[{seeds[0][0]}]:{seeds[0][1]}"
    return f"{scheme.removesuffix('+cluster')}://{userinfo}{at}{first}{tail}", seeds


def _seed(url: str, text: str) -> tuple[str, int]:
    if text.startswith("["):
        host, _, port = text[1:].partition("]")
        port = port.removeprefix(":")
    else:
        host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    try:
        number = int(port) if port else 6379
    except ValueError:
        number = 0
    if not host or not 0 < number < 65536 or any(c in host for c in " /@"):
        raise ConfigError(f"ADAPTER_REDIS_URL {redact_url(url)!r}: {text!r} is not a host:port seed "
                          f"(redis+cluster://host:port,host:port,…)")
    return host, number


def redact_url(url: str) -> str:
    """The URL fit to print: a password in it (`redis://user:secret@host`, `?password=secret`) becomes `***`."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unreadable URL>"
    userinfo, at, hostport = parts.netloc.rpartition("@")
    netloc = parts.netloc
    if at and ":" in userinfo:
        netloc = f"{userinfo.partition(':')[0]}:***@{hostport}"
    query = parts.query
    if "password" in query.lower():
        query = urlencode([(k, "***" if k.lower() == "password" else v)
                           for k, v in parse_qsl(query, keep_blank_values=True)], safe="*")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


@dataclass(frozen=True)
class Settings:
    """Every setting of the service. Field names map to `ADAPTER_<NAME>` environment variables."""

    redis_url: str = "redis://127.0.0.1:6379/0"
    key_prefix: str = "iot"
    # Redis Cluster (`redis+cluster://host:port` in ADAPTER_REDIS_URL; docs/cluster.md)
    cluster_partitions: int = 48
    # the one Redis RQ uses (jobs, queues); empty: redis_url. Required on a cluster (RQ cannot run on one).
    rq_redis_url: str = ""
    ingest_token: str = ""
    emqx_api_url: str = "http://127.0.0.1:18083/api/v5"
    emqx_api_key: str = ""
    emqx_api_secret: str = ""
    emqx_timeout: float = 2.5
    admin_password: str = ""
    token_ttl: int = 86400
    allow_private_urls: bool = False
    max_body_bytes: int = 1024 * 1024
    # the ingest's 200 only once this many replicas have its writes (WAIT; 0: the primary's memory, docs/reliability.md)
    ingest_wait_replicas: int = 0
    ingest_wait_ms: int = 100
    login_max_failures: int = 5
    login_window: int = 900
    login_max_failures_per_ip: int = 50
    # login throttle and argon2id bound (docs/api.md, "Login")
    login_lock_first: int = 60
    login_lock_longest: int = 3600
    login_verify_concurrency: int = 2
    login_verify_queue: int = 8
    delivery_partitions: int = 4
    delivery_schedule: str = "5s,30s,2m,10m,30m,1h,3h,6h"
    delivery_timeout: float = 10.0
    delivery_lease: float = 15.0
    delivery_concurrency: int = 64
    # bounded growth and fairness per target (docs/delivery.md)
    delivery_target_concurrency: int = 48
    delivery_max_held: int = 10_000
    delivery_held_max_age: float = 86_400.0
    delivery_max_dead: int = 10_000
    delivery_dead_max_age: float = 7 * 86_400.0
    delivery_stream_maxlen: int = 250_000
    delivery_breaker_threshold: int = 20
    delivery_breaker_probe: float = 30.0
    # remote control commands (docs/commands.md)
    command_ack_timeout: float = 30.0
    command_max_targets: int = 10_000
    command_body_max_bytes: int = 64 * 1024
    command_default_expires: int = 86_400
    command_max_expires: int = 30 * 86_400
    command_publish_batch: int = 250
    command_publish_concurrency: int = 8
    command_retry_schedule: str = "1s,2s,5s,10s,30s"
    # peripherals (docs/devices.md)
    max_peripherals_per_gateway: int = 1000
    peripheral_ttl_days: int = 30
    # EMQX HTTP authentication and authorization (docs/emqx.md)
    mqtt_clients: str = ""
    authn_cache_ttl: int = 86_400
    # how much lower than the API `adapter worker` runs on a shared host (nice(2); docs/rollouts.md "Speed")
    worker_nice: int = 0
    # RQ jobs of `adapter worker` (docs/delivery.md "What RQ runs")
    reconcile_interval: int = 300
    reconcile_page_size: int = 1000
    retention_interval: int = 3600
    device_retention_days: int = 30
    rollout_retention_days: int = 30
    retention_batch: int = 1000
    command_job_threshold: int = 1000
    replay_job_threshold: int = 1000
    job_progress_ttl: int = 86_400
    authn_max_failures: int = 5
    authn_max_failures_per_host: int = 100
    authn_window: int = 900
    authn_lock_first: int = 60
    authn_lock_longest: int = 3600
    authn_verify_concurrency: int = 4
    authn_verify_queue: int = 16
    trusted_proxies: str = "127.0.0.1"
    # the per-minute series the console charts (adapter/stats/, docs/api.md "Series")
    stats_interval: float = 10.0
    dev: bool = field(default=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, dev: bool = False,
                 dotenv: Path | None = Path(".env")) -> Settings:
        env = dict(read_dotenv(dotenv)) if dotenv is not None else {}
        env.update(os.environ if environ is None else environ)
        dev = dev or _bool("ADAPTER_DEV", env.get("ADAPTER_DEV", "false"))
        values: dict[str, object] = {"dev": dev}
        if dev:
            values["allow_private_urls"] = True
        for f in fields(cls):
            raw = env.get(f"ADAPTER_{f.name.upper()}")
            if raw is None or f.name == "dev":
                continue
            values[f.name] = _convert(f.name, f.type, raw)
        settings = cls(**values)  # type: ignore[arg-type]
        settings.check_basic()
        return settings

    def __repr__(self) -> str:
        """Every setting, with the secrets masked and the Redis URL's password left out."""
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _SECRETS and value:
                value = "***"
            elif f.name in ("redis_url", "rq_redis_url"):
                value = redact_url(value)
            shown.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(shown)})"

    def check_basic(self) -> None:
        _url("ADAPTER_REDIS_URL", self.redis_url, ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster"))
        if self.redis_cluster:
            cluster_seeds(self.redis_url)
        if self.rq_redis_url:
            _url("ADAPTER_RQ_REDIS_URL", self.rq_redis_url, ("redis", "rediss", "unix"))
        elif self.redis_cluster:
            raise ConfigError("ADAPTER_RQ_REDIS_URL is required when ADAPTER_REDIS_URL is a Redis Cluster "
                              "(RQ runs on one plain Redis; docs/cluster.md)")
        _url("ADAPTER_EMQX_API_URL", self.emqx_api_url, ("http", "https"))
        for name in ("delivery_schedule", "command_retry_schedule"):
            try:
                parse_schedule(getattr(self, name))
            except ValueError as exc:
                raise ConfigError(f"ADAPTER_{name.upper()}: {exc}") from None
        if not self.key_prefix or any(c in self.key_prefix for c in " :{}"):
            raise ConfigError(f"ADAPTER_KEY_PREFIX must be a non-empty word without ':', not {self.key_prefix!r}")

    @property
    def redis_cluster(self) -> bool:
        """ADAPTER_REDIS_URL names a Redis Cluster (`redis+cluster://` or `rediss+cluster://`)."""
        return self.redis_url.split("://", 1)[0].endswith("+cluster")

    @property
    def rq_url(self) -> str:
        """The Redis RQ uses: ADAPTER_RQ_REDIS_URL, else the service's own Redis."""
        return self.rq_redis_url or self.redis_url

    def require(self, *names: str) -> None:
        """Fail with one line when a setting that this command needs is empty."""
        for name in names:
            if not getattr(self, name):
                hint = " (or run `adapter dev`, which makes one up)" if name in _DEV_GENERATED else ""
                raise ConfigError(f"ADAPTER_{name.upper()} is required{hint}")

    def with_overrides(self, **changes: object) -> Settings:
        return replace(self, **changes)  # type: ignore[arg-type]


_DEV_GENERATED = ("ingest_token", "admin_password")
# other integers: at least 1
_INT_RANGES: dict[str, tuple[int, int | None]] = {"worker_nice": (0, 19), "ingest_wait_replicas": (0, 16)}
_SECRETS = ("ingest_token", "admin_password", "emqx_api_secret", "mqtt_clients")


def _convert(name: str, kind: object, raw: str) -> object:
    env_name = f"ADAPTER_{name.upper()}"
    if kind in ("bool", bool):
        return _bool(env_name, raw)
    if kind in ("int", int):
        return _int(env_name, raw, *_INT_RANGES.get(name, (1, None)))
    if kind in ("float", float):
        return _float(env_name, raw)
    return raw


def read_dotenv(path: Path) -> dict[str, str]:
    """`KEY=value` lines; `#` comments and blank lines skipped; optional quotes stripped."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError:
        return {}
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        out[key.removeprefix("export ").strip()] = value
    return out


_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_STEP = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)?")


def parse_schedule(text: str) -> tuple[float, ...]:
    """A retry schedule setting: "5s,30s,2m,1h" → (5.0, 30.0, 120.0, 3600.0); a bare number means seconds. A
    primitive (durations), so it lives here; delivery/retry.py and commands/runner.py apply it."""
    steps = [part.strip() for part in text.split(",")]
    if not text.strip() or not all(steps):
        raise ValueError(f"delivery schedule must be a comma-separated list like '5s,30s,2m', not {text!r}")
    return tuple(_parse_step(step) for step in steps)


def _parse_step(step: str) -> float:
    match = _STEP.fullmatch(step.lower())
    if match is None:
        raise ValueError(f"bad delay {step!r} in delivery schedule: write a number and a unit, like '30s'")
    seconds = float(match[1]) * _UNITS[match[2] or "s"]
    if seconds <= 0:
        raise ValueError(f"bad delay {step!r} in delivery schedule: it must be more than zero")
    return seconds
