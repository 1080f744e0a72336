"""How deep the JSON the service takes in may nest, checked where it is parsed.

orjson reads up to 1,024 levels but writes at most 254, and what the service stores it shows again wrapped in
more levels (the envelope, a command's `d`, a report's string). So a device payload or an API body nested deeper
than MAX_DEPTH is refused when it is parsed (a report is rejected `too_deep`, an API body is a 400), never
half-written and then refused by the serializer (a 500, and for EMQX a dropped message).
"""

from __future__ import annotations

from typing import Any

MAX_DEPTH = 64  # levels of arrays and objects; device reports nest 2 to 4, the seed's command bodies 1 to 3


def nests_deeper(value: Any, limit: int = MAX_DEPTH, raw: bytes | str | None = None) -> bool:
    """True when `value` (parsed JSON) has more than `limit` levels of arrays and objects (`{}` and `[]` are one
    level, a scalar none). Iterative: a value nested 1,000 deep costs no Python recursion. With `raw`, the text
    `value` was parsed from, a text with no more than `limit` brackets that open is answered without the walk
    (each level opens one; brackets inside strings only make that count larger)."""
    if raw is not None and (raw.count("{") + raw.count("[") if isinstance(raw, str)
                            else raw.count(b"{") + raw.count(b"[")) <= limit:
        return False
    todo: list[tuple[Any, int]] = [(value, 0)]
    while todo:
        item, level = todo.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if level + 1 > limit:
            return True
        todo.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return False
