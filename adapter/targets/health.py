"""The health of a target (docs/delivery.md "Health of a target"): the engine's state (breaker, held deliveries,
drops, dead letters; merged over the partitions on Redis Cluster), its last attempt and last error, how many of its
deliveries wait for a retry, and whether it needs an operator's attention. Pure: store.Targets.healths reads."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from adapter.delivery.model import BreakerState, OutcomeName
from adapter.store.types import as_int

TARGET_FIELDS = ("delivered", "failed")  # the per-minute series every target has (its succCount, failedCount)

Item = dict[str, Any]

FAILING = (OutcomeName.RETRY, OutcomeName.FAILED, OutcomeName.DEAD)
REASONS = ("breaker_open", "failing", "retrying", "held", "dead_letters")
"""Why a target needs attention, in the order the answer lists them."""

ATTEMPT_FIELDS = ("time", "deliveryId", "outcome", "status", "error")


def brief(attempt: Item | None) -> Item | None:
    """An attempt as the health answer shows it (no answer excerpt), or None."""
    if attempt is None:
        return None
    return {name: attempt.get(name) for name in ATTEMPT_FIELDS}


def attempt_summary(attempts: Sequence[Item]) -> Item:
    """`lastAttempt`, `lastError` (the newest attempt that did not deliver) and `retrying`: deliveries whose newest
    kept attempt asked for a retry (the engine keeps the last 200 attempts of a target: a lower bound)."""
    newest: dict[Any, Any] = {}
    for a in attempts:
        newest.setdefault(a.get("deliveryId"), a.get("outcome"))
    last_error = next((a for a in attempts if a.get("outcome") in FAILING), None)
    return {"retrying": sum(1 for o in newest.values() if o == OutcomeName.RETRY),
            "lastAttempt": brief(attempts[0] if attempts else None), "lastError": brief(last_error)}


def attention(item: Item) -> list[str]:
    """Why the target needs attention (REASONS; empty: it does not). A disabled target is no reason by itself, and
    neither are drops at the caps (counted for ever): they are shown, not flagged."""
    last = item.get("lastAttempt") or {}
    flags = {
        "breaker_open": item["breaker"]["state"] == "open",
        "failing": last.get("outcome") in FAILING,
        "retrying": item.get("retrying", 0) > 0,
        "held": item["held"] > 0,
        "dead_letters": item["dead"] > 0,
    }
    return [reason for reason in REASONS if flags[reason]]


def merged_state(states: Sequence[Mapping[str, str]]) -> dict[str, str]:
    """One engine state from those of a target's partitions (the cluster; one Redis has one): counts summed, the
    breaker open when any partition's is, since its earliest opening, probing at its earliest probe."""
    out: dict[str, str] = {}
    opened = [s for s in states if s.get("breaker") == BreakerState.OPEN]
    for field in ("held", "heldDropped", "deadDropped", "failures"):
        values = [s[field] for s in states if field in s]
        if values:
            out[field] = str(sum(as_int(v) for v in values))
    if opened:
        out["breaker"] = BreakerState.OPEN.value
        out["openedAt"] = str(min(as_int(s.get("openedAt")) for s in opened))
        out["probeAt"] = str(min(as_int(s.get("probeAt")) for s in opened))
    return out


def health_item(target_id: int, state: Mapping[str, str], dead: int) -> Item:
    """The health answer from the engine's state hash (delivery_state) and the dead-letter count."""
    failures = as_int(state.get("failures"))
    if state.get("breaker") == BreakerState.OPEN:
        breaker: Item = {"state": BreakerState.OPEN.value, "since": as_int(state.get("openedAt")), "failures": failures,
                         "probeAt": as_int(state.get("probeAt")) // 1000}
    else:
        breaker = {"state": BreakerState.CLOSED.value, "since": None, "failures": failures, "probeAt": None}
    return {"id": target_id, "breaker": breaker, "held": max(0, as_int(state.get("held"))), "dead": dead,
            "dropped": {"held": as_int(state.get("heldDropped")), "dead": as_int(state.get("deadDropped"))}}


def health_of(target_id: int, enabled: bool, states: Sequence[Mapping[str, str]], dead: int,
              attempts: Sequence[Item]) -> Item:
    """The health answer: `enabled`, the engine's state (one per partition), the dead letters, what the kept
    attempts (newest first) tell, and `attention`."""
    state = states[0] if len(states) == 1 else merged_state(states)
    item = {"id": target_id, "enabled": enabled, **health_item(target_id, state, dead), **attempt_summary(attempts)}
    return {**item, "attention": attention(item)}
