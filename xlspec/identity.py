"""What makes two outputs the same: the one rule behind cell ids and request ids.

A cell id hashes everything that changes the cell's rows; a request id hashes everything
that changes the engine's answer.  Both read the model through :func:`model_identity`, so a
model setting either changes both (``dtype``, ``revision``: new answers, new rows) or
neither (``batch_size``, ``tensor_parallel``: how the work is spread, not what it computes).
``xlspec diff`` counts the requests a re-run computes from the same request ids the runtime
uses, so the two always agree.

Hashes are sha256 over canonical JSON (sorted keys, integral floats as ints), never Python's
``hash()``, so they are the same on every machine.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

from .answers import ANSWER_KINDS
from .axes import CELL_AXIS_NAMES
from .spec import ModelSpec, ModeSpec

MODEL_IDENTITY: tuple[str, ...] = ModelSpec.identity_fields()
"""Model fields that can change what a model answers."""

MODEL_IDENTITY_DEFAULTS: dict[str, Any] = ModelSpec.identity_defaults()
"""Of those, the ones left out at their default (``head = lm``)."""

SAMPLING_IDENTITY = ("max_tokens", "temperature", "top_p")
"""Sampling settings that change a sampled answer."""

DEFAULT_SAMPLING = {k: ModeSpec.model_fields[k].default for k in SAMPLING_IDENTITY}
"""Sampling of a study without a mode: a mode's defaults."""

CELL_PARTS = ("model", "prompt", "sampling", "answers", "items", "render")
"""The parts of a cell id besides its axis values, in hashing order (see :data:`PARTS`)."""


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


def digest(obj: Any) -> str:
    return hashlib.sha256(_COMPACT.encode(canonical(obj)).encode("utf-8")).hexdigest()


def model_identity(model: dict) -> dict:
    """The fields of a plan's model entry that change its answers."""
    out = {k: model.get(k) for k in MODEL_IDENTITY}
    for k, default in MODEL_IDENTITY_DEFAULTS.items():
        if out[k] in (default, None):
            del out[k]
    return out


def axis_line(axis: str, value: Any) -> str:
    """One line of a cell id's text."""
    return f"{axis}={'null' if value is None else value}\n"


def parts_text(digests: dict) -> str:
    return "\n".join(f"part.{k}={digests[k]}" for k in CELL_PARTS)


def reads_text(reads: list[str]) -> str:
    """The line a downstream cell's id adds for the upstream cells it reads (none for a cell
    that reads data files, so their ids are as before stages existed)."""
    return "\nreads=" + ",".join(reads) if reads else ""


def cell_id(study: str, axes: dict, digests: dict, reads: list[str] = ()) -> str:
    """sha256 over the cell's study, axis values and the digests of its parts, as
    ``key=value`` lines in a fixed order (``null`` for an absent axis).  Names, language codes
    and whole numbers cannot hold a newline.  The study is part of the id: two studies with
    the same cross product are two sets of rows.  (The expansion builds the same text level
    by level, see ``xlspec.expand``; a test keeps the two equal.)  A cell that reads another
    study's responses hashes the ids of the cells it reads: a change upstream is a new
    downstream cell."""
    text = axis_line("study", study) + "".join(axis_line(k, axes[k]) for k in CELL_AXIS_NAMES) + parts_text(digests) + reads_text(list(reads))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def request_id(model: dict, prompt: str, system: str | None, answer: dict, options: tuple[str, ...], sampling: dict | None, sample: int) -> str:
    """The id of one engine request: the model's identity, the exact prompt and system
    prompt, the answer kind with its options and the arguments that change what the engine
    computes, and, for a sampled kind, the sampling settings and the sample's seed (greedy
    decoding ignores the seed: all samples of a greedy cell are one request)."""
    kind = ANSWER_KINDS[answer["kind"]]
    key: dict[str, Any] = {
        "model": model_identity(model),
        "prompt": prompt,
        "system": system,
        "kind": kind.name,
        "options": list(options),
    }
    for arg in kind.identity_args:
        key[arg] = (answer.get("args") or {}).get(arg, answer.get(arg, next(p.default for p in kind.params if p.name == arg)))
    if kind.request_rule:
        key["rule"] = kind.request_rule
    if answer.get("models"):  # the other models the engine runs for it (a DPO reference)
        key["models"] = answer["models"]
    if kind.sampled:
        key["sampling"] = {k: sampling[k] for k in SAMPLING_IDENTITY}
        key["seed"] = None if sampling["temperature"] == 0 else [sampling["seed"], sample]
    return digest(key)


