"""Every Lua script of the package is a `Script` whose header names its KEYS and ARGV (adapter/store/scripts.py):
each name is used by the script, the script uses no KEYS[n]/ARGV[n] beyond them, a call names exactly them, and
the shared Lua is included by the header (`-- include:`), never put together by hand in Python."""

from __future__ import annotations

import hashlib
import importlib
import re
from pathlib import Path

import pytest

from adapter.store import scripts
from adapter.store.scripts import Field, Script, ScriptError

ROOT = Path(scripts.__file__).resolve().parents[1]
MODULES = ["adapter.auth.throttle", "adapter.broker.credentials", "adapter.commands.calls",
           "adapter.delivery.breaker", "adapter.delivery.dead_letters", "adapter.delivery.leases",
           "adapter.delivery.model", "adapter.delivery.serve", "adapter.devices.presence_calls",
           "adapter.devices.retention", "adapter.devices.calls", "adapter.rollouts.calls", "adapter.targets.forwarding"]


def _all() -> dict[str, Script]:
    found: dict[str, Script] = {}
    for name in MODULES:
        for attr, value in vars(importlib.import_module(name)).items():
            if isinstance(value, Script):
                found.setdefault(value.name if value.name != "<inline>" else f"{name}.{attr}", value)
    return found


SCRIPTS = _all()
# names a script does not read itself, and why (each is still a place in the layout the callers fill)
UNREAD = {("devices/presence.lua", "clientid"): "device.lua passes its ARGV on whole, and reads ARGV 2 itself"}


def _body(source: str) -> str:
    """The Lua without its comments."""
    return re.sub(r"--[^\n]*", "", source)


def _used(body: str, table: str, layout: tuple[Field, ...]) -> list[str]:
    """The names of `layout` the body never reads: a name before the first `...` field is read as TABLE[i]; one
    after the last as TABLE[#TABLE - j]; a `...` field by an index from its place on, or by #TABLE."""
    unused = []
    first_many = next((i for i, f in enumerate(layout) if f.many), len(layout))
    for i, f in enumerate(layout):
        if i < first_many:  # TABLE[i], or TABLE[k + i] in a script of many groups to a call (outcome.lua)
            ok = f"{table}[{i + 1}]" in body or re.search(rf"{table}\[[a-z]\w* \+ {i + 1}\]", body) is not None
        elif f.many:
            ok = f"#{table}" in body or re.search(rf"{table}\[({i + 1}|\w+ \+ \d+|i)\]", body) is not None
        else:
            back = len(layout) - 1 - i
            ok = f"{table}[#{table}{f' - {back}' if back else ''}]" in body
        if not ok:
            unused.append(f.name)
    return unused


def test_every_script_is_found() -> None:
    defined = {p.relative_to(ROOT).as_posix() for p in ROOT.rglob("*.py")
               if re.search(r"\bScript(\.load)?\(", p.read_text()) and p.name != "scripts.py"}
    assert defined == {m.replace(".", "/").removeprefix("adapter/") + ".py" for m in MODULES}
    assert len(SCRIPTS) == 21


def test_every_lua_file_is_a_script_or_included() -> None:
    included = {item.partition(" as ")[0].strip() for s in SCRIPTS.values()
                for text in [s.script] for line in text.splitlines() if line.startswith("-- include:")
                for item in line.removeprefix("-- include:").split(",")}
    for path in ROOT.rglob("*.lua"):
        name = path.relative_to(ROOT).as_posix()
        head = scripts.header(path.read_text())
        if "KEYS" in head or "ARGV" in head:
            assert name in SCRIPTS or name in included, name
        else:
            assert name in included, f"{name}: no header, and nothing includes it"


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_every_name_of_the_header_is_used(name: str) -> None:
    script = SCRIPTS[name]
    body = _body(script.script)
    unused = _used(body, "KEYS", script.keys) + _used(body, "ARGV", script.args)
    assert [n for n in unused if (name, n) not in UNREAD] == [], name


def _beyond(script: Script) -> list[str]:
    """KEYS[n]/ARGV[n] a script reads beyond its header (a layout with a `...` field takes any number)."""
    body, out = _body(script.script), []
    for table, layout in (("KEYS", script.keys), ("ARGV", script.args)):
        if not any(f.many for f in layout):
            read = re.findall(rf"\b{table}\[(\d+)\]", body) + re.findall(rf"\b{table}\[[a-z]\w* \+ (\d+)\]", body)
            out += [f"{table}[{n}]" for n in sorted({int(n) for n in read})
                    if not 1 <= n <= len(layout)]
    return out


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_no_script_reads_beyond_its_header(name: str) -> None:
    assert _beyond(SCRIPTS[name]) == [], name


