"""What every target's record is made of, as pure functions: the `Target` fields each kind's record carries, a
hash read back into them, attempts and dead letters as JSON items, the stream fields of a replayed entry.
repository.py keeps them in Redis."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import KW_ONLY, dataclass
from typing import Any

import orjson
from redis.typing import EncodableT, FieldT

from adapter.delivery.model import RECORDED
from adapter.store.types import as_int

OUTCOMES = tuple(o.value for o in RECORDED)  # of an attempt, as the engine records it
Item = dict[str, Any]


def json_objects(raws: Iterable[str]) -> list[Item]:
    """The JSON objects among `raws`; anything else is skipped."""
    out = []
    for raw in raws:
        try:
            value = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(value, dict):
            out.append(value)
    return out


def replayable(item: Item) -> bool:
    return isinstance(item.get("body"), (str, dict, list))


def stream_fields(target: str, item: Item) -> dict[FieldT, EncodableT]:
    """The delivery stream entry that sends a dead letter again, from its first attempt."""
    body = item["body"]
    return {"t": target, "k": str(item.get("key", "")), "id": item["deliveryId"],
            "b": body if isinstance(body, str) else orjson.dumps(body).decode(), "n": "0"}


def stamp(now: int | None = None) -> int:
    """`now`, or the current time in seconds."""
    return int(time.time()) if now is None else now


@dataclass(frozen=True)
class Target:
    """What every target's record holds. A kind adds its own fields (positional, after `id`) and `item()`."""

    id: int
    _: KW_ONLY
    enabled: bool
    create_time: int
    update_time: int
    succ_count: int = 0
    failed_count: int = 0

    def item(self) -> Item:
        """The seed's answer to a change."""
        raise NotImplementedError

    def listed(self) -> Item:
        """The seed's list item: the change answer plus the counters."""
        return {**self.item(), "succCount": self.succ_count, "failedCount": self.failed_count}

    def times(self) -> Item:
        return {"createTime": self.create_time, "updateTime": self.update_time}

    def shared_fields(self) -> dict[FieldT, EncodableT]:
        """What a change writes to the hash besides the kind's own fields (the engine owns the counters)."""
        return {"enabled": "1" if self.enabled else "0", "createTime": str(self.create_time),
                "updateTime": str(self.update_time)}


def shared_values(record: Mapping[str, str]) -> dict[str, Any]:
    """The `Target` fields a hash holds, as keyword arguments of a kind's record."""
    return {"enabled": record.get("enabled") == "1", "create_time": as_int(record.get("createTime")),
            "update_time": as_int(record.get("updateTime")), "succ_count": as_int(record.get("succCount")),
            "failed_count": as_int(record.get("failedCount"))}