def _model_part(plan: dict, study: str, axes: dict) -> dict:
    return model_identity(plan["models"][axes["model"]])


def _prompt_part(plan: dict, study: str, axes: dict) -> dict:
    s = plan["studies"][study]
    lang, country, mode = axes["language"], axes["country"], axes["mode"]
    fr = plan["framings"][axes["framing"]]
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


def _sampling_part(plan: dict, study: str, axes: dict) -> dict:
    mode = axes["mode"]
    md = plan["modes"][mode] if mode else DEFAULT_SAMPLING
    return {**{k: md[k] for k in SAMPLING_IDENTITY}, "samples": plan["studies"][study]["samples"], "seed": axes["seed"]}


def _answers_part(plan: dict, study: str, axes: dict) -> list:
    """The study's answers; an answer that names another model (``implicit_reward``'s
    ``reference``) carries that model's identity under ``models``, so a change to it is a
    new cell."""
    out = []
    for answer in plan["studies"][study]["answers"]:
        kind = ANSWER_KINDS[answer["kind"]]
        args = answer.get("args") or {}
        named = {p.name: model_identity(plan["models"][args[p.name]]) for p in kind.params if p.kind == "model" and args.get(p.name)}
        out.append({**answer, "models": named} if named else answer)
    return out


def _items_part(plan: dict, study: str, axes: dict) -> dict:
    s = plan["studies"][study]
    ds = plan["datasets"][axes["dataset"]]
    filters = [f for f in (s["where"], plan["subsets"].get(axes["subset"]) if axes["subset"] else None) if f is not None]
    part = {
        "dataset": axes["dataset"], "sha256": ds.get("sha256"), "fields": ds["fields"], "labels": ds["labels"],
        "partition": axes["partition"], "filters": filters, "limit": s["limit"],
    }
    if ds.get("gold_is"):
        part["gold_is"] = ds["gold_is"]
    if ds.get("study"):  # responses(STUDY): the cell's `reads` name the upstream cells
        part["study"] = ds["study"]
        if ds.get("pair"):
            part["pair"] = ds["pair"]
    return part


PARTS: tuple[tuple[str, tuple[str, ...], Any], ...] = (
    ("model", ("model",), _model_part),
    ("prompt", ("framing", "mode", "language", "country", "shots"), _prompt_part),
    ("sampling", ("mode", "seed"), _sampling_part),
    ("answers", (), _answers_part),
    ("items", ("dataset", "partition", "subset"), _items_part),
)
"""Each part of a cell id besides the render version: its name, the axes it depends on
(within a study), and how it is built from the plan's header."""


def part_digests(plan: dict, study: str, axes: dict, cache: dict | None = None) -> tuple[dict, dict]:
    """The parts a cell's outputs depend on, resolved from the plan's header, and the digest
    of each.  ``cache`` memoises parts shared by many cells."""
    cache = {} if cache is None else cache
    digests, parts = {}, {}
    for name, depends, build in PARTS:
        key = (name, study, *(axes[a] for a in depends))
        hit = cache.get(key)
        if hit is None:
            value = build(plan, study, axes)
            hit = cache[key] = (digest(value), value)
        digests[name], parts[name] = hit
    digests["render"] = plan["versions"]["render"]
    return digests, parts
