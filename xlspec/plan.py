"""The plan: the compiled artifact, committed next to the spec.

Canonical JSON (sorted keys, 2-space indent, UTF-8, floats in Python's shortest round-trip
form, which is the same on every platform), so equal plans are equal bytes and ``git diff``
of two plans reads cell by cell.  Content hashes are sha256 over canonical JSON, never
Python's ``hash()``.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from typing import Any

PLAN_FORMAT = "xlspec-plan/1"


# The header reads first and the cells last; every other object has its keys sorted.
TOP_LEVEL_ORDER = ("format", "experiment", "title", "versions", "spec", "datasets", "models", "studies", "reports", "totals", "cells")


def canonical(obj: Any) -> Any:
    """Sort keys and normalise numbers, so 1.0 and 1 hash alike and no NaN reaches a plan."""
    if isinstance(obj, float):
        if math.isnan(obj) or math.isinf(obj):
            raise ValueError("non-finite number in a plan")
        return int(obj) if obj.is_integer() else obj
    if isinstance(obj, dict):
        return {str(k): canonical(obj[k]) for k in sorted(obj, key=str)}
    if isinstance(obj, (list, tuple)):
        return [canonical(v) for v in obj]
    return obj


def digest(obj: Any) -> str:
    data = json.dumps(canonical(obj), separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(data.encode("utf-8")).hexdigest()


def dumps(plan: dict) -> str:
    body = canonical(plan)
    ordered = {k: body[k] for k in TOP_LEVEL_ORDER if k in body} | {k: v for k, v in body.items() if k not in TOP_LEVEL_ORDER}
    return json.dumps(ordered, indent=2, ensure_ascii=False) + "\n"


def write(plan: dict, path: str) -> None:
    """Write atomically: a reader never sees half a plan."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write(dumps(plan))
    os.replace(tmp, path)


def load(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        plan = json.load(f)
    if plan.get("format") != PLAN_FORMAT:
        raise ValueError(f"{path}: not an xlspec plan (format {plan.get('format')!r}, expected {PLAN_FORMAT!r})")
    return plan


def plan_hash(plan: dict) -> str:
    """Identity of a whole plan (its cells and header), for run manifests."""
    return digest({k: v for k, v in plan.items() if k != "totals"})


def stale_inputs(plan: dict, plan_path: str) -> list[str]:
    """Files (spec, imports, data) whose content differs from what the plan was compiled
    from; empty when the plan is current."""
    from .data import sha256_file

    base = os.path.dirname(os.path.abspath(plan_path))
    spec_path = os.path.normpath(os.path.join(base, plan["spec"]["path"]))
    spec_dir = os.path.dirname(spec_path)
    checks = [(spec_path, plan["spec"]["sha256"])]
    checks += [(os.path.normpath(os.path.join(spec_dir, i["path"])), i["sha256"]) for i in plan["spec"].get("imports", [])]
    checks += [(os.path.normpath(os.path.join(spec_dir, d["path"])), d["sha256"]) for d in plan["datasets"].values()]
    changed = []
    for path, want in checks:
        try:
            got = sha256_file(path)
        except OSError:
            got = None
        if got != want:
            changed.append(os.path.relpath(path) + (" (missing)" if got is None else ""))
    return changed
