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
