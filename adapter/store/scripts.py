"""Every Lua script the service runs, from one place: the source files (each beside the Python that calls it), their
header (the names of their KEYS and ARGV, the Lua they include), their sha, one call type built by those names
(`ScriptCall`), and one way to call a script that Redis may not have loaded (NOSCRIPT loads it and calls again).

Pipelines and the batcher load a script themselves (`pipeline_scripts` / `pipeline_scripts_sync`,
adapter/store/batcher.py); a lone call goes through `call`. On a Redis Cluster redis-py's pipelines cannot load
scripts (no `pipe.scripts`): `pipeline_scripts` loads them on every primary before the pipeline is sent.
"""

from __future__ import annotations

import hashlib
import keyword
import operator
from collections.abc import Callable
from importlib.resources import files
from typing import Any, NamedTuple

import hiredis
import redis
import redis.asyncio.cluster
import redis.cluster

from adapter.store.types import AsyncPipeline, AsyncRedis, SyncRedis

HEADER = ("KEYS", "ARGV", "include")  # the machine-read lines of a script's leading comment block


class ScriptError(ValueError):
    """A script's header is malformed, or a call names fields its header does not (a bug: raised at build time)."""


class Field(NamedTuple):
    """One name of a KEYS or ARGV layout; `many`: `...name`, any number of values (a sequence, spliced)."""

    name: str
    many: bool


class Script:
    """A Lua script of the package: its assembled source (`script`: its includes first), its sha, and the names
    of its KEYS and ARGV as its header declares them. `call(**fields)` builds a `ScriptCall`.

    The header is the leading comment block; three kinds of line in it are read (any other is for people):
    `-- KEYS: a, b, ...c` and `-- ARGV: ...` list the names in order (`...name`: any number of values, given as a
    sequence; a list may go on over the next comment lines while it ends with a comma), and
    `-- include: path, path as name` puts other Lua files of the package first: a library of local functions as it
    is, or (`as name`) a whole script wrapped as `local function name(KEYS, ARGV)`. Includes of includes come first;
    each once. A Redis pipeline can load a Script (it has `sha` and `script`)."""

    __slots__ = ("_build_args", "_build_keys", "_names", "args", "keys", "name", "script", "sha")

    def __init__(self, text: str, name: str = "<inline>") -> None:
        head = header(text)
        self.name = name
        self.keys = _layout(head.get("KEYS", ""), name)
        self.args = _layout(head.get("ARGV", ""), name)
        names = [f.name for f in (*self.keys, *self.args)]
        if len(set(names)) != len(names):
            raise ScriptError(f"{name}: a name is listed twice in {names}")
        self._names = frozenset(names)
        self._build_keys = _builder(self.keys)
        self._build_args = _builder(self.args)
        self.script = "".join(_assembled(head.get("include", ""), set(), name)) + text
        self.sha = hashlib.sha1(self.script.encode()).hexdigest()

    @classmethod
    def load(cls, path: str) -> Script:
        """The script of a Lua file of the package, by its path under adapter/ (e.g. "delivery/outcome.lua")."""
        return cls(source(path), path)

    def call(self, /, **fields: Any) -> ScriptCall:
        """A call with every KEYS and ARGV name of the header given, and only those (ScriptError otherwise)."""
        if fields.keys() != self._names:
            raise ScriptError(f"{self.name}: missing {sorted(self._names - fields.keys())}, "
                              f"not in its header {sorted(fields.keys() - self._names)}")
        return _new(ScriptCall, (self, self._build_keys(fields), self._build_args(fields)))

    def positional(self, *names: str) -> Callable[..., ScriptCall]:
        """A builder of this script's calls from values by position, `names` their order: checked against the
        header once, here (it must be the header's KEYS then ARGV; a `...name` value is a sequence). The hot path:
        the builder is compiled once, so that a call costs what a tuple written by hand does."""
        header_names = tuple(f.name for f in (*self.keys, *self.args))
        if names != header_names:
            raise ScriptError(f"{self.name}: {names} are not its header's {header_names}")

        def words(layout: tuple[Field, ...]) -> str:
            return "".join(f"{'*' if f.many else ''}{f.name}, " for f in layout)
        namespace = {"_new": _new, "_call": ScriptCall, "_script": self}
        exec(f"def build({', '.join(names)}):\n"  # names are identifiers (the header's, checked)
             f"    return _new(_call, (_script, ({words(self.keys)}), ({words(self.args)})))\n", namespace)
        build: Callable[..., ScriptCall] = namespace["build"]  # type: ignore[assignment]
        return build

    def __repr__(self) -> str:
        return f"Script({self.name!r})"


class ScriptCall(NamedTuple):
    """One call of a script: its KEYS and ARGV, in the order its header names them (`Script.call` builds it). A
    tuple: built per event and per delivery."""

    script: Script
    keys: tuple[Any, ...]
    args: tuple[Any, ...]

    def packed(self) -> bytes:
        """The EVALSHA as RESP (packed in C), for the batchers."""
        packed: bytes = hiredis.pack_command(("EVALSHA", self.script.sha, len(self.keys), *self.keys, *self.args))
        return packed

    async def run(self, client: AsyncRedis) -> Any:
        return await call(client, self)

    def named(self) -> dict[str, Any]:
        """The call by name (tests, errors; not the hot path): a `...name` field maps to a tuple of its values."""
        return {**_by_name(self.script.keys, self.keys), **_by_name(self.script.args, self.args)}


_new = tuple.__new__  # a ScriptCall made without NamedTuple's own __new__ (the hot path)


