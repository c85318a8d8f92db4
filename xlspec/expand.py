"""Expand phase: a checked spec -> the plan (DESIGN.md, "Plan").

Each cell is one point of the cross product model x dataset x country x language x framing x
mode x partition x subset x shots x seed.  Its id is a sha256 over everything that changes
its outputs.  The plan does not list items: it records how a cell selects them (dataset hash,
mapping, filters, limit) and how many there are, so a study of a million requests still has a
small plan.
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
from .plan import PLAN_FORMAT, digest
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
    models = {name: _model_entry(m) for name, m in sorted(spec.models.items())}
    counter = _ItemCounter(records, datasets)
    cells: list[dict] = []
    studies = {}
    for sname, study in sorted(spec.studies.items()):
        study_cells = list(_cells(spec, study, datasets, models, counter))
        cells += study_cells
        studies[sname] = {
            "axes": _axes(study),
            "group_by": study.group_by,
            "metrics": [m.model_dump(exclude_none=True) for m in study.metrics],
            "answers": [a.model_dump(exclude_none=True) for a in study.answers],
            "cells": len(study_cells),
        }
    cells.sort(key=lambda c: (c["study"], c["axes"]["model"], c["axes"]["dataset"], c["axes"]["country"] or "", c["axes"]["language"], c["axes"]["framing"], c["axes"]["mode"] or "", c["axes"]["partition"] or "", c["axes"]["subset"] or "", c["axes"]["shots"], c["axes"]["seed"]))
    totals = {
        "cells": len(cells),
        "requests": sum(c["estimate"]["requests"] for c in cells),
        "prompt_tokens": sum(c["estimate"]["prompt_tokens"] for c in cells),
        "output_tokens": sum(c["estimate"]["output_tokens"] for c in cells),
        "languages": sorted({c["axes"]["language"] for c in cells}),
        "models": sorted({c["axes"]["model"] for c in cells}),
    }
    return {
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
        "models": models,
        "studies": studies,
        "reports": [{"name": r.name, "template": r.template} for r in spec.reports],
        "totals": totals,
        "cells": cells,
    }


def _model_entry(m) -> dict:
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


def _axes(study: StudySpec) -> dict[str, list]:
    langs = sorted({lang for ls in study.languages.values() for lang in ls})
    axes: dict[str, list] = {"model": study.models, "dataset": study.datasets, "language": langs, "framing": study.framings}
    if study.countries:
        axes["country"] = sorted(study.countries)
    if study.modes:
        axes["mode"] = study.modes
    if study.partitions:
        axes["partition"] = study.partitions
    if study.subsets:
        axes["subset"] = study.subsets
    if len(study.shots) > 1 or study.shots != [0]:
        axes["shots"] = study.shots
    if len(study.seeds) > 1:
        axes["seed"] = study.seeds
    return axes


class _ItemCounter:
    """Item counts and mean field lengths, memoised per selection (not per cell)."""

    def __init__(self, records: dict[str, list[Record]], datasets: dict[str, dict]):
        self.records = records
        self.datasets = datasets
        self.cache: dict[Any, tuple[int, int]] = {}

    def count(self, dataset: str, language: str, partition: str | None, filters: list, limit: int | None) -> tuple[int, int]:
        key = (dataset, language, partition, digest(filters), limit)
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


def _cells(spec: Spec, study: StudySpec, datasets: dict, models: dict, counter: _ItemCounter):
    countries = sorted(study.countries) if study.countries else [None]
    modes = study.modes or [None]
    partitions = study.partitions or [None]
    subsets = study.subsets or [None]
    for model, dataset, country in product(study.models, study.datasets, countries):
        langs = study.languages[country or ""]
        for language, framing, mode, partition, subset, shots, seed in product(langs, study.framings, modes, partitions, subsets, study.shots, study.seeds):
            fr = spec.framings[framing]
            md = spec.modes[mode] if mode else None
            template = fr.templates[language]
            instruction = None
            if md and md.instruction:
                instruction = md.instruction.get(language, md.instruction.get("*"))
            system = (fr.system or {}).get(language, (fr.system or {}).get("*")) if fr.system else None
            variables = {"lang": language, "language": name_in(language, language)}
            if country:
                variables["country"] = country_name_in(country, language)
            filters = [study.where] + ([spec.subsets[subset]] if subset else [])
            sampling = {
                "max_tokens": md.max_tokens if md else 16,
                "temperature": md.temperature if md else 0.0,
                "top_p": md.top_p if md else 1.0,
                "samples": study.samples,
                "seed": seed,
            }
            fewshot = None
            if shots and study.fewshot:
                pool = spec.datasets[study.fewshot]
                fewshot = {"dataset": study.fewshot, "sha256": pool.sha256, "shots": shots}
            axes = {
                "model": model, "dataset": dataset, "country": country, "language": language, "framing": framing,
                "mode": mode, "partition": partition, "subset": subset, "shots": shots, "seed": seed,
            }
            ds = datasets[dataset]
            selection = {
                "dataset": dataset,
                "sha256": ds["sha256"],
                "fields": ds["fields"],
                "labels": ds["labels"],
                "partition": partition,
                "filters": [f for f in filters if f is not None],
                "limit": study.limit,
            }
            prompt = {"template": template, "instruction": instruction, "system": system, "variables": variables, "fewshot": fewshot}
            answers = [a.model_dump(exclude_none=True) for a in study.answers]
            content = {
                "axes": axes,
                "model": models[model],
                "prompt": prompt,
                "sampling": sampling,
                "answers": answers,
                "items": selection,
                "render": RENDER_VERSION,
            }
            n, mean_chars = counter.count(dataset, language, partition, selection["filters"], study.limit)
            pool_chars = counter.pool_chars(study.fewshot, language, shots) if fewshot else 0
            per_prompt = math.ceil((len(template) + len(instruction or "") + len(system or "") + mean_chars + pool_chars) / CHARS_PER_TOKEN)
            requests = n * len(answers) * study.samples
            out_tokens = sum(sampling["max_tokens"] if a["kind"] == "generate" else (1 if a["kind"] == "options" else 0) for a in answers)
            yield {
                "id": digest(content),
                "study": study.name,
                "axes": axes,
                "prompt": prompt,
                "sampling": sampling,
                "answers": answers,
                "items": {k: v for k, v in selection.items() if k not in ("fields", "labels", "sha256")} | {"count": n},
                "estimate": {
                    "requests": requests,
                    "prompt_tokens": per_prompt * requests,
                    "output_tokens": n * study.samples * out_tokens,
                },
            }
