"""Expand phase: a checked spec -> the plan (docs/plans.md).

Each cell is one point of the cross product model x dataset x country x language x framing x
mode x partition x subset x shots x seed.  What cells share (template texts, sampling, model
settings, item selection) is stated once in the plan's header; a cell names its axis values
and carries an id that hashes everything that changes its outputs (see
:mod:`xlspec.identity`).  The plan does not list items: it records how a cell selects
them and how many there are, so a study of a million requests still has a small plan.
"""

from __future__ import annotations

import hashlib
import math
import os
from typing import Any

from . import __version__
from .answers import ANSWER_KINDS
from .axes import CELL_AXIS_NAMES
from .data import Record
from .identity import PARTS, axis_line, digest, parts_text, reads_text
from .items import SPECIAL_FIELDS, available, select
from .languages import country_name_in, name_in
from .plan import PLAN_FORMAT
from .prompt import RENDER_VERSION
from .spec import Spec, StudySpec
from .syntax import grammar_version

PART_BUILDERS = {name: build for name, _axes, build in PARTS}
PART_AXES = {name: axes for name, axes, _build in PARTS}

CHARS_PER_TOKEN = 4
"""Token estimates assume about four characters a token; they are for planning, not billing."""


def expand(spec: Spec, records: dict[str, list[Record]], plan_dir: str) -> dict:
    spec_dir = os.path.dirname(spec.path)
    datasets = {}
    for name, ds in sorted(spec.datasets.items()):
        if ds.study is not None:  # responses(STUDY): its items exist once the study ran
            datasets[name] = {
                "format": ds.format,
                "study": ds.study,
                "fields": {k: v.model_dump(exclude_none=True) for k, v in sorted(ds.fields.items())},
                "labels": ds.labels,
                "scale": list(ds.scale) if ds.scale else None,
            }
            if ds.pair is not None:
                datasets[name]["pair"] = ds.pair
            continue
        datasets[name] = {
            "format": ds.format,
            "path": os.path.relpath(ds.abs_path, spec_dir).replace(os.sep, "/") if ds.hub_id is None else "",
            **{k: v for k, v in (("hub_id", ds.hub_id), ("config", ds.config), ("configs", ds.configs), ("split", ds.split), ("revision", ds.revision)) if v is not None},
            "sha256": ds.sha256,
            "records": len(records[name]),
            "fields": {k: v.model_dump(exclude_none=True) for k, v in sorted(ds.fields.items())},
            "labels": ds.labels,
            "scale": list(ds.scale) if ds.scale else None,
        }
        if ds.gold_is is not None:
            datasets[name]["gold_is"] = ds.gold_is
    used_framings = sorted({f for s in spec.studies.values() for f in s.framings})
    used_modes = sorted({m for s in spec.studies.values() for m in s.modes})
    # The studies' models, and the models their answers name (a DPO reference).
    used_models = sorted({m for s in spec.studies.values() for m in s.models} | {
        ref for s in spec.studies.values() for a in s.answers for p in ANSWER_KINDS[a.kind].params
        if p.kind == "model" and (ref := (a.args or {}).get(p.name))
    })
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
        "models": {name: spec.models[name].plan_entry() for name in used_models},
        "framings": {name: spec.framings[name].model_dump() for name in used_framings},
        "modes": {name: spec.modes[name].model_dump() for name in used_modes},
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
            # merged: another study may ask the same country in other languages
            names.setdefault("countries", {}).setdefault(c, {}).update({lang: country_name_in(c, lang) for lang in sorted(set(study.languages[c]))})
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
    by_study: dict[str, list[dict]] = {}
    for sname in _upstream_first(spec):
        by_study[sname] = list(_cells(plan, spec.studies[sname], counter, by_study))
        studies[sname]["cells"] = len(by_study[sname])
    for sname in sorted(spec.studies):
        cells += by_study[sname]
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


def _upstream_first(spec: Spec) -> list[str]:
    """Study names, sorted, except that a study comes after those whose responses it reads
    (the checker refused cycles)."""
    needs = {
        name: {spec.datasets[d].study for d in s.datasets if spec.datasets[d].study is not None}
        for name, s in spec.studies.items()
    }
    out: list[str] = []
    while len(out) < len(needs):
        out.append(next(n for n in sorted(needs) if n not in out and needs[n] <= set(out)))
    return out


