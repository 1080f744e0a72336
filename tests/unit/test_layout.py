"""The tree answers "where is …?" in one guess: docs/design.md §0 names only files that exist, and names every
package; every package says in one line what it is (issue 14)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ADAPTER = ROOT / "adapter"
PACKAGES = sorted(p.parent.name for p in ADAPTER.glob("*/__init__.py"))


def section_0() -> str:
    text = (ROOT / "docs" / "design.md").read_text()
    return text[text.index("## 0."):text.index("## 1.")]


def test_every_package_has_a_one_line_docstring() -> None:
    for pkg in PACKAGES:
        doc = ast.get_docstring(ast.parse((ADAPTER / pkg / "__init__.py").read_text()))
        assert doc and "\n" not in doc and "see docs/design.md" not in doc, (pkg, doc)


def test_where_things_are_names_every_package() -> None:
    table = section_0()
    assert not [pkg for pkg in PACKAGES if f"adapter/{pkg}/" not in table]


def test_where_things_are_names_only_files_that_exist() -> None:
    missing = []
    for row in section_0().splitlines():
        if not row.startswith("|"):
            continue
        package = re.search(r"`adapter/(\w+)/`", row)
        for name in re.findall(r"`([\w/]+\.(?:py|lua))`", row):
            candidates = [ADAPTER / name, ROOT / name, *([ADAPTER / package.group(1) / name] if package else [])]
            if not any(c.is_file() for c in candidates):
                missing.append(name)
        for folder in re.findall(r"`((?:adapter|devtools)/[\w/]*)`", row):
            if not (ROOT / folder).exists():
                missing.append(folder)
    assert not missing


def test_the_three_questions() -> None:
    table = section_0()
    rows = {row.split("|")[1].strip(): row for row in table.splitlines() if row.startswith("| where")}
    assert "adapter/delivery/" in rows["where are callbacks retried?"]
    assert "adapter/devices/presence.py" in rows["where is presence ordering decided?"]
    assert "adapter/commands/" in rows["where is the commands state machine?"]


# --- the import graph (issue 22): layers flow one way -------------------------------------------------------------

# bottom to top; a module may import from its own layer and the layers below it, never above. The domain packages
# are layers of their own, in the order they use each other.
LAYERS: list[set[str]] = [
    {"adapter", "collector", "errors", "jsonlimits", "settings"},  # primitives: the version, the one error type, the
    # settings, the garbage collector's schedule
    {"protocol"},  # what EMQX and the devices say: events, the agent's topics and payloads, topic filters
    {"store"},  # Redis: keys, connections, scripts, batchers, faults, counters
    {"auth"},  # users, tokens, throttles
    {"http"},  # endpoints, validation, the envelope, OpenAPI, the server
    {"jobs"},  # the RQ machinery: periodic chains, progress, shutdown, the worker class, the scheduler
    {"broker"},  # EMQX: its REST client, the HTTP auth/authz it asks, its config, MQTT credentials
    {"delivery"},  # the pump, signing, retries, dead letters
    {"targets"},  # callbacks and routes: records, health, the route table, forwarding
    {"devices"},  # devices and peripherals: presence, reports, pages, reconciliation, retention
    {"stats"},  # the per-minute series
    {"commands"},  # remote commands: rules, records, the runner, bulk creation
    {"rollouts"},  # a command over a selection of devices at a rate, driven by RQ jobs
    {"ingest"},  # what each EMQX event changes
    {"api", "console"},  # the handlers and the console
    {"migrate"},  # `adapter store migrate`: a store moved between key layouts (knows commands' ids, the engine)
    {"app", "cli", "worker", "__main__"},  # entry points
]
# RQ finds its jobs by their dotted names ("adapter.jobs.entry.reconcile"), stored in jobs already queued, so the
# job entry points keep that module path; they use the domain, so they count as an entry point
ENTRY_MODULES = {"adapter.jobs.entry": len(LAYERS) - 1}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the adapter modules it imports (at the top or inside a function: a lazy import is an import)."""
    modules = {_module_name(p): p for p in ADAPTER.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                found = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    here = name.split(".") if is_package else name.split(".")[:-1]
                    base = ".".join(here[:len(here) - node.level + 1] + ([node.module] if node.module else []))
                found = [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for target in found:
                while target not in modules and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in modules and target != name:
                    targets.add(target)
        graph[name] = targets
    return graph


def package_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def layer_of(module: str) -> int:
    if module in ENTRY_MODULES:
        return ENTRY_MODULES[module]
    return next(i for i, layer in enumerate(LAYERS) if package_of(module) in layer)


def test_every_package_and_top_module_has_a_layer() -> None:
    assert not [m for m in import_graph() if not any(package_of(m) in layer for layer in LAYERS)]


def test_no_import_goes_up_a_layer() -> None:
    upward = sorted(f"{a} -> {b}" for a, targets in import_graph().items() for b in targets
                    if layer_of(b) > layer_of(a))
    assert not upward


def test_no_module_import_cycle() -> None:
    graph = import_graph()
    state: dict[str, int] = {}  # 1 on the path, 2 done
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append([*path[path.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles


def test_no_module_over_400_lines() -> None:
    """A module a newcomer reads in one sitting (issue 22): past 400 lines it holds more than one concept."""
    long = {str(p.relative_to(ROOT)): n for p in [*ADAPTER.rglob("*.py"), *(ROOT / "devtools").rglob("*.py")]
            if (n := len(p.read_text().splitlines())) > 400}
    assert not long


def test_no_test_names_a_redis_database_of_its_own() -> None:
    """The test passes run side by side, each on its own database of the one Redis (scripts/test-passes); a test
    that names a database number writes (and flushes) another pass's. One did: test_presence_lua.py on database 13,
    the second half's, whose tests then failed at random in CI."""
    literal = re.compile(r"^\s*\w*DB\w*\s*=\s*\d+\s*$|(?:store_client|async_store_client|redis_url|store_env)\("
                         r"[^)]*?\b\d+\s*[,)]", re.M)
    found = [f"{path.relative_to(ROOT)}: {m.group(0).strip()}"
             for path in sorted((ROOT / "tests").rglob("*.py")) if path.name != "conftest.py"
             for m in literal.finditer(path.read_text())]
    assert not found, found
