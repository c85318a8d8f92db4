"""Expand phase: a checked spec -> the plan (DESIGN.md, "Plan").

Each cell is one point of the cross product model x dataset x country x language x framing x
mode x partition x subset x shots x seed.  What cells share (template texts, sampling, model
settings, item selection) is stated once in the plan's header; a cell names its axis values
and carries an id that hashes everything that changes its outputs (see
:func:`xlspec.plan.cell_parts`).  The plan does not list items: it records how a cell selects
them and how many there are, so a study of a million requests still has a small plan.
"""

from __future__ import annotations

import math
import os
from itertools import product
from typing import Any

from . import __version__
from .data import Record
from .items import available, select
from .languages import country_name_in, name_in
from .plan import PLAN_FORMAT, cell_id, model_entry, part_digests
from .prompt import RENDER_VERSION
from .spec import Spec, StudySpec
from .syntax import grammar_version

CHARS_PER_TOKEN = 4
"""Token estimates assume about four characters a token; they are for planning, not billing."""


def expand(spec: Spec, records: dict[str, list[Record]], plan_dir: str) -> dict:
    spec_dir = os.path.dirname(spec.path)
    datasets = {}
    for name, ds in sorted(spec.datasets.items()):
        datasets[name] = {
            "format": ds.format,
            "path": os.path.relpath(ds.abs_path, spec_dir).replace(os.sep, "/"),
            "sha256": ds.sha256,
            "records": len(records[name]),
            "fields": {k: v.model_dump(exclude_none=True) for k, v in sorted(ds.fields.items())},
            "labels": ds.labels,
            "scale": list(ds.scale) if ds.scale else None,
        }
    used_framings = sorted({f for s in spec.studies.values() for f in s.framings})
    used_modes = sorted({m for s in spec.studies.values() for m in s.modes})
    used_models = sorted({m for s in spec.studies.values() for m in s.models})
    plan: dict[str, Any] = {
        "format": PLAN_FORMAT,
        "experiment": spec.experiment,
        "title": spec.title,
        "versions": {"xlspec": __version__, "grammar": grammar_version(), "render": RENDER_VERSION},
        "spec": {
            "path": os.path.relpath(spec.path, plan_dir).replace(os.sep, "/"),
            "sha256": spec.sha256,
            "imports": [i.model_dump() for i in spec.imports],
        },
        "datasets": datasets,
        "models": {name: model_entry(spec.models[name]) for name in used_models},
        "framings": {name: {"templates": spec.framings[name].templates, "system": spec.framings[name].system} for name in used_framings},
        "modes": {
            name: {"instruction": m.instruction, "max_tokens": m.max_tokens, "temperature": m.temperature, "top_p": m.top_p}
            for name, m in ((n, spec.modes[n]) for n in used_modes)
        },
        "subsets": {k: v for k, v in sorted(spec.subsets.items())},
        "reports": [{"name": r.name, "template": r.template} for r in spec.reports],
    }
    names: dict[str, dict] = {}
    studies: dict[str, dict] = {}
    cells: list[dict] = []
    counter = _ItemCounter(records, datasets)
    for sname, study in sorted(spec.studies.items()):
        langs = sorted({lang for ls in study.languages.values() for lang in ls})
        for lang in langs:
            names.setdefault("languages", {})[lang] = name_in(lang, lang)
        for c in sorted(study.countries or {}):
            names.setdefault("countries", {})[c] = {lang: country_name_in(c, lang) for lang in sorted(set(study.languages[c]))}
        studies[sname] = {
            "axes": _axes(study, langs),
            "languages_by_country": study.languages if study.countries else None,
            "answers": [a.model_dump(exclude_none=True) for a in study.answers],
            "samples": study.samples,
            "limit": study.limit,
            "where": study.where,
            "fewshot": study.fewshot,
            "group_by": study.group_by,
            "metrics": [m.model_dump(exclude_none=True) for m in study.metrics],
        }
    plan["names"] = names
    plan["studies"] = studies
    for sname in sorted(spec.studies):
        study_cells = list(_cells(plan, spec.studies[sname], counter))
        studies[sname]["cells"] = len(study_cells)
        cells += study_cells
    plan["totals"] = {
        "cells": len(cells),
        "requests": sum(c["estimate"]["requests"] for c in cells),
        "prompt_tokens": sum(c["estimate"]["prompt_tokens"] for c in cells),
        "output_tokens": sum(c["estimate"]["output_tokens"] for c in cells),
        "languages": sorted({c["axes"]["language"] for c in cells}),
        "models": sorted({c["axes"]["model"] for c in cells}),
    }
    plan["cells"] = cells
    return plan


