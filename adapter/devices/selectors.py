"""Device selectors (docs/rollouts.md "Selectors"): which devices a rollout (or a dry run) means, as a pure value.

A selector is a JSON object; every field it gives must hold (AND):
- `sns`: a list of serial numbers;
- `tag`: devices carrying this tag (`PUT /monitor/devices/tags`);
- `snPrefix`: devices whose sn starts with this;
- `online`: true (online now) or false (offline now);
- `version`: a component of the device's last `versions` report against a version, e.g. `"upgrade.cmd < 1.4.0"`
  (operators `<`, `<=`, `=`, `!=`, `>=`, `>`); a device without that component does not match;
- `all`: true, to mean every device (a selector must say something: `{}` is refused).
Only devices the service knows (a device record) match. Parsing raises `invalid_params` naming the field.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from adapter.errors import invalid

MAX_SNS = 100_000
MAX_SN = 128
TAG = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_VERSION = re.compile(r"\s*([^\s<>=!]{1,64})\s*(<=|>=|!=|==|=|<|>)\s*([0-9A-Za-z_.\-+]{1,64})\s*")
_OPS: dict[str, Callable[[Any, Any], bool]] = {"<": operator.lt, "<=": operator.le, "=": operator.eq,
                                                "==": operator.eq, "!=": operator.ne, ">=": operator.ge,
                                                ">": operator.gt}

SCHEMA: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "minProperties": 1,
    "description": "every field given must hold; `{}` is refused (`all: true` means every device)",
    "properties": {
        "sns": {"type": "array", "minItems": 1, "maxItems": MAX_SNS,
                "items": {"type": "string", "minLength": 1, "maxLength": MAX_SN}},
        "tag": {"type": "string", "pattern": "^[A-Za-z0-9_.\\-]{1,64}$"},
        "snPrefix": {"type": "string", "minLength": 1, "maxLength": MAX_SN},
        "online": {"type": "boolean"},
        "version": {"type": "string", "maxLength": 200, "description": 'e.g. "upgrade.cmd < 1.4.0"'},
        "all": {"type": "boolean", "const": True},
    },
}


def version_key(text: str) -> tuple[tuple[int, str], ...]:
    """A version as comparable parts: "1.10.0 20181114-173644" -> ((1,''), (10,''), (0,'')); the build stamp after
    a space is left out; a part that is not a number compares after every number, by its text."""
    head = text.strip().split(" ", 1)[0]
    parts = re.split(r"[.\-+_]", head) if head else []
    return tuple((int(p), "") if p.isdigit() else (1 << 62, p) for p in parts)


@dataclass(frozen=True)
class VersionRule:
    name: str
    op: str
    value: str

    def holds(self, versions_json: str | None) -> bool:
        """Against a device's stored `versions` report (`{"d": [{"n", "v"}, …], …}` as JSON)."""
        have = component_version(versions_json, self.name)
        return have is not None and _OPS[self.op](version_key(have), version_key(self.value))

    def text(self) -> str:
        return f"{self.name} {self.op} {self.value}"


def component_version(versions_json: str | None, name: str) -> str | None:
    if not versions_json:
        return None
    try:
        doc = orjson.loads(versions_json)
    except orjson.JSONDecodeError:
        return None
    items = doc.get("d") if isinstance(doc, dict) else None
    for item in items if isinstance(items, list) else ():
        if isinstance(item, dict) and item.get("n") == name and isinstance(item.get("v"), str):
            return str(item["v"])
    return None


@dataclass(frozen=True)
class Selector:
    sns: tuple[str, ...] | None = None  # sorted, unique
    tag: str | None = None
    sn_prefix: str | None = None
    online: bool | None = None
    version: VersionRule | None = None

    def matches(self, sn: str, record: Mapping[str, str | None], has_tag: bool | None = None) -> bool:
        """Whether device `sn` with client hash fields `record` (device, online, versions) is selected; `has_tag`
        whether it carries `tag`, needed only when the walk's source is not the tag's own index (else None)."""
        if record.get("device") != "1":
            return False
        if self.sn_prefix is not None and not sn.startswith(self.sn_prefix):
            return False
        if self.online is not None and (record.get("online") == "1") != self.online:
            return False
        if self.tag is not None and has_tag is False:
            return False
        return self.version is None or self.version.holds(record.get("versions"))

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.sns is not None:
            out["sns"] = list(self.sns)
        if self.tag is not None:
            out["tag"] = self.tag
        if self.sn_prefix is not None:
            out["snPrefix"] = self.sn_prefix
        if self.online is not None:
            out["online"] = self.online
        if self.version is not None:
            out["version"] = self.version.text()
        return out or {"all": True}


def parse_version(text: str) -> VersionRule:
    m = _VERSION.fullmatch(text)
    if m is None:
        raise invalid('selector.version: must be "<component> <op> <version>", op one of < <= = != >= >')
    return VersionRule(m.group(1), m.group(2), m.group(3))


def parse(doc: Any) -> Selector:
    """A selector from its JSON (checked against SCHEMA already, or not: every mistake is a 400 here too)."""
    if not isinstance(doc, dict) or not doc:
        raise invalid("selector: must be an object with at least one field")
    unknown = set(doc) - set(SCHEMA["properties"])
    if unknown:
        # the names are the caller's (part of the value): not echoed; the known ones are listed instead
        raise invalid(f"selector: has a field that is not one of {', '.join(sorted(SCHEMA['properties']))}")
    if "all" in doc and doc["all"] is not True:
        raise invalid("selector.all: must be true")
    sns = doc.get("sns")
    if sns is not None and (not isinstance(sns, list) or not sns or len(sns) > MAX_SNS
                            or not all(isinstance(s, str) and 0 < len(s) <= MAX_SN for s in sns)):
        raise invalid(f"selector.sns: must be a list of 1 to {MAX_SNS} sns")
    tag = doc.get("tag")
    if tag is not None and not (isinstance(tag, str) and TAG.fullmatch(tag)):
        raise invalid("selector.tag: must be 1 to 64 letters, digits, '_', '.', '-'")
    prefix = doc.get("snPrefix")
    if prefix is not None and not (isinstance(prefix, str) and 0 < len(prefix) <= MAX_SN):
        raise invalid(f"selector.snPrefix: must be 1 to {MAX_SN} characters")
    online = doc.get("online")
    if online is not None and not isinstance(online, bool):
        raise invalid("selector.online: must be true or false")
    version = doc.get("version")
    if version is not None and not isinstance(version, str):
        raise invalid("selector.version: must be a string")
    return Selector(sns=tuple(sorted(set(sns))) if sns is not None else None, tag=tag, sn_prefix=prefix,
                    online=online, version=parse_version(version) if version is not None else None)
