"""MQTT topic names and topic filters: validation, the reference matcher and a fast index.

Rules follow MQTT 3.1.1 §4.7 and MQTT 5 §4.7:
- names and filters are non-empty UTF-8 strings of at most 65535 bytes without U+0000;
- `+` matches exactly one level (possibly empty) and must be a whole level;
- `#` matches the parent level and any number of child levels and must be the whole last level;
- a filter starting with a wildcard does not match a topic starting with `$` (e.g. `$SYS/...`).

`matches` is the plain reference. `TopicIndex` answers "which keys have a filter matching this
topic" with one dict lookup for exact filters plus a walk of a small trie holding only the
wildcard filters, so its cost depends on the number of wildcard filters, not on all of them.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Generic, TypeVar

from adapter.errors import AppError

__all__ = ["MAX_TOPIC_BYTES", "TopicIndex", "has_wildcard", "matches", "validate_filter", "validate_name"]

MAX_TOPIC_BYTES = 65535

K = TypeVar("K", bound=Hashable)


def _bad(what: str) -> AppError:
    return AppError("invalid_params", f"topic: {what}")


def _check_string(s: object) -> str:
    if not isinstance(s, str):
        raise _bad("must be a string")
    if not s:
        raise _bad("must not be empty")
    if "\x00" in s:
        raise _bad("must not contain U+0000")
    try:
        size = len(s.encode("utf-8"))
    except UnicodeEncodeError:
        raise _bad("must be valid UTF-8 (no lone surrogates)") from None
    if size > MAX_TOPIC_BYTES:
        raise _bad(f"longer than {MAX_TOPIC_BYTES} UTF-8 bytes")
    return s


def validate_filter(s: str) -> str:
    """Return `s` if it is a valid topic filter, else raise AppError("invalid_params")."""
    _check_string(s)
    if "+" not in s and "#" not in s:
        return s
    levels = s.split("/")
    last = len(levels) - 1
    for i, level in enumerate(levels):
        if "+" in level and level != "+":
            raise _bad("'+' must occupy a whole level")
        if "#" in level and (level != "#" or i != last):
            raise _bad("'#' must be the whole last level")
    return s


def validate_name(s: str) -> str:
    """Return `s` if it is a valid topic name (no wildcards), else raise AppError("invalid_params")."""
    _check_string(s)
    if "+" in s or "#" in s:
        raise _bad("a topic name must not contain wildcards ('+' or '#')")
    return s


def has_wildcard(topic_filter: str) -> bool:
    """True if the filter uses `+` or `#` (it belongs in the trie, not the exact dict)."""
    return "+" in topic_filter or "#" in topic_filter


def matches(topic_filter: str, topic: str) -> bool:
    """True if the (valid) filter matches the (valid) topic name."""
    if topic.startswith("$") and topic_filter[:1] in ("+", "#"):
        return False
    f_levels = topic_filter.split("/")
    t_levels = topic.split("/")
    for i, f in enumerate(f_levels):
        if f == "#":
            return True
        if i >= len(t_levels):
            return False
        if f != "+" and f != t_levels[i]:
            return False
    return len(f_levels) == len(t_levels)


class _Node(Generic[K]):
    """One trie level: literal children, the `+` child, keys ending here and keys of `.../#` here."""

    __slots__ = ("children", "hash_keys", "keys", "plus")

    def __init__(self) -> None:
        self.children: dict[str, _Node[K]] = {}
        self.plus: _Node[K] | None = None
        self.keys: set[K] = set()
        self.hash_keys: set[K] = set()

    def is_empty(self) -> bool:
        return not (self.children or self.plus or self.keys or self.hash_keys)

    def child(self, level: str) -> _Node[K] | None:
        return self.plus if level == "+" else self.children.get(level)

    def make_child(self, level: str) -> _Node[K]:
        node = self.child(level)
        if node is None:
            node = _Node()
            if level == "+":
                self.plus = node
            else:
                self.children[level] = node
        return node

    def drop_child(self, level: str) -> None:
        if level == "+":
            self.plus = None
        else:
            del self.children[level]


_EMPTY: frozenset = frozenset()


class TopicIndex(Generic[K]):
    """A set of (filter, key) pairs answering `match(topic)` -> keys whose filter matches.

    Filters without wildcards live in a dict (one lookup per message); the rest live in a trie.
    `add` validates the filter; `match` trusts the topic to be a valid name (it comes from a broker).
    """

    __slots__ = ("_exact", "_root", "_size", "_wild")

    def __init__(self) -> None:
        self._exact: dict[str, frozenset[K]] = {}
        self._root: _Node[K] = _Node()
        self._size = 0
        self._wild = 0

    @classmethod
    def build(cls, pairs: Iterable[tuple[str, K]]) -> TopicIndex[K]:
        index: TopicIndex[K] = cls()
        exact: dict[str, set[K]] = {}
        for topic_filter, key in pairs:
            if has_wildcard(validate_filter(topic_filter)):
                index.add(topic_filter, key)
            else:
                exact.setdefault(topic_filter, set()).add(key)
        for topic_filter, keys in exact.items():
            index._exact[topic_filter] = frozenset(keys)
            index._size += len(keys)
        return index

    def __len__(self) -> int:
        """The number of distinct (filter, key) pairs."""
        return self._size

    def add(self, topic_filter: str, key: K) -> None:
        """Add the pair; adding a pair already present changes nothing."""
        validate_filter(topic_filter)
        if has_wildcard(topic_filter):
            added = self._add_wild(topic_filter, key)
            self._wild += added
        else:
            keys = self._exact.get(topic_filter, _EMPTY)
            added = key not in keys
            if added:
                self._exact[topic_filter] = keys | {key}
        self._size += added

    def remove(self, topic_filter: str, key: K) -> None:
        """Remove the pair; KeyError if it is not present."""
        if not self.discard(topic_filter, key):
            raise KeyError((topic_filter, key))

    def discard(self, topic_filter: str, key: K) -> bool:
        """Remove the pair if present; return whether it was."""
        if has_wildcard(topic_filter):
            removed = self._discard_wild(topic_filter, key)
            self._wild -= removed
        else:
            removed = self._discard_exact(topic_filter, key)
        self._size -= removed
        return removed

    def match(self, topic: str) -> frozenset[K]:
        """The keys of every filter matching the topic name."""
        exact = self._exact.get(topic, _EMPTY)
        if not self._wild:
            return exact
        found = self._walk(topic)
        return exact | found if found else exact

    def _add_wild(self, topic_filter: str, key: K) -> bool:
        levels = topic_filter.split("/")
        node = self._root
        for level in levels[:-1]:
            node = node.make_child(level)
        bucket = node.hash_keys if levels[-1] == "#" else node.make_child(levels[-1]).keys
        if key in bucket:
            return False
        bucket.add(key)
        return True

    def _discard_wild(self, topic_filter: str, key: K) -> bool:
        levels = topic_filter.split("/")
        hashed = levels[-1] == "#"
        path = levels[:-1] if hashed else levels
        nodes = [self._root]
        for level in path:
            nxt = nodes[-1].child(level)
            if nxt is None:
                return False
            nodes.append(nxt)
        bucket = nodes[-1].hash_keys if hashed else nodes[-1].keys
        if key not in bucket:
            return False
        bucket.discard(key)
        self._prune(nodes, path)
        return True

    @staticmethod
    def _prune(nodes: list[_Node[K]], path: list[str]) -> None:
        for i in range(len(path), 0, -1):
            if not nodes[i].is_empty():
                return
            nodes[i - 1].drop_child(path[i - 1])

    def _discard_exact(self, topic_filter: str, key: K) -> bool:
        keys = self._exact.get(topic_filter, _EMPTY)
        if key not in keys:
            return False
        rest = keys - {key}
        if rest:
            self._exact[topic_filter] = rest
        else:
            del self._exact[topic_filter]
        return True

    def _walk(self, topic: str) -> set[K]:
        """Keys of the wildcard filters matching the topic; the root skips wildcards for `$` topics."""
        levels = topic.split("/")
        depth = len(levels)
        found: set[K] = set()
        root = self._root
        stack: list[tuple[_Node[K], int]] = []
        first = root.children.get(levels[0])
        if first is not None:
            stack.append((first, 1))
        if not topic.startswith("$"):
            found.update(root.hash_keys)
            if root.plus is not None:
                stack.append((root.plus, 1))
        while stack:
            node, i = stack.pop()
            if node.hash_keys:
                found.update(node.hash_keys)
            if i == depth:
                if node.keys:
                    found.update(node.keys)
                continue
            nxt = node.children.get(levels[i])
            if nxt is not None:
                stack.append((nxt, i + 1))
            if node.plus is not None:
                stack.append((node.plus, i + 1))
        return found
