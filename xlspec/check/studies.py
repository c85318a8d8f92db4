"""Studies: ``study NAME { ... }`` -> :class:`~xlspec.spec.StudySpec`, the last pass over
declarations, since a study names everything else.

``resolve_studies(scope, diags) -> dict[str, StudySpec]`` with :class:`Scope` holding what
the earlier passes resolved.  Per study: its settings (:data:`STUDY_SETTINGS`), the names it
uses (groups expanded), its countries and languages (per country), answer kinds, filters and
the fields they read, framing and mode coverage and placeholders, axes (``xlspec.axes``),
``group_by``, metrics, and whether each model's engine serves each answer kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .. import ast
from ..answers import ANSWER_KINDS
from ..axes import CELL_AXES, CELL_AXIS_NAMES
from ..data import Record
from ..items import SPECIAL_FIELDS, UPSTREAM_REQUEST, upstream_source
from ..diagnostics import Diagnostics, Span
from ..spec import AnswerSpec, DatasetSpec, FramingSpec, ModelSpec, ModeSpec, StudySpec
from .answers import resolve_answers
from .context import did_you_mean, expect_int, expect_ints, expect_strings, items_of, span_of
from .coverage import check_coverage
from .declarations import Declarations
from .filters import check_filter_fields, lower_filter
from .framings import check_templates, template_sources
from .languages import LanguageSets
from .metrics import axis_names, resolve_metrics
from .stages import UpstreamFacts, check_upstream, response_fields, study_datasets
from .vocabulary import STUDY_SETTINGS


@dataclass(frozen=True)
class Scope:
    """Everything a study can name, as the earlier passes resolved it."""

    decls: Declarations
    groups: dict[str, list[ast.Ref]]
    languages: LanguageSets
    countries: dict[str, dict[str, str]]
    datasets: dict[str, DatasetSpec]
    records: dict[str, list[Record]]
    framings: dict[str, FramingSpec]
    modes: dict[str, ModeSpec]
    models: dict[str, ModelSpec]
    subsets: dict[str, Any]


def resolve_studies(scope: Scope, diags: Diagnostics) -> dict[str, StudySpec]:
    """Upstream studies first, so a study reading another's responses can be checked
    against it (its languages, its answer kinds)."""
    studies: dict[str, StudySpec] = {}
    asked: dict[str, UpstreamFacts] = {}
    for d in _upstream_first(scope):
        s = _study(d, scope, asked, diags)
        if s is not None:
            studies[s.name] = s
    if not scope.decls["study"]:
        diags.error("E013", "no `study` declaration: nothing to run", scope.decls.anchor(), hint="add: study main { model = ... dataset = ... language = ... framing = ... }")
    return studies


def _upstream_first(scope: Scope) -> list[ast.Decl]:
    """Study declarations in declaration order, except that a study comes after the studies
    whose responses its datasets are (cycles are E020 already: their datasets are not in
    ``scope.datasets``, so they add no edge here)."""
    decls = list(scope.decls["study"].values())
    needs = {
        d.name.text: {ds.study for n in study_datasets(scope.decls, scope.groups, d.name.text) if (ds := scope.datasets.get(n)) is not None and ds.study}
        for d in decls
    }
    out: list[ast.Decl] = []
    placed: set[str] = set()
    while len(out) < len(decls):
        ready = [d for d in decls if d.name.text not in placed and needs[d.name.text] <= placed | {d.name.text}]
        if not ready:  # pragma: no cover - a cycle left an edge: keep declaration order
            ready = [d for d in decls if d.name.text not in placed]
        out.append(ready[0])
        placed.add(ready[0].name.text)
    return out


def _names(v: ast.Expr, kind: str, what: str, scope: Scope, diags: Diagnostics) -> list[tuple[str, Span | None]]:
    """A name or a list of names of one kind; groups expand in place."""
    out: list[tuple[str, Span | None]] = []
    for item in items_of(v):
        if not (isinstance(item, ast.Ref) and item.is_name):
            diags.error("E014", f"expected a {what} name", span_of(item))
            continue
        name = item.parts[0].text
        if name in scope.decls["group"]:
            for member in scope.groups.get(name, []):
                out += _names(member, kind, what, scope, diags)
            continue
        if name not in scope.decls[kind]:
            diags.error("E003", f"undefined {what} `{name}`", item.span, hint=did_you_mean(name, scope.decls[kind], f"declare it: {kind} {name} ..."))
            continue
        out.append((name, item.span))
    return out


def _settings(d: ast.Decl, diags: Diagnostics) -> dict[str, ast.Setting]:
    settings: dict[str, ast.Setting] = {}
    for s in d.body.settings:
        key = s.key.text
        if key not in STUDY_SETTINGS:
            diags.error("E014", f"unknown study setting `{key}`", s.key.span, hint=did_you_mean(key, STUDY_SETTINGS, f"a study takes: {', '.join(sorted(STUDY_SETTINGS))}"))
            continue
        if key in settings:
            diags.error("E004", f"`{key}` is set twice in study `{d.name.text}`", s.key.span)
            continue
        settings[key] = s
    return settings


def _countries(cv: ast.Expr, scope: Scope, diags: Diagnostics) -> dict[str, str] | None:
    """``country = <countries>`` (a declared map) or ``[EG, IR]`` (countries of any map)."""
    if isinstance(cv, ast.Ref) and cv.is_name and cv.parts[0].text in scope.decls["countries"]:
        return scope.countries.get(cv.parts[0].text, {})
    if isinstance(cv, ast.ListExpr):
        merged = {k: v for m in scope.countries.values() for k, v in m.items()}
        countries = {}
        for item in cv.items:
            code = item.parts[0].text if isinstance(item, ast.Ref) else None
            if code in merged:
                countries[code] = merged[code]
            else:
                diags.error("E003", f"country `{code}` is not in any `countries` map", span_of(item), hint=did_you_mean(code or "", merged, None))
        return countries
    name = cv.parts[0].text if isinstance(cv, ast.Ref) else "?"
    diags.error("E003", f"undefined countries `{name}`", span_of(cv), hint=did_you_mean(name, scope.decls["countries"], "declare it: countries NAME = { EG: ar }"))
    return None


def _study(d: ast.Decl, scope: Scope, upstream: dict[str, UpstreamFacts], diags: Diagnostics) -> StudySpec | None:
    if d.body is None:
        return None
    settings = _settings(d, diags)
    errors_before = len(diags.errors)
    for axis in CELL_AXES:
        key = axis.setting or axis.name
        if axis.required and key not in settings:
            diags.error("E014", f"study `{d.name.text}` does not set `{key}`", d.name.span)
    if len(diags.errors) > errors_before:
        return None

    models = _names(settings["model"].value, "model", "model", scope, diags)
    errors_before = len(diags.errors)
    datasets = [n for n, _ in _names(settings["dataset"].value, "dataset", "dataset", scope, diags)]
    # Every dataset named and read: only then can placeholders be checked against their fields.
    data_known = len(diags.errors) == errors_before and all(n in scope.datasets for n in datasets)
    framings = [n for n, _ in _names(settings["framing"].value, "framing", "framing", scope, diags)]
    modes = [n for n, _ in _names(settings["mode"].value, "mode", "mode", scope, diags)] if "mode" in settings else []
    countries = _countries(settings["country"].value, scope, diags) if "country" in settings else None

    languages: dict[str, list[str]] = {}
    lang_expr = settings["language"].value
    for c in sorted(countries) if countries else [""]:
        got = scope.languages.study_languages(lang_expr, c or None, countries)
        if got is None:
            return None
        languages[c] = got
    all_langs = sorted({lang for ls in languages.values() for lang in ls})
    if not all_langs:
        diags.error("E016", f"study `{d.name.text}` has no languages", span_of(lang_expr))

    data = [scope.datasets[n] for n in datasets if n in scope.datasets]
    answers = resolve_answers(settings.get("answer"), data, diags, models={n: scope.models.get(n) for n in scope.decls["model"]})
    # What a study reading this one's responses is checked against, whatever else fails here.
    upstream[d.name.text] = UpstreamFacts(all_langs, [a.kind for a in answers])
    _check_engines(models, answers, scope, diags, settings.get("answer"))
    partitions = expect_strings(settings.get("partition"), "partition", diags)
    subsets = [n for n, _ in _names(settings["subset"].value, "subset", "subset", scope, diags)] if "subset" in settings else None
    where = lower_filter(settings["where"].value, diags) if "where" in settings else None
    shots = expect_ints(settings.get("shots"), 0, diags) or [0]
    seeds = expect_ints(settings.get("seeds"), 0, diags) or [0]
    samples = expect_int(settings["samples"].value, 1, diags) if "samples" in settings else 1
    limit = expect_int(settings["limit"].value, 1, diags) if "limit" in settings else None
    fewshot = None
    if "fewshot" in settings:
        names = _names(settings["fewshot"].value, "dataset", "dataset", scope, diags)
        fewshot = names[0][0] if names else None
    if fewshot is not None and fewshot in scope.datasets and scope.datasets[fewshot].study:
        diags.error("E014", f"the few-shot pool is a data file, and `{fewshot}` is the responses of study `{scope.datasets[fewshot].study}`", span_of(settings["fewshot"].value))
    if any(s > 0 for s in shots) and fewshot is None:
        diags.error("E014", "shots > 0 needs `fewshot = <dataset>`, the pool examples come from", span_of(settings["shots"].value))
    if partitions and not all("partition" in ds.fields for ds in data):
        diags.error("E011", "`partition` needs each dataset to map a `partition` field", settings["partition"].key.span)

    filters = [("where", where, settings["where"].value.span if "where" in settings else None)] + [
        (f"subset {s}", scope.subsets.get(s), span_of(scope.decls["subset"][s].value) if s in scope.decls["subset"] else None) for s in (subsets or [])
    ]
    known = {n: response_fields(scope.datasets[n]) for n in datasets if n in scope.datasets and scope.datasets[n].study}
    check_filter_fields(filters, datasets, scope.records, diags, known)
    check_upstream(d, settings, datasets, all_langs, scope, upstream, diags)
    check_coverage(
        d, settings, scope, datasets=datasets, languages=languages, countries=countries, partitions=partitions,
        subsets=subsets, where=where, shots=shots, fewshot=fewshot, diags=diags,
    )
    shown = {"a", "b"} if any(a.kind == "pairwise" for a in answers) else set()  # the candidates
    check_templates(
        d, settings["language"], framings, modes, all_langs, template_sources(data, countries is not None) | shown if data_known else None,
        scope.decls, scope.framings, scope.modes, diags,
    )

    # Axes: the required ones, those whose setting the study writes, and the integer ones
    # (shots, seed) where they take more than one value.
    counts = {"shots": len(shots), "seed": len(seeds)}
    axes = {
        a.name for a in CELL_AXES
        if a.required or (counts.get(a.name, 0) > 1 if a.integer else (a.setting or a.name) in settings)
    }
    # Item fields (category, subject, tier) and declared model attributes group metrics like
    # axes: a study's group_by, a metric's by, a derived metric's over.
    attributes = {n: dict(m.attributes) for n, _ in models if (m := scope.models.get(n)) is not None}
    extra_axes = ({f for ds in data if ds is not None for f in ds.fields if f not in SPECIAL_FIELDS and f != "options"}
                  | {k for a in attributes.values() for k in a}) - axes
    # A loglik answer's normalisation is a row axis: each of the study's normalisations reads
    # the same answers, and metrics report each apart.
    normalizations = sorted({(a.args or {}).get("normalize", "none") for a in answers if a.kind == "loglik"})
    if normalizations:
        extra_axes = extra_axes | {"normalize"}
    group_by = _group_by(settings.get("group_by"), axes, diags, extra_axes)
    logliks = [a for a in answers if a.kind == "loglik"]
    if len(logliks) > len(normalizations):
        diags.error("E004", "two loglik answers of this study read their answers the same way", span_of(settings["answer"].value), hint="give each loglik answer its own normalize (one separator per study)")
    if normalizations and settings.get("group_by") is None:
        group_by.append("normalize")
    elif len(normalizations) > 1 and "normalize" not in group_by:
        diags.error("E014", f"the study scores loglik answers {len(normalizations)} ways ({', '.join(normalizations)}); group_by must include `normalize`", span_of(settings["group_by"].value), hint="else each item counts once per normalisation")
    # The values a metric's contrast (axis = a - b) may name, for every axis whose values are
    # names or codes (those of integer axes are not checked).
    named = {
        "model": [n for n, _ in models], "dataset": datasets, "language": all_langs, "framing": framings,
        "mode": modes, "country": sorted(countries or {}), "partition": partitions or [], "subset": subsets or [],
    }
    values = {a.name: named[a.name] for a in CELL_AXES if not a.integer}
    # How many values each axis takes, for a study that pairs this one's responses.
    counts = {**{k: len(v) for k, v in named.items()}, "shots": len(shots), "seed": len(seeds)}
    upstream[d.name.text] = UpstreamFacts(all_langs, [a.kind for a in answers], counts)
    metrics = resolve_metrics(
        settings.get("metrics"), answers, data, axes | upstream_axes(data) | extra_axes, values, scope.decls, diags,
        attributes=attributes, numeric={"shots": list(shots), "seed": list(seeds)},
        natives=_natives(countries, languages),
    )
    if diags.has_errors():
        return None
    return StudySpec(
        name=d.name.text, models=[n for n, _ in models], datasets=datasets, countries=countries, languages=languages,
        framings=framings, modes=modes, partitions=partitions, subsets=subsets,
        where=where, shots=shots, fewshot=fewshot, seeds=seeds, samples=samples, answers=answers,
        metrics=metrics, group_by=group_by, limit=limit, axes=[a.name for a in CELL_AXES if a.name in axes],
    )


def _natives(countries: dict[str, str] | None, languages: dict[str, list[str]]) -> list[str] | str | None:
    """What a contrast side ``native(country)`` stands for: the native languages of the
    study's countries, pooled, which is each country's own language only where every
    country is asked in its own native language and in no other country's (as
    ``language = english + native(country)`` gives); else why not (a message).  None
    without a country axis."""
    if not countries:
        return None
    natives = sorted(set(countries.values()))
    for code, native in sorted(countries.items()):
        others = sorted((set(languages.get(code, [])) & set(natives)) - {native})
        if native not in languages.get(code, []) or others:
            asked = ", ".join(languages.get(code, [])) or "no language"
            return f"country {code} is asked in {asked}: native(country) as a contrast side needs each country asked in its own language ({native}) and in no other country's"
    return natives


def upstream_axes(data: list[DatasetSpec]) -> set[str]:
    """The upstream axes a judge stage's rows name (``generator = model``), which its metrics
    can group and rank by (``rank_stability(..., rank = generator)``): those every dataset of
    the study maps, where all of them are response datasets."""
    if not data or not all(d.study for d in data):
        return set()
    mapped = [{name for name, fm in d.fields.items() if upstream_source(fm.source)} for d in data]
    return set.intersection(*mapped) - set(CELL_AXIS_NAMES) - {UPSTREAM_REQUEST}


def _check_engines(models: list[tuple[str, Span | None]], answers: list[AnswerSpec], scope: Scope, diags: Diagnostics, answer: ast.Setting | None = None) -> None:
    """Every model's engine serves every answer kind of the study, with the head it needs; a
    model an answer names (``reference``) runs in the same engine as the study's models."""
    from ..runtime.engines import ENGINES

    for name, span in models:
        model = scope.models.get(name)
        engine = ENGINES.get(model.engine) if model is not None else None
        if engine is None:
            continue
        for a in answers:
            for p in ANSWER_KINDS[a.kind].params if a.kind in ANSWER_KINDS else ():
                other = scope.models.get((a.args or {}).get(p.name, "")) if p.kind == "model" else None
                if other is not None and other.engine != model.engine:
                    diags.error(
                        "E009",
                        f"`{a.kind}`'s {p.name} `{a.args[p.name]}` runs on engine `{other.engine}`, and model `{name}` on `{model.engine}`",
                        span_of(answer.value) if answer is not None else span,
                        hint=f"both models run in one engine: declare `{a.args[p.name]}` with {model.engine}(...)",
                    )
        for kind in dict.fromkeys(a.kind for a in answers):
            served = ANSWER_KINDS[kind].engine if kind in ANSWER_KINDS else kind
            head = ANSWER_KINDS[kind].head if kind in ANSWER_KINDS else model.head
            if head != model.head:
                able = sorted(k for k, info in ANSWER_KINDS.items() if info.head == model.head)
                diags.error(
                    "E009",
                    f"model `{name}` has head `{model.head}`, and answer kind `{kind}` needs a model with head `{head}`",
                    span,
                    notes=[f"a model with head `{model.head}` answers: {', '.join(able)}"],
                    hint=f"set `head = {head}` in the model's block, or use another model" if head == "classifier" else "a classifier head cannot generate: use a language model for this answer kind",
                )
                continue
            if served not in engine.answers:
                able = [n for n, e in ENGINES.items() if kind in e.answers]
                diags.error(
                    "E009",
                    f"model `{name}` runs on engine `{engine.name}`, which cannot serve answer kind `{kind}`",
                    span,
                    notes=[f"engine `{engine.name}` serves: {', '.join(sorted(engine.answers)) or 'nothing'}"],
                    hint=f"engines that serve `{kind}`: {', '.join(able)}" if able else f"no engine serves `{kind}`",
                )
                continue
            reason = engine.refuses(model, served) if engine.refuses is not None else None
            if reason is not None:
                diags.error("E009", f"model `{name}` cannot serve answer kind `{kind}`: {reason[0]}", span, hint=reason[1])


def _group_by(s: ast.Setting | None, axes: set[str], diags: Diagnostics, extra: set[str] = frozenset()) -> list[str]:
    """``group_by``: axes of the study, item fields and model attributes (``extra``)."""
    if s is None:
        return [a for a in CELL_AXIS_NAMES if a in axes]
    out = []
    for n, span in axis_names(s.value, diags):
        if n not in axes and n not in extra:
            own = [a for a in CELL_AXIS_NAMES if a in axes]
            listed = f"axes: {', '.join(own)}" + (f"; item fields and model attributes: {', '.join(sorted(extra))}" if extra else "")
            diags.error("E014", f"`{n}` is not an axis, item field or model attribute of this study", span, hint=did_you_mean(n, own + sorted(extra), listed))
        else:
            out.append(n)
    return out