def _axes(study: StudySpec, langs: list[str]) -> dict[str, list]:
    axes: dict[str, list] = {"model": study.models, "dataset": study.datasets, "language": langs, "framing": study.framings}
    if study.countries:
        axes["country"] = sorted(study.countries)
    if study.modes:
        axes["mode"] = study.modes
    if study.partitions:
        axes["partition"] = study.partitions
    if study.subsets:
        axes["subset"] = study.subsets
    if study.shots != [0]:
        axes["shots"] = study.shots
    if len(study.seeds) > 1:
        axes["seed"] = study.seeds
    return axes


class _ItemCounter:
    """Item counts and mean text lengths, memoised per selection (not per cell)."""

    def __init__(self, records: dict[str, list[Record]], datasets: dict[str, dict]):
        self.records = records
        self.datasets = datasets
        self.cache: dict[Any, tuple[int, int]] = {}

    def count(self, selection_digest: str, language: str, dataset: str, partition: str | None, filters: list, limit: int | None) -> tuple[int, int]:
        key = (selection_digest, language)
        hit = self.cache.get(key)
        if hit is None:
            ds = self.datasets[dataset]
            chosen = select(self.records[dataset], ds, language, partition, filters, limit)
            chars = sum(_text_chars(r, ds, language) for r in chosen)
            hit = (len(chosen), chars // max(len(chosen), 1))
            self.cache[key] = hit
        return hit

    def pool_chars(self, dataset: str, language: str, shots: int) -> int:
        key = ("pool", dataset, language, shots)
        hit = self.cache.get(key)
        if hit is None:
            ds = self.datasets[dataset]
            pool = [r for r in self.records[dataset] if available(r, ds, language)][:shots]
            hit = (len(pool), sum(_text_chars(r, ds, language) for r in pool))
            self.cache[key] = hit
        return hit[1]


def _text_chars(r: Record, ds: dict, language: str) -> int:
    n = 0
    for name, m in ds["fields"].items():
        if name in ("id", "gold", "human", "partition", "language"):
            continue
        src = m["source"]
        values = [r.fields.get(s) for s in src] if isinstance(src, list) else [r.fields.get(src)]
        for v in values:
            if isinstance(v, dict) and m.get("index") == "lang":
                v = v.get(language)
            if isinstance(v, (str, list)):
                n += len(v) if isinstance(v, str) else sum(len(str(x)) for x in v)
    return n


def _cells(plan: dict, study: StudySpec, counter: _ItemCounter):
    """The cells of one study, in the spec's order.  The loop is the hot path of a large
    compile: parts shared by many cells are hashed once (``part_digests``' cache) and the
    per-cell work is building the axes, the id and the estimate."""
    countries = sorted(study.countries) if study.countries else [None]
    modes = study.modes or [None]
    partitions = study.partitions or [None]
    subsets = study.subsets or [None]
    parts_cache: dict = {}
    answers = plan["studies"][study.name]["answers"]
    samples = study.samples
    estimates: dict = {}
    for model, dataset, country in product(study.models, study.datasets, countries):
        langs = study.languages[country or ""]
        for language, framing, mode, partition, subset, shots, seed in product(langs, study.framings, modes, partitions, subsets, study.shots, study.seeds):
            axes = {
                "model": model, "dataset": dataset, "country": country, "language": language, "framing": framing,
                "mode": mode, "partition": partition, "subset": subset, "shots": shots, "seed": seed,
            }
            digests, parts = part_digests(plan, study.name, axes, parts_cache)
            key = (digests["items"], digests["prompt"], digests["sampling"], language)
            estimate = estimates.get(key)
            if estimate is None:
                estimate = estimates[key] = _estimate(parts, study, counter, digests["items"], axes, answers, samples)
            yield {"id": cell_id(axes, digests), "study": study.name, "axes": axes, "items": estimate[0], "estimate": estimate[1]}


def _estimate(parts: dict, study: StudySpec, counter: _ItemCounter, items_digest: str, axes: dict, answers: list, samples: int):
    selection, prompt = parts["items"], parts["prompt"]
    n, mean_chars = counter.count(items_digest, axes["language"], axes["dataset"], axes["partition"], selection["filters"], study.limit)
    pool_chars = counter.pool_chars(study.fewshot, axes["language"], axes["shots"]) if prompt["fewshot"] else 0
    text_chars = len(prompt["template"]) + len(prompt["instruction"] or "") + len(prompt["system"] or "")
    per_prompt = math.ceil((text_chars + mean_chars + pool_chars) / CHARS_PER_TOKEN)
    # Generation runs `samples` times per item; options and loglik are read once.
    per_item = [(samples, parts["sampling"]["max_tokens"]) if a["kind"] == "generate" else (1, 1 if a["kind"] == "options" else 0) for a in answers]
    requests = n * sum(k for k, _ in per_item)
    out_tokens = n * sum(k * t for k, t in per_item)
    return n, {"requests": requests, "prompt_tokens": per_prompt * requests, "output_tokens": out_tokens}
