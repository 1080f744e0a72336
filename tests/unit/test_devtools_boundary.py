"""The service package stands without the dev tools (issue 14): nothing in adapter/ imports them (or what only
they need: amqtt, paho-mqtt), except the command line's lazy imports inside its dev commands; the service's
distribution neither ships nor requires them, and the devtools distribution does."""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

from adapter import cli

ROOT = Path(__file__).resolve().parents[2]
DEVTOOLS_ONLY = {"adapter_devtools", "amqtt", "paho"}


def imported_roots(node: ast.AST) -> set[str]:
    if isinstance(node, ast.Import):
        return {alias.name.partition(".")[0] for alias in node.names}
    if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
        return {node.module.partition(".")[0]}
    return set()


def devtools_imports(path: Path) -> list[tuple[int, str, bool]]:
    """(line, module root, inside a function) of every import of a dev-tools-only module in `path`."""
    found: list[tuple[int, str, bool]] = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for root in imported_roots(node) & DEVTOOLS_ONLY:
            found.append((getattr(node, "lineno", 0), root, in_function))
        inner = in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(ast.parse(path.read_text(), str(path)), False)
    return found


def test_the_scan_sees_imports_at_any_depth() -> None:
    assert devtools_imports(ROOT / "adapter" / "cli.py"), "cli.py imports the dev tools lazily: the scan must see it"


def test_nothing_in_the_service_imports_the_dev_tools_but_the_lazy_imports_of_the_command_line() -> None:
    files = sorted((ROOT / "adapter").rglob("*.py"))
    assert len(files) > 20
    wrong = []
    for path in files:
        for line, root, in_function in devtools_imports(path):
            lazy_in_cli = path == ROOT / "adapter" / "cli.py" and root == "adapter_devtools" and in_function
            if not lazy_in_cli:
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {root}")
    assert not wrong, wrong


def test_the_service_package_holds_no_dev_tool() -> None:
    assert not any((ROOT / "adapter" / name).exists() for name in ("devbroker", "simulator", "dev.py"))


def requirement_names(pyproject: Path) -> set[str]:
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    return {dep.split(";")[0].split("[")[0].split("=")[0].split(">")[0].split("<")[0].strip().lower() for dep in deps}


def test_the_service_distribution_neither_requires_nor_ships_the_dev_tools() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert not requirement_names(ROOT / "pyproject.toml") & {"amqtt", "paho-mqtt", "emqx-device-adapter-devtools"}
    include = project["tool"]["setuptools"]["packages"]["find"]["include"]
    assert include == ["adapter", "adapter.*"], "a pattern like adapter* would also take adapter_devtools"


def test_the_devtools_distribution_requires_the_service_and_the_mqtt_libraries() -> None:
    names = requirement_names(ROOT / "devtools" / "pyproject.toml")
    assert {"emqx-device-adapter", "amqtt", "paho-mqtt"} <= names
    assert (ROOT / "devtools" / "adapter_devtools" / "__init__.py").is_file()


def test_a_missing_dev_tools_package_becomes_one_message() -> None:
    needs = r"^adapter dev needs the dev tools .*pip install -e \./devtools"
    with pytest.raises(cli.DevToolsMissing, match=needs), cli.devtools("dev"):
        raise ModuleNotFoundError("No module named 'adapter_devtools'", name="adapter_devtools")
    with pytest.raises(cli.DevToolsMissing, match="no module named 'amqtt'"), cli.devtools("devbroker"):
        raise ModuleNotFoundError("No module named 'amqtt'", name="amqtt")


def test_any_other_missing_module_is_not_hidden_behind_the_dev_tools_message() -> None:
    with pytest.raises(ModuleNotFoundError, match="redis"), cli.devtools("dev"):
        raise ModuleNotFoundError("No module named 'redis'", name="redis")