def _axes(study: StudySpec, langs: list[str]) -> dict[str, list]:
    """The study's axes (``StudySpec.axes``) and their values."""
    values = {
        "model": study.models, "dataset": study.datasets, "country": sorted(study.countries or {}), "language": langs,
        "framing": study.framings, "mode": study.modes, "partition": study.partitions, "subset": study.subsets,
        "shots": study.shots, "seed": study.seeds,
    }
    return {axis: values[axis] for axis in study.axes}


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
            text_fields = _text_fields(ds)
            chars = sum(_text_chars(r, text_fields, language) for r in chosen)
            hit = (len(chosen), chars // max(len(chosen), 1))
            self.cache[key] = hit
        return hit

    def pool_chars(self, dataset: str, language: str, shots: int) -> int:
        key = ("pool", dataset, language, shots)
        hit = self.cache.get(key)
        if hit is None:
            ds = self.datasets[dataset]
            pool = [r for r in self.records[dataset] if available(r, ds, language)][:shots]
            text_fields = _text_fields(ds)
            hit = (len(pool), sum(_text_chars(r, text_fields, language) for r in pool))
            self.cache[key] = hit
        return hit[1]


def _text_fields(ds: dict) -> list[tuple[str | list[str], str | None]]:
    """(source, index) of the mapped fields whose text a prompt may show."""
    return [(m["source"], m.get("index")) for name, m in ds["fields"].items() if name not in SPECIAL_FIELDS]


def _text_chars(r: Record, text_fields: list, language: str) -> int:
    n = 0
    fields = r.fields
    for src, index in text_fields:
        for v in ([fields.get(s) for s in src] if isinstance(src, list) else (fields.get(src),)):
            if index == "lang" and isinstance(v, dict):
                v = v.get(language)
            if isinstance(v, str):
                n += len(v)
            elif isinstance(v, list):
                n += sum(len(str(x)) for x in v)
    return n


def _upstream_reads(plan: dict, study: StudySpec, upstream_cells: dict[str, list[dict]]) -> dict:
    """(dataset, language) -> (the ids of the upstream cells a downstream cell reads, an
    estimate (items, mean characters of an item)) for the study's response datasets.  A
    downstream cell reads the upstream cells of its language; each of their ``generate``
    rows is one item."""
    out: dict = {}
    for dataset in study.datasets:
        entry = plan["datasets"][dataset]
        if entry.get("study") is None:
            continue
        up = plan["studies"][entry["study"]]
        sampled = [a for a in up["answers"] if ANSWER_KINDS[a["kind"]].sampled]
        pair = entry.get("pair")
        groups: dict = {}  # pair: (language, the other axes) -> the rows of each paired cell
        for cell in upstream_cells[entry["study"]]:
            lang = cell["axes"]["language"]
            ids, rows, chars = out.get((dataset, lang), ([], 0, 0))
            # One row per sample, greedy or not (greedy samples are one request, but each
            # is a row of its own, and each row is an item downstream).
            n = cell["items"] * up["samples"] * len(sampled)
            est = cell["estimate"]
            per_request = (est["prompt_tokens"] + est["output_tokens"]) / max(est["requests"], 1)
            if pair is not None:
                others = tuple(cell["axes"][a] for a in CELL_AXIS_NAMES if a != pair)
                groups.setdefault((lang, others), []).append((n, per_request))
                n = 0  # counted per group below
            out[(dataset, lang)] = (ids + [cell["id"]], rows + n, chars + n * per_request * CHARS_PER_TOKEN)
        for (lang, _others), counts in groups.items():
            # Each item answered by k cells gives k (k - 1) / 2 pairs of two responses.
            k = len(counts)
            n = min(c for c, _ in counts) * k * (k - 1) // 2
            per_pair = 2 * sum(p for _, p in counts) / k
            ids, rows, chars = out[(dataset, lang)]
            out[(dataset, lang)] = (ids, rows + n, chars + n * per_pair * CHARS_PER_TOKEN)
    return {key: (sorted(ids), (rows, int(chars // max(rows, 1)))) for key, (ids, rows, chars) in out.items()}


def _cells(plan: dict, study: StudySpec, counter: _ItemCounter, upstream_cells: dict[str, list[dict]]):
    """The cells of one study, in the spec's order (the axes' order, outermost first).

    The hot path of a large compile.  The loops run in the order of the cell id's axis
    lines, so each loop level extends a sha256 of the lines above it (``hashlib`` copies),
    and each part of the id is hashed once, at the level where the axes it depends on are
    fixed (:data:`xlspec.identity.PARTS`); per cell there is one hash copy, a few dict
    lookups and the cell itself."""
    name = study.name
    countries = sorted(study.countries) if study.countries else [None]
    modes = study.modes or [None]
    partitions = study.partitions or [None]
    subsets = study.subsets or [None]
    answers = plan["studies"][name]["answers"]
    render = plan["versions"]["render"]
    parts_cache: dict = {}
    estimates: dict = {}
    lines: dict = {}

    def line(axis, value):
        key = (axis, value)
        hit = lines.get(key)
        if hit is None:
            hit = lines[key] = axis_line(axis, value).encode("utf-8")
        return hit

    def part(part_name: str, **axes):
        """(digest, value) of one part, hashed once per distinct value of its axes."""
        key = (part_name, *axes.values())
        hit = parts_cache.get(key)
        if hit is None:
            assert set(axes) == set(PART_AXES[part_name]), part_name
            full = dict.fromkeys(CELL_AXIS_NAMES) | axes
            value = PART_BUILDERS[part_name](plan, name, full)
            hit = parts_cache[key] = (digest(value), value)
        return hit

    answers_d = part("answers")[0]
    reads_of = _upstream_reads(plan, study, upstream_cells)
    root = hashlib.sha256(axis_line("study", name).encode("utf-8"))
    for model in study.models:
        h_model = root.copy()
        h_model.update(line("model", model))
        model_d = part("model", model=model)[0]
        for dataset in study.datasets:
            h_dataset = h_model.copy()
            h_dataset.update(line("dataset", dataset))
            for country in countries:
                h_country = h_dataset.copy()
                h_country.update(line("country", country))
                for language in study.languages[country or ""]:
                    h_language = h_country.copy()
                    h_language.update(line("language", language))
                    for framing in study.framings:
                        h_framing = h_language.copy()
                        h_framing.update(line("framing", framing))
                        for mode in modes:
                            h_mode = h_framing.copy()
                            h_mode.update(line("mode", mode))
                            for partition in partitions:
                                h_partition = h_mode.copy()
                                h_partition.update(line("partition", partition))
                                for subset in subsets:
                                    h_subset = h_partition.copy()
                                    h_subset.update(line("subset", subset))
                                    items_d, items = part("items", dataset=dataset, partition=partition, subset=subset)
                                    for shots in study.shots:
                                        h_shots = h_subset.copy()
                                        h_shots.update(line("shots", shots))
                                        prompt_d, prompt = part("prompt", framing=framing, mode=mode, language=language, country=country, shots=shots)
                                        for seed in study.seeds:
                                            sampling_d, sampling = part("sampling", mode=mode, seed=seed)
                                            key = (items_d, prompt_d, sampling_d, language)
                                            reads, upstream = reads_of.get((dataset, language), ((), None))
                                            estimate = estimates.get(key)
                                            if estimate is None:
                                                estimate = estimates[key] = _estimate(items, prompt, sampling, study, counter, items_d, dataset, language, partition, shots, answers, upstream)
                                            h = h_shots.copy()
                                            h.update(line("seed", seed))
                                            h.update(parts_text({"model": model_d, "prompt": prompt_d, "sampling": sampling_d, "answers": answers_d, "items": items_d, "render": render}).encode("utf-8"))
                                            if reads:
                                                h.update(reads_text(reads).encode("utf-8"))
                                            axes = {
                                                "country": country, "dataset": dataset, "framing": framing, "language": language,
                                                "mode": mode, "model": model, "partition": partition, "seed": seed,
                                                "shots": shots, "subset": subset,
                                            }
                                            cell = {"axes": axes, "estimate": estimate[1], "id": h.hexdigest(), "items": estimate[0], "study": name}
                                            if reads:
                                                cell["reads"] = list(reads)
                                            yield cell


def _estimate(items: dict, prompt: dict, sampling: dict, study: StudySpec, counter: _ItemCounter, items_digest: str,
              dataset: str, language: str, partition: str | None, shots: int, answers: list, upstream: tuple[int, int] | None = None):
    if items.get("study") is not None:
        # Upstream rows, not records: the count is the upstream estimate (filters unknown).
        n, mean_chars = upstream or (0, 0)
        if study.limit is not None:
            n = min(n, study.limit)
    else:
        n, mean_chars = counter.count(items_digest, language, dataset, partition, items["filters"], study.limit)
    pool_chars = counter.pool_chars(study.fewshot, language, shots) if prompt["fewshot"] else 0
    text_chars = len(prompt["template"]) + len(prompt["instruction"] or "") + len(prompt["system"] or "")
    per_prompt = math.ceil((text_chars + mean_chars + pool_chars) / CHARS_PER_TOKEN)
    # A sampled kind runs `samples` times per item with the mode's budget (once where
    # decoding is greedy: the samples are one request, see xlspec.identity); the others once.
    samples = study.samples if sampling["temperature"] > 0 else 1
    per_item = []
    for a in answers:
        kind = ANSWER_KINDS[a["kind"]]
        per_item.append((samples, sampling["max_tokens"]) if kind.sampled else (1, kind.output_tokens))
    requests = n * sum(k for k, _ in per_item)
    out_tokens = n * sum(k * t for k, t in per_item)
    return n, {"output_tokens": out_tokens, "prompt_tokens": per_prompt * requests, "requests": requests}