def test_the_checks_catch_a_name_never_read_and_a_read_beyond_the_header() -> None:
    script = Script("-- KEYS: a, b\n-- ARGV: x, ...rest, last\nreturn {KEYS[1], KEYS[3], ARGV[1], ARGV[#ARGV - 1]}")
    assert _used(_body(script.script), "KEYS", script.keys) == ["b"]
    assert _used(_body(script.script), "ARGV", script.args) == ["last"]  # `rest`: counted by #ARGV
    assert _beyond(script) == ["KEYS[3]"]
    grouped = Script("-- KEYS: a, b, c\n-- ARGV: x\nlocal k = 0\nreturn {KEYS[k + 1], KEYS[k + 3], KEYS[k + 4]}")
    assert _used(_body(grouped.script), "KEYS", grouped.keys) == ["b"]  # groups of KEYS at an offset (outcome.lua)
    assert _beyond(grouped) == ["KEYS[4]"]


def test_a_call_names_exactly_the_header() -> None:
    script = Script("-- KEYS: a, ...more\n-- ARGV: x,\n--   y, ...rest\n"
                    "return {KEYS[1], ARGV[1], ARGV[2], #KEYS, #ARGV}")
    call = script.call(a="k", more=("k2", "k3"), x=1, y=2, rest=())
    assert call.keys == ("k", "k2", "k3") and call.args == (1, 2)
    assert call.named() == {"a": "k", "more": ("k2", "k3"), "x": 1, "y": 2, "rest": ()}
    with pytest.raises(ScriptError, match=r"not in its header \['z'\]"):
        script.call(a="k", more=(), x=1, y=2, rest=(), z=3)
    with pytest.raises(ScriptError, match=r"missing \['y'\]"):
        script.call(a="k", more=(), x=1, rest=())
    fixed = Script("-- KEYS: k\n-- ARGV: one, two\nreturn 1")
    assert fixed.call(k="k", one=1, two=2)[1:] == (("k",), (1, 2))


def test_a_bad_header_is_refused() -> None:
    with pytest.raises(ScriptError):
        Script("-- KEYS: a, a\nreturn 1")
    with pytest.raises(ScriptError):
        Script("-- KEYS: a\n-- ARGV: a\nreturn 1")
    with pytest.raises(ScriptError):
        Script("-- ARGV: not a name\nreturn 1")


def test_includes_are_assembled_once_and_the_sha_covers_them() -> None:
    uplink, guarded = SCRIPTS["devices/uplink.lua"], SCRIPTS["devices/guard.lua"]
    for script in (uplink, guarded, SCRIPTS["delivery/outcome.lua"], SCRIPTS["targets/forwarded.lua"]):
        assert script.script.count("local function add_entry(") == 1
        assert script.sha == hashlib.sha1(script.script.encode()).hexdigest()
    for helper in ("local function fanout(", "local function wake_commands(", "local function forward("):
        assert uplink.script.count(helper) == 1, helper
    assert guarded.script.count("local function presence(KEYS, ARGV)") == 1
    assert guarded.script.count("local function device(KEYS, ARGV)") == 1
    assert guarded.script.index("local function presence(") < guarded.script.index("local function device(")
    assert SCRIPTS["commands/lifecycle.lua"].script.count("local function wake_commands(") == 1


def test_no_python_module_puts_lua_together() -> None:
    """Lua comes from a file through `Script.load`, or is one inline Script: `source()` is the loader's own."""
    for path in ROOT.rglob("*.py"):
        if path.name != "scripts.py":
            assert not re.search(r"\bsource\(", path.read_text()), path


def test_a_positional_builder_is_checked_against_the_header_once() -> None:
    script = Script("-- KEYS: a, ...more\n-- ARGV: x, ...rest, last\nreturn {KEYS[1], ARGV[1], #ARGV, ARGV[#ARGV]}")
    build = script.positional("a", "more", "x", "rest", "last")
    assert build("k", ["k2"], 1, (2, 3), 4) == script.call(a="k", more=["k2"], x=1, rest=(2, 3), last=4)
    assert build("k", (), 1, (), 4)[1:] == (("k",), (1, 4))
    with pytest.raises(ScriptError, match="are not its header"):
        script.positional("a", "more", "rest", "x", "last")
    with pytest.raises(ScriptError, match="are not its header"):
        script.positional("a", "more", "x", "rest")
    with pytest.raises(TypeError):
        build("k", (), 1, ())