def header(text: str) -> dict[str, str]:
    """The machine-read lines of a script's leading comment block: KEYS, ARGV, include -> their text."""
    out: dict[str, str] = {}
    open_ = ""
    for line in text.splitlines():
        if not line.startswith("--"):
            break
        body = line[2:].strip()
        if open_ and out[open_].endswith(","):
            out[open_] += " " + body
            continue
        open_ = ""
        what, colon, rest = body.partition(":")
        if colon and what in HEADER:
            if what in out:
                raise ScriptError(f"{what} twice in a header")
            out[what] = rest.strip()
            open_ = what
    return out


def _layout(text: str, name: str) -> tuple[Field, ...]:
    fields = []
    for word in filter(None, (w.strip() for w in text.split(","))):
        many = word.startswith("...")
        ident = word[3:] if many else word
        if not ident.isidentifier() or ident.startswith("_") or keyword.iskeyword(ident):
            raise ScriptError(f"{name}: {word!r} is not a name")
        fields.append(Field(ident, many))
    return tuple(fields)


def _builder(layout: tuple[Field, ...]) -> Callable[[dict[str, Any]], tuple[Any, ...]]:
    """The tuple of a layout from the call's fields, worked out once per script (the hot path: a C itemgetter when
    no field is `...many`)."""
    names = [f.name for f in layout]
    if not any(f.many for f in layout):
        if len(names) > 1:
            return operator.itemgetter(*names)  # a tuple with 2 names or more
        return (lambda f: (f[names[0]],)) if names else (lambda f: ())

    def build(fields: dict[str, Any]) -> tuple[Any, ...]:
        out: list[Any] = []
        for f in layout:
            if f.many:
                out.extend(fields[f.name])
            else:
                out.append(fields[f.name])
        return tuple(out)
    return build


def _by_name(layout: tuple[Field, ...], values: tuple[Any, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    fixed = sum(1 for f in layout if not f.many)
    spare, i = len(values) - fixed, 0
    for f in layout:
        if f.many:  # the first `...` field takes what is spare (a layout with two: the second gets nothing)
            out[f.name], i, spare = tuple(values[i:i + spare]), i + spare, 0
        else:
            out[f.name], i = values[i], i + 1
    return out


def _assembled(includes: str, seen: set[str], name: str) -> list[str]:
    """The sources an include line puts first, depth first, each once (`seen`: what is in already)."""
    parts: list[str] = []
    for item in filter(None, (w.strip() for w in includes.split(","))):
        path, _, alias = (w.strip() for w in item.partition(" as "))
        if item in seen:
            continue
        seen.add(item)
        text = source(path)
        parts += _assembled(header(text).get("include", ""), seen, path)
        if alias:
            if not alias.isidentifier():
                raise ScriptError(f"{name}: include {item!r}")
            text = f"local function {alias}(KEYS, ARGV)\n{text}\nend\n"
        parts.append(text if text.endswith("\n") else text + "\n")
    return parts


def source(path: str) -> str:
    """A Lua file of the package, by its path under adapter/ (e.g. "delivery/fanout.lua")."""
    return files("adapter").joinpath(path).read_text(encoding="utf-8")


async def call(client: AsyncRedis, c: ScriptCall) -> Any:
    """EVALSHA, loading the script first when Redis answers NOSCRIPT (restarted, or its cache flushed). On a
    cluster, redis-py routes the EVALSHA by its first key and SCRIPT LOAD goes to every primary, so the node
    that answered NOSCRIPT has it when the call is sent again (tests/integration/test_cluster_store.py)."""
    try:
        return await client.evalsha(c.script.sha, len(c.keys), *c.keys, *c.args)
    except redis.exceptions.NoScriptError:
        await client.script_load(c.script.script)
        return await client.evalsha(c.script.sha, len(c.keys), *c.keys, *c.args)


def queue_call(pipe: Any, c: ScriptCall) -> None:
    """Queue EVALSHA of a call on a pipeline (sync or asyncio, one Redis or cluster). redis-py's cluster pipelines
    refuse their `evalsha` method ("blocked in cluster mode"); the command itself is routed by its first key."""
    pipe.execute_command("EVALSHA", c.script.sha, len(c.keys), *c.keys, *c.args)


async def pipeline_scripts(client: AsyncRedis, pipe: AsyncPipeline, *scripts: Script) -> None:
    """Make sure `scripts` are loaded when `pipe` (of `client`) runs their EVALSHAs. One Redis: the pipeline checks
    and loads them as it executes (SCRIPT EXISTS, SCRIPT LOAD). Cluster: SCRIPT LOAD on every primary now (its
    pipelines cannot; a cache flushed between the two fails the pipeline with NOSCRIPT)."""
    if isinstance(client, redis.asyncio.cluster.RedisCluster):
        for script in scripts:
            await client.script_load(script.script)
        return
    for script in scripts:
        pipe.scripts.add(script)  # type: ignore[union-attr,arg-type]  # a plain Pipeline; it needs .sha and .script


def pipeline_scripts_sync(client: SyncRedis, pipe: redis.client.Pipeline | redis.cluster.ClusterPipeline,
                          *scripts: Script) -> None:
    """`pipeline_scripts` for the sync clients (RQ jobs)."""
    if isinstance(client, redis.cluster.RedisCluster):
        for script in scripts:
            client.script_load(script.script)
        return
    for script in scripts:
        pipe.scripts.add(script)  # type: ignore[union-attr,arg-type]
