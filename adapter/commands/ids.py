"""Command ids (docs/design.md §7), as pure functions: `YYYYMMDD` (UTC) followed by a 10-digit sequence of that day.

The sequence comes from Redis `INCRBY` on a key per day (adapter/commands/rules.py), so ids are unique across
processes: two processes on either side of midnight use two different day keys. An id has 18 digits and
exceeds 2^53, so JSON carries it as an integer (orjson writes any 64-bit integer) and also as `idStr`;
a query accepts either form (`parse_id`).

`ordinal` maps an id to an integer below 2^53 that orders ids like the ids themselves, so it can be a
sorted-set score (a double) without losing precision: days since 1970-01-01 × 10^10 + sequence.

On Redis Cluster (P partitions) an id carries its partition, so that the id alone finds the command's keys:
each partition counts its own day (`local`), and `seq = local × P + partition`, so `partition = seq mod P`.
Ids stay unique and 18 digits; they order by creation within a partition, and across partitions only
roughly (a listing merges the partitions by ordinal, docs/commands.md). On one Redis (P = 0) `seq` is the
day's counter itself, as it always was.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from functools import lru_cache

SEQ_DIGITS = 10
SEQ_SPAN = 10**SEQ_DIGITS
MAX_SEQ = SEQ_SPAN - 1
ID_DIGITS = 8 + SEQ_DIGITS
EPOCH = date(1970, 1, 1)


def day_of(moment: datetime) -> str:
    """The `YYYYMMDD` an id created at `moment` starts with (UTC)."""
    return moment.astimezone(UTC).strftime("%Y%m%d")


def today() -> str:
    return day_of(datetime.now(UTC))


def make_id(day: str, seq: int) -> int:
    if not 1 <= seq <= MAX_SEQ:
        raise ValueError(f"sequence {seq} is outside 1..{MAX_SEQ}")
    if _date(day) is None:
        raise ValueError(f"{day!r} is not a YYYYMMDD day")
    return int(day) * SEQ_SPAN + seq


def id_range(day: str, last_seq: int, count: int) -> list[int]:
    """The `count` ids that `INCRBY count` answering `last_seq` handed out, in order."""
    return [make_id(day, seq) for seq in range(last_seq - count + 1, last_seq + 1)]


def partition_range(day: str, last_local: int, count: int, partition: int, partitions: int) -> list[int]:
    """The `count` ids of `partition` (of `partitions`) that `INCRBY count` on its day counter answering
    `last_local` handed out, in order."""
    return [make_id(day, local * partitions + partition) for local in range(last_local - count + 1, last_local + 1)]


def max_local(partition: int, partitions: int) -> int:
    """The last local sequence a partition's day counter may reach."""
    return (MAX_SEQ - partition) // partitions


def partition_of(cid: int, partitions: int) -> int:
    """The partition a command id was made in (0 on one Redis, `partitions` = 0)."""
    return (cid % SEQ_SPAN) % partitions if partitions else 0


def id_str(cid: int) -> str:
    return str(cid)


def parse_id(raw: object) -> int | None:
    """A command id from a number or a string of exactly 18 ASCII digits with a real date; None for anything
    else (white space, other scripts' digits, '_' included)."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int):
        text = str(raw)
    elif isinstance(raw, str):
        text = raw
    else:
        return None
    if len(text) != ID_DIGITS or not text.isascii() or not text.isdigit():
        return None
    if _date(text[:8]) is None or int(text[8:]) == 0:
        return None
    return int(text)


def ordinal(cid: int) -> int:
    """A sorted-set score that orders like the id and stays exact as a double (< 2^53)."""
    day, seq = divmod(cid, SEQ_SPAN)
    found = _date(str(day))
    if found is None:
        raise ValueError(f"{cid} is not a command id")
    return (found - EPOCH).days * SEQ_SPAN + seq


@lru_cache(maxsize=4096)
def _date(day: str) -> date | None:
    if len(day) != 8 or not day.isdigit():
        return None
    try:
        return datetime.strptime(day, "%Y%m%d").date()
    except ValueError:
        return None
