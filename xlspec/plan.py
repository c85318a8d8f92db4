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
TOP_LEVEL_ORDER = (
    "format", "experiment", "title", "versions", "spec", "datasets", "models", "framings", "modes",
    "subsets", "names", "studies", "reports", "totals", "cells",
)


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


_COMPACT = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)
_CELL_LINE = json.JSONEncoder(sort_keys=True, separators=(", ", ": "), ensure_ascii=False)


def digest(obj: Any) -> str:
    return hashlib.sha256(_COMPACT.encode(canonical(obj)).encode("utf-8")).hexdigest()


def digest_canonical(obj: Any) -> str:
    """:func:`digest` for data that is canonical already (no floats): strings, ints, None and
    containers of them.  The hot path of compiling a large plan."""
    return hashlib.sha256(_COMPACT.encode(obj).encode("utf-8")).hexdigest()


def dumps(plan: dict) -> str:
    """The header indented, then one cell per line: a changed cell is a one-line diff."""
    body = canonical({k: v for k, v in plan.items() if k != "cells"})
    header = {k: body[k] for k in TOP_LEVEL_ORDER if k in body}
    header |= {k: v for k, v in body.items() if k not in TOP_LEVEL_ORDER}
    text = json.dumps(header, indent=2, ensure_ascii=False)
    # Cells hold only strings, ints and None (see expand), so they need no canonical() pass.
    # One encoder call for all cells (the per-call overhead dominates at 20k cells), then a
    # line break between cells.  A cell's keys and values are names, codes, hashes and
    # numbers, so '}, {"axes": ' only ever occurs between two cells.
    cells = plan.get("cells", [])
    lines = "    " + _CELL_LINE.encode(cells)[1:-1].replace('}, {"axes": ', '},\n    {"axes": ') if cells else ""
    return text[:-2] + ',\n  "cells": [\n' + lines + ("\n" if cells else "") + "  ]\n}\n"


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


# ---- cells ---------------------------------------------------------------------------------


def model_entry(m) -> dict:
    """A model as the plan records it: everything that can change its outputs."""
    return {
        "engine": m.engine,
        "source": m.source,
        "revision": m.revision,
        "chat": m.chat,
        "dtype": m.dtype,
        "max_model_len": m.max_model_len,
        "tensor_parallel": m.tensor_parallel,
        "batch_size": m.batch_size,
    }


def part_digests(plan: dict, study: str, axes: dict, cache: dict | None = None) -> tuple[dict, dict]:
    """The parts a cell's outputs depend on, resolved from the plan's header, and the digest
    of each.  ``cache`` memoises parts shared by many cells (compile speed)."""
    cache = {} if cache is None else cache
    s = plan["studies"][study]
    lang, country, mode, framing = axes["language"], axes["country"], axes["mode"], axes["framing"]

    def memo(key, build):
        hit = cache.get(key)
        if hit is None:
            value = build()
            hit = cache[key] = (digest(value), value)
        return hit

    def prompt():
        fr = plan["framings"][framing]
        md = plan["modes"][mode] if mode else None
        instruction = None
        if md and md["instruction"]:
            instruction = md["instruction"].get(lang, md["instruction"].get("*"))
        system = (fr["system"] or {}).get(lang, (fr["system"] or {}).get("*")) if fr.get("system") else None
        variables = {"lang": lang, "language": plan["names"]["languages"][lang]}
        if country:
            variables["country"] = plan["names"]["countries"][country][lang]
        fewshot = None
        if axes["shots"] and s["fewshot"]:
            pool = plan["datasets"][s["fewshot"]]
            fewshot = {"dataset": s["fewshot"], "sha256": pool["sha256"], "fields": pool["fields"], "shots": axes["shots"]}
        return {"template": fr["templates"][lang], "instruction": instruction, "system": system, "variables": variables, "fewshot": fewshot}

    def sampling():
        md = plan["modes"][mode] if mode else {"max_tokens": 16, "temperature": 0.0, "top_p": 1.0}
        return {"max_tokens": md["max_tokens"], "temperature": md["temperature"], "top_p": md["top_p"], "samples": s["samples"], "seed": axes["seed"]}

    def items():
        ds = plan["datasets"][axes["dataset"]]
        filters = [f for f in (s["where"], plan["subsets"].get(axes["subset"]) if axes["subset"] else None) if f is not None]
        return {
            "dataset": axes["dataset"], "sha256": ds["sha256"], "fields": ds["fields"], "labels": ds["labels"],
            "partition": axes["partition"], "filters": filters, "limit": s["limit"],
        }

    keys = (
        ("model", ("model", axes["model"]), lambda: plan["models"][axes["model"]]),
        ("prompt", ("prompt", study, framing, mode, lang, country, axes["shots"]), prompt),
        ("sampling", ("sampling", study, mode, axes["seed"]), sampling),
        ("answers", ("answers", study), lambda: s["answers"]),
        ("items", ("items", study, axes["dataset"], axes["partition"], axes["subset"]), items),
    )
    digests, parts = {}, {}
    for name, key, build in keys:
        digests[name], parts[name] = memo(key, build)
    digests["render"] = plan["versions"]["render"]
    return digests, parts


CELL_AXES = ("model", "dataset", "country", "language", "framing", "mode", "partition", "subset", "shots", "seed")
CELL_PARTS = ("model", "prompt", "sampling", "answers", "items", "render")


def cell_id(axes: dict, digests: dict) -> str:
    """sha256 over the cell's axis values and the digests of its parts, as ``key=value``
    lines in a fixed order (``null`` for an absent axis).  Axis values are names, language
    codes and whole numbers, none of which can hold a newline."""
    lines = [f"{k}={'null' if axes[k] is None else axes[k]}" for k in CELL_AXES]
    lines += [f"part.{k}={digests[k]}" for k in CELL_PARTS]
    return hashlib.sha256("\n".join(lines).encode("utf-8")).hexdigest()


def cell_parts(plan: dict, cell: dict) -> dict:
    """Everything a cell's outputs depend on (what the runtime needs to build its requests)."""
    return part_digests(plan, cell["study"], cell["axes"])[1]
