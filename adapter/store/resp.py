"""Redis commands packed as RESP bytes, for the hot path: the parts that never change (the command, the
script's sha, the fixed keys) are encoded once; a call encodes only its own keys and arguments."""

from __future__ import annotations

from collections.abc import Sequence

from adapter.store.scripts import Script

Arg = str | bytes | int


_encoded: dict[str, bytes] = {}  # strings seen before (prefixes, modes, keys of busy devices)


def bulk(value: Arg) -> bytes:
    if type(value) is int:
        digits = b"%d" % value
        return b"$%d\r\n%s\r\n" % (len(digits), digits)
    if isinstance(value, str):
        hit = _encoded.get(value)
        if hit is not None:
            return hit
        data = value.encode()
        out = b"$%d\r\n%s\r\n" % (len(data), data)
        if len(data) <= 128:
            if len(_encoded) >= 50_000:
                _encoded.clear()
            _encoded[value] = out
        return out
    data = value if isinstance(value, bytes) else str(value).encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


def pack(*args: Arg) -> bytes:
    return b"*%d\r\n" % len(args) + b"".join(bulk(a) for a in args)


def unpack(command: bytes, n: int | None = None) -> list[bytes]:
    """The words of a packed command (the first `n` of them, or all): what `pack` made, read back."""
    out: list[bytes] = []
    pos = command.index(b"\r\n") + 2
    while (n is None or len(out) < n) and pos < len(command):
        end = command.index(b"\r\n", pos)
        start = end + 2
        length = int(command[pos + 1:end])
        out.append(command[start:start + length])
        pos = start + length + 2
    return out


class KeyTemplate:
    """One command's words with only its key changing (`HMGET <key> f1 f2 …` for every hash of a page): the
    words before and after the key are encoded once, a call encodes only the key (~7x less work than `pack`)."""

    def __init__(self, head: Sequence[Arg], tail: Sequence[Arg]) -> None:
        self.head = b"*%d\r\n" % (len(head) + 1 + len(tail)) + b"".join(bulk(a) for a in head)
        self.tail = b"".join(bulk(a) for a in tail)

    def pack(self, key: str) -> bytes:
        data = key.encode()
        return b"%s$%d\r\n%s\r\n%s" % (self.head, len(data), data, self.tail)


class PreparedCall:
    """EVALSHA of one script with its fixed keys first and the call's own keys after them."""

    def __init__(self, script: Script, fixed_keys: Sequence[str], own_keys: int,
                 tail: Sequence[Arg] = ()) -> None:
        self.script = script
        self.own_keys = own_keys
        self.fixed = len(fixed_keys) + len(tail)
        numkeys = len(fixed_keys) + own_keys
        head: list[Arg] = ["EVALSHA", script.sha, numkeys, *fixed_keys]
        self.head = b"".join(bulk(a) for a in head)
        self.tail = b"".join(bulk(a) for a in tail)  # constant ARGV that end every call

    def pack(self, keys: Sequence[Arg], argv: Sequence[Arg]) -> bytes:
        assert len(keys) == self.own_keys
        count = 3 + self.fixed + len(keys) + len(argv)
        parts = [b"*%d\r\n" % count, self.head]
        parts += [bulk(k) for k in keys]
        parts += [bulk(a) for a in argv]
        parts.append(self.tail)
        return b"".join(parts)
