"""JSON shape comparison against EMQX's recorded samples (`shared/emqx/`), for unit and contract tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

SHARED = Path(__file__).resolve().parents[4] / ".." / "shared" / "emqx"

Body = dict[str, Any]


def shared_dir() -> Path:
    """The samples folder; skips the calling test when it is missing."""
    if not SHARED.is_dir():
        pytest.skip(f"EMQX reference samples not found at {SHARED.resolve()} (the shared folder is missing)")
    return SHARED.resolve()


def sample(name: str) -> Body:
    body: Body = json.loads((shared_dir() / "events" / f"{name}.json").read_text())
    return body


def json_type(value: Any) -> str:
    for kind, name in ((bool, "boolean"), (int, "integer"), (float, "number"), (str, "string"),
                       (list, "array"), (dict, "object")):
        if isinstance(value, kind):
            return name
    assert value is None, value
    return "null"


def shape_difference(ours: Body, reference: Body, extra: frozenset[str] = frozenset()) -> list[str]:
    """Every way `ours` differs from `reference` in field set, JSON types and nested keys."""
    problems = [f"missing {k}" for k in sorted(reference.keys() - ours.keys())]
    problems += [f"unexpected {k}" for k in sorted(ours.keys() - reference.keys() - extra)]
    problems += [f"{k}: {json_type(ours[k])} != {json_type(reference[k])}"
                 for k in sorted(ours.keys() & reference.keys()) if json_type(ours[k]) != json_type(reference[k])]
    for key in ("metadata", "flags"):
        if key in reference and isinstance(ours.get(key), dict) and ours[key].keys() != reference[key].keys():
            problems.append(f"{key} keys {sorted(ours[key])} != {sorted(reference[key])}")
    for key in (k for k in reference if k.endswith("_props")):
        if not isinstance(ours.get(key, {}).get("User-Property"), dict):
            problems.append(f"{key} lacks User-Property")
    return problems
