"""What the callback and message-route APIs share (adapter/targets/repository.py is the store side): the JSON schemas of
ids, secrets, attempts and dead letters, and the endpoints every kind of target adds to the seed's: secret
rotation, recent deliveries, dead letters (a page at a time) and replay, and the engine's health of a target
(breaker, held deliveries, drops).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from adapter.delivery import replay as dead_replay
from adapter.delivery.urlguard import check_static
from adapter.errors import invalid
from adapter.http.endpoint import Call, Endpoint, Handler
from adapter.http.validation import LIMIT, PAGE, Param
from adapter.store.keys import Keys
from adapter.store.types import AsyncRedis
from adapter.targets.health import REASONS
from adapter.targets.records import OUTCOMES, Item, Target

__all__ = ["COUNT", "ID", "INT", "MAX_ID", "SECRET", "STR", "URL", "Store", "TargetApi", "checked_url",
           "counted", "list_of", "object_schema"]

Schema = dict[str, Any]
MAX_ID = 2**63 - 1

INT: Schema = {"type": "integer"}
COUNT: Schema = {"type": "integer", "minimum": 0}
STR: Schema = {"type": "string"}
ID: Schema = {"type": "integer", "minimum": 1, "maximum": MAX_ID}
URL: Schema = {"type": "string", "description": "http(s) URL, at most 2048 characters"}
SECRET: Schema = {"type": "string", "pattern": "^whsec_", "description": "Standard Webhooks signing secret"}
_NULLABLE_STR: Schema = {"type": ["string", "null"]}
_NULLABLE_INT: Schema = {"type": ["integer", "null"]}


def object_schema(properties: Schema, *, optional: tuple[str, ...] = (), closed: bool = True) -> Schema:
    required = [p for p in properties if p not in optional]
    schema = {"type": "object", "required": required, "properties": properties}
    return {**schema, "additionalProperties": False} if closed else schema


def list_of(item: Schema) -> Schema:
    return object_schema({"count": COUNT, "list": {"type": "array", "items": item}})


ATTEMPT_PROPERTIES: Schema = {
    "deliveryId": STR, "eventId": STR, "attempt": INT, "time": {"type": "number"},
    "status": {"type": ["integer", "null"]}, "durationMs": {"type": ["number", "null"]},
    "error": _NULLABLE_STR, "excerpt": _NULLABLE_STR, "outcome": {"type": "string", "enum": list(OUTCOMES)},
}
ATTEMPT_SCHEMA = object_schema(ATTEMPT_PROPERTIES, optional=tuple(ATTEMPT_PROPERTIES)[1:], closed=False)
DEAD_PROPERTIES: Schema = {"deliveryId": STR, "body": STR, "key": STR, "attempts": INT,
                           "lastError": _NULLABLE_STR, "time": {"type": "number"}}
DEAD_SCHEMA = object_schema(DEAD_PROPERTIES, optional=tuple(DEAD_PROPERTIES)[1:], closed=False)

ID_BODY = object_schema({"id": ID})
_DELIVERY_ID: Schema = {"type": "string", "minLength": 1, "maxLength": 200}
REPLAY_BODY = object_schema({"id": ID, "deliveryId": _DELIVERY_ID,
                             "deliveryIds": {"type": "array", "items": _DELIVERY_ID, "minItems": 1,
                                             "maxItems": 1000}},
                            optional=("deliveryId", "deliveryIds"))
_BRIEF_ATTEMPT = {"oneOf": [{"type": "null"}, object_schema({
    "time": {"type": "number"}, "deliveryId": STR, "outcome": {"type": "string"}, "status": _NULLABLE_INT,
    "error": _NULLABLE_STR})]}
HEALTH_SCHEMA = object_schema({
    "id": ID, "enabled": {"type": "boolean"},
    "breaker": object_schema({"state": {"type": "string", "enum": ["closed", "open"]}, "since": _NULLABLE_INT,
                              "failures": COUNT, "probeAt": _NULLABLE_INT}),
    "held": COUNT, "dead": COUNT, "dropped": object_schema({"held": COUNT, "dead": COUNT}),
    "retrying": {**COUNT, "description": "deliveries whose last kept attempt asked for a retry (a lower bound: the "
                                         "engine keeps a target's last 200 attempts)"},
    "lastAttempt": _BRIEF_ATTEMPT, "lastError": {**_BRIEF_ATTEMPT, "description": "the newest attempt that failed"},
    "attention": {"type": "array", "items": {"type": "string", "enum": list(REASONS)},
                  "description": "why the target needs an operator; empty: it does not"},
})
DEAD_PAGE = object_schema({"total": COUNT, "count": COUNT, "page": INT, "limit": INT,
                           "list": {"type": "array", "items": DEAD_SCHEMA}})
OUTCOME = Param("status", enum=OUTCOMES, description="only attempts with this outcome")


def checked_url(call: Call, url: str) -> str:
    return check_static(url, call.svc.settings.allow_private_urls)


def counted(items: list[Item]) -> dict[str, Any]:
    return {"count": len(items), "list": items}


def _named(handler: Handler, name: str) -> Handler:
    """`handler` under its own name (the route's name and the OpenAPI operation id)."""
    async def named(call: Call) -> Any:
        return await handler(call)

    named.__name__ = named.__qualname__ = name
    return named


class Store(Protocol):
    """What the shared handlers call on a kind's store (adapter.targets.repository.TargetStore, with its own `all` and
    `delete`)."""

    async def all(self) -> Sequence[Target]: ...

    async def delete(self, target_id: int) -> int: ...

    async def rotate_secret(self, target_id: int, now: int | None = None) -> str: ...

    async def deliveries(self, target_id: int, outcome: str | None = None) -> list[Item]: ...

    async def dead(self, target_id: int, page_no: int = 1, limit: int = 100) -> tuple[int, list[Item]]: ...

    async def replay(self, target_id: int, delivery_ids: list[str] | None, partitions: int,
                     maxlen: int = ...) -> int: ...

    async def health(self, target_id: int) -> Item: ...

    async def healths(self) -> list[Item]: ...

    async def dead_count(self, target_id: int) -> int: ...

    def engine_name(self, target_id: int) -> str: ...


S = TypeVar("S", bound=Store)


@dataclass(frozen=True)
class TargetApi(Generic[S]):
    """One kind of target's API under `base`: `noun` names it in the texts, `opens` is its store's class,
    `properties` those of the seed's answer to a change. Its shared handlers keep their names (the OpenAPI
    operation ids); the seed's four are the kind's own, declared here by `seed_endpoints`."""

    base: str
    noun: str
    opens: Callable[[AsyncRedis, Keys], S]
    properties: Schema
    changed: Callable[[Call], Awaitable[None]] | None = None  # after a change, before its answer (routes: the table)

    def store(self, call: Call) -> S:
        return self.opens(call.svc.redis, call.svc.keys)

    @property
    def id_param(self) -> Param:
        return Param("id", "int", minimum=1, maximum=MAX_ID, required=True, description=f"{self.noun} id")

    @property
    def item_schema(self) -> Schema:
        """The seed's answer to a change."""
        return object_schema(self.properties)

    async def listing(self, call: Call) -> dict[str, Any]:
        return counted([target.listed() for target in await self.store(call).all()])

    async def delete(self, call: Call) -> dict[str, int]:
        rows = await self.store(call).delete(call.query["id"])
        await self.after_change(call)
        return {"rows": rows}

    async def rotate_secret(self, call: Call) -> dict[str, Any]:
        target_id = int(call.body["id"])
        secret = await self.store(call).rotate_secret(target_id)
        await self.after_change(call)
        return {"id": target_id, "secret": secret}

    async def after_change(self, call: Call) -> None:
        if self.changed is not None:
            await self.changed(call)

    async def list_deliveries(self, call: Call) -> dict[str, Any]:
        return counted(await self.store(call).deliveries(call.query["id"], call.query["status"]))

    async def list_dead(self, call: Call) -> dict[str, Any]:
        q = call.query
        total, items = await self.store(call).dead(q["id"], q["page"], q["limit"])
        return {"total": total, "count": len(items), "page": q["page"], "limit": q["limit"], "list": items}

    async def replay_dead(self, call: Call) -> dict[str, Any]:
        """All of many dead letters (more than `replay_job_threshold`) are replayed by an RQ job: the answer
        names it (`job`), `GET /iot/api/v1/jobs?id=` shows its progress."""
        body, settings = call.body, call.svc.settings
        if "deliveryId" in body and "deliveryIds" in body:
            raise invalid("deliveryIds: give deliveryId or deliveryIds, not both")
        ids = [body["deliveryId"]] if "deliveryId" in body else body.get("deliveryIds")
        store, target_id = self.store(call), int(body["id"])
        total = await store.dead_count(target_id) if ids is None else 0
        if total > settings.replay_job_threshold:
            return {"replayed": 0, "job": await dead_replay.start(call.svc, store.engine_name(target_id), total)}
        moved = await store.replay(target_id, ids, settings.delivery_partitions, settings.delivery_stream_maxlen)
        return {"replayed": moved}

    async def health(self, call: Call) -> Item:
        """One target's health (`id`), or every target's (a list, by id)."""
        if call.query["id"] is None:
            return counted(await self.store(call).healths())
        return await self.store(call).health(call.query["id"])

    def seed_endpoints(self, create: Handler, update: Handler, create_body: Schema, update_body: Schema,
                       summaries: tuple[str, str, str]) -> list[Endpoint]:
        """The seed's list, create, update and delete (`summaries` of the first three); list items add the
        counters, a creation answers the secret once. List and delete are the shared handlers, named
        `list_<noun>s` and `delete_<noun>`."""
        base, props = self.base, self.properties
        created = object_schema({**props, "secret": SECRET})
        listed = object_schema({**props, "succCount": COUNT, "failedCount": COUNT})
        delete = Endpoint("DELETE", base, _named(self.delete, f"delete_{self.noun}"),
                          f"Remove a {self.noun} with its attempts and dead letters", access="admin",
                          query=(self.id_param,), response=object_schema({"rows": COUNT}))
        return [
            Endpoint("GET", base, _named(self.listing, f"list_{self.noun}s"), summaries[0],
                     response=list_of(listed)),
            Endpoint("POST", base, create, summaries[1], access="admin", body=create_body, response=created),
            Endpoint("PUT", base, update, summaries[2], access="admin", body=update_body,
                     response=self.item_schema, errors=(404, 409)),
            delete,
        ]

    def endpoints(self) -> list[Endpoint]:
        """Secret rotation, deliveries, dead letters, replay: fixed `<base>/<word>` paths."""
        base, noun, ids = self.base, self.noun, (self.id_param,)
        return [
            Endpoint("POST", f"{base}/secret", self.rotate_secret,
                     f"Replace a {noun}'s signing secret; answers the new", access="admin", body=ID_BODY,
                     response=object_schema({"id": ID, "secret": SECRET}), errors=(404, 409)),
            Endpoint("GET", f"{base}/deliveries", self.list_deliveries,
                     f"A {noun}'s recent attempts, newest first",
                     query=(*ids, OUTCOME), response=list_of(ATTEMPT_SCHEMA), errors=(404,)),
            Endpoint("GET", f"{base}/dead", self.list_dead,
                     f"A {noun}'s dead-lettered deliveries, oldest first, a page at a time",
                     query=(*ids, PAGE, LIMIT), response=DEAD_PAGE, errors=(404,)),
            Endpoint("POST", f"{base}/replay", self.replay_dead,
                     "Send one (deliveryId), some (deliveryIds) or all dead letters again",
                     access="admin", body=REPLAY_BODY, response=object_schema({"replayed": COUNT, "job": {
                         "type": "string", "description": "set when many letters are replayed by an RQ job "
                                                          "(GET /iot/api/v1/jobs?id=)"}}, optional=("job",)),
                     errors=(404, 409)),
            Endpoint("GET", f"{base}/health", self.health,
                     f"A {noun}'s delivery health (id), or every {noun}'s (no id): enabled, breaker, held and "
                     "retrying deliveries, dead letters, drops at the caps, last error, attention",
                     query=(Param("id", "int", minimum=1, maximum=MAX_ID, description=f"{noun} id; none: all"),),
                     response={"oneOf": [HEALTH_SCHEMA, list_of(HEALTH_SCHEMA)]}, errors=(404,)),
        ]
