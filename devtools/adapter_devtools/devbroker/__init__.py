"""The dev broker: a real MQTT 3.1.1 broker (amqtt 0.12.1, pinned) that stands in for EMQX 5.8.

It POSTs EMQX-5-shaped rule-engine events to the adapter's ingest URL the way EMQX's HTTP action
does, and serves the EMQX REST subset the adapter uses. Modules:

- `config`     DevBrokerConfig (environment + overrides)
- `runtime`    start/stop of everything in one asyncio loop; `serve()`
- `command`    `adapter devbroker …` (`main`)
- `broker`     connection life cycle (auth, takeover/discard, keepalive, disconnect reasons)
- `routing`    publishes, fan-out, offline queue, subscriptions; the event hooks
- `handler`    amqtt protocol handler reporting completed deliveries (`message.acked`)
- `channels`   live and recent connections (EMQX's channel table)
- `link`       the TCP link: addresses, byte meters, last activity
- `emitter`    which happenings become events; `events` builds the bodies (pure)
- `delivery`   the HTTP action: per-client ordered POSTs, retry on 429/503/connection errors, drops
- `api`        the REST app; `publish`, `views` its pure parts; `monitor` node and stats figures
- `auth`       the amqtt auth plugins; `http_auth` asks the service's /emqx/authn and /emqx/authz
               (with `auth_url`); `counters`, `ids`, `model` shared vocabulary

Where amqtt forces a difference from EMQX (see `broker` and `routing` docstrings): MQTT 3.1.1 only,
no authorization unless `auth_url` is set, QoS 0 not queued for offline sessions, packet and process
counters reported as 0, a PUBLISH to a `$` topic closes the connection (reason `topic_name_invalid`).
"""

from adapter_devtools.devbroker.command import main
from adapter_devtools.devbroker.config import DevBrokerConfig
from adapter_devtools.devbroker.counters import Counters
from adapter_devtools.devbroker.runtime import DevBrokerRuntime, serve

__all__ = ["Counters", "DevBrokerConfig", "DevBrokerRuntime", "main", "serve"]
