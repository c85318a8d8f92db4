"""Coverage: every cell of a study has items to ask.

``check_coverage(...)`` runs inside the study pass, once the study's names are resolved.  A
study promises its cross product: every language in every dataset, every partition value and
subset with items.  A cell without items would compile, run and report nothing, so:

- a language of the study in which a dataset has no item (or none that ``where`` keeps), a
  country of the study for which a field indexed by ``[country]`` holds no value, and a
  few-shot pool with fewer examples in a language than ``shots`` asks for, are E017;
- a partition value or subset that selects no item of a dataset in the study's languages is
  E018; where it selects no item of any dataset at all (a misspelt value), the hint offers
  the values the data has;
- so is a cell that is empty although each of its values has items somewhere: a partition
  value or subset with items in some of the study's languages but none in another, or a
  subset with no item in one partition value;
- two items with one id that meet in one cell because the study has no ``partition`` axis
  are E015 (ids are checked per partition value in the dataset pass).

``coverage = partial`` in the study turns the E017 and E018 of a language, country, pool or
dataset that lacks items into warnings (the cells stay, empty); a partition value or subset
that matches nothing in any dataset stays an error.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .. import ast
from ..diagnostics import Diagnostic, Diagnostics, Span, suggest
from ..data import short
from ..items import empty, evaluate, partition_of, record_languages
from .context import did_you_mean, items_of, span_of, where as where_text
from .filters import filter_fields

if TYPE_CHECKING:
    from .studies import Scope

COVERAGE: dict[str, str] = {
    "full": "every language has items in every dataset, and every partition value and subset selects items (the default)",
    "partial": "a language, country, partition value or subset without items in a dataset is a warning, and its cells stay empty",
}
"""The values of a study's ``coverage`` setting."""


def coverage_mode(setting: ast.Setting | None, diags: Diagnostics) -> str:
    if setting is None:
        return "full"
    v = setting.value
    name = v.parts[0].text if isinstance(v, ast.Ref) and v.is_name else None
    if name in COVERAGE:
        return name
    diags.error(
        "E014", "coverage is `full` (the default: every cell has items) or `partial` (cells without items are allowed)", span_of(v),
        hint=did_you_mean(name or "", COVERAGE, None),
    )
    return "full"


class _Report:
    def __init__(self, partial: bool, diags: Diagnostics):
        self.partial, self.diags = partial, diags

    def gap(self, code: str, message: str, span: Span | None, *, context: Span | None, hint: str | None, notes: list[str]) -> None:
        """A missing part of the cross product: an error, or a warning under coverage = partial."""
        if self.partial:
            notes = notes + ["allowed by `coverage = partial`: these cells are empty"]
            self.diags.add(Diagnostic(code, message, span, "warning", None, context, notes))
        else:
            self.diags.error(code, message, span, hint=hint, context=context, notes=notes)


def _listed(values: list[str], limit: int = 12) -> str:
    return ", ".join(values[:limit]) + (f", ... ({len(values)} in all)" if len(values) > limit else "")


def _named(langs: list[str]) -> str:
    """Language codes for a message: with their names when there are few."""
    if len(langs) > 3:
        return _listed([f"`{lang}`" for lang in langs])
    from ..languages import describe

    return ", ".join(f"`{lang}` ({describe(lang)})" for lang in langs)


def check_coverage(
    d: ast.Decl, settings: dict[str, ast.Setting], scope: Scope, *, datasets: list[str], languages: dict[str, list[str]],
    countries: dict[str, str] | None, partitions: list[str] | None, subsets: list[str] | None, where: Any,
    shots: list[int], fewshot: str | None, diags: Diagnostics,
) -> None:
    partial = coverage_mode(settings.get("coverage"), diags) == "partial"
    report = _Report(partial, diags)
    study = d.name.text
    all_langs = sorted({lang for ls in languages.values() for lang in ls})
    lang_span = span_of(settings["language"].value) if "language" in settings else d.name.span
    where_span = span_of(settings["where"].value) if "where" in settings else None
    hint_drop = "take the language out of the study, add its items to the data, or write `coverage = partial` in the study to keep its cells empty"

    for name in dict.fromkeys(datasets):
        ds, recs = scope.datasets.get(name), scope.records.get(name)
        if ds is None or recs is None:
            continue
        decl = scope.decls["dataset"].get(name)
        context = decl.name.span if decl is not None else None
        plan = {"fields": {k: v.model_dump(exclude_none=True) for k, v in ds.fields.items()}}
        langs_of = [record_languages(r, plan) for r in recs]
        fields_here = {k for r in recs for k in r.fields}
        # (A filter that reads a field this dataset lacks is E011 already.)
        w = where if where is not None and filter_fields(where) <= fields_here else None
        keep = [w is None or _true(w, r.fields) for r in recs]
        if w is not None and not any(keep):
            diags.error(
                "E018", f"`where` selects no item of dataset `{name}`", where_span, context=context,
                hint=_filter_hint(w, recs), notes=[f"study `{study}`; dataset `{name}` has {len(recs)} records"],
            )
            continue

        # Languages: every language of the study has items in the dataset.
        have, have_kept = _languages(langs_of, [True] * len(recs)), _languages(langs_of, keep)
        missing = [lang for lang in all_langs if not _has(have, lang)]
        if missing:
            present = sorted(have) if have is not None else []
            report.gap(
                "E017",
                f"dataset `{name}` has no items in {_named(missing)}, {'a language' if len(missing) == 1 else 'languages'} of study `{study}`",
                lang_span, context=context, hint=hint_drop,
                notes=[f"dataset `{name}` ({ds.path}) has items in {_listed(present) or 'no language'}"],
            )
        filtered = [lang for lang in all_langs if lang not in missing and not _has(have_kept, lang)]
        if filtered:
            report.gap(
                "E017", f"`where` leaves dataset `{name}` no items in {_named(filtered)}, {'a language' if len(filtered) == 1 else 'languages'} of study `{study}`",
                where_span, context=context, hint="loosen the filter, or write `coverage = partial` in the study to keep those cells empty", notes=[],
            )

        # Countries: a field indexed by [country] holds a value for every country of the study.
        if countries:
            for key, fm in ds.fields.items():
                if fm.index != "country" or not isinstance(fm.source, str):
                    continue
                codes = {str(c) for r in recs if isinstance(r.fields.get(fm.source), dict) for c, v in r.fields[fm.source].items() if not empty(v)}
                lacking = [c for c in sorted(countries) if c not in codes]
                if lacking:
                    report.gap(
                        "E017", f"dataset `{name}` has no `{fm.source}[country]` values for {_listed(lacking)}, {'a country' if len(lacking) == 1 else 'countries'} of study `{study}`",
                        span_of(settings["country"].value) if "country" in settings else d.name.span, context=context,
                        hint="add the values to the data, take the country out of the study, or write `coverage = partial` in the study",
                        notes=[f"`{key}` maps `{fm.source}[country]`; the data has values for {_listed(sorted(codes)) or 'no country'}"],
                    )

        scoped = [i for i in range(len(recs)) if keep[i] and (langs_of[i] is None or any(lang in langs_of[i] for lang in all_langs))]
        # Partition values: each selects items of the dataset.
        part = ds.fields.get("partition")
        values_left: list[tuple[str, Span | None]] = []
        if partitions and part is not None and isinstance(part.source, str):
            everywhere = _partition_values(recs, part.source, range(len(recs)))
            in_scope = _partition_values(recs, part.source, scoped)
            for value, span in _written(settings.get("partition"), partitions):
                if value in in_scope:
                    values_left.append((value, span))
                    continue
                if value not in _all_partition_values(scope, datasets):
                    diags.error(
                        "E018", f"partition value `{value}` matches no item of dataset `{name}`", span, context=context,
                        hint=did_you_mean(value, everywhere, f"values of `{part.source}` in the data: {_listed([short(v) for v in sorted(everywhere)])}"),
                        notes=[f"study `{study}`; a partition value selects the items whose `{part.source}` is that value"],
                    )
                else:
                    report.gap(
                        "E018", f"partition value `{value}` has no item of dataset `{name}` in study `{study}`'s languages" + (" that `where` keeps" if w is not None else ""),
                        span, context=context, hint="take the value out of the study, or write `coverage = partial` in the study to keep its cells empty",
                        notes=[f"values of `{part.source}` in those items: {_listed([short(v) for v in sorted(in_scope)]) or 'none'}"],
                    )

        # Subsets: each selects items of the dataset.
        subsets_left: list[tuple[str, Span | None, Any]] = []
        for sub, span in _written(settings.get("subset"), subsets or []):
            tree = scope.subsets.get(sub)
            if tree is None or not filter_fields(tree) <= fields_here:
                continue  # unresolved, or E011: it reads a field this dataset lacks
            if any(_true(tree, recs[i].fields) for i in scoped):
                subsets_left.append((sub, span, tree))
                continue
            sdecl = scope.decls["subset"].get(sub)
            notes = [f"subset `{sub}` declared at {where_text(sdecl.name.span)}"] if sdecl is not None else []
            anywhere = any(_true(tree, r.fields) for n in datasets if n in scope.records for r in scope.records[n])
            if not anywhere:
                diags.error("E018", f"subset `{sub}` selects no item of dataset `{name}`", span, context=context, hint=_filter_hint(tree, recs), notes=notes)
            else:
                report.gap(
                    "E018", f"subset `{sub}` selects no item of dataset `{name}` in study `{study}`'s languages" + (" that `where` keeps" if w is not None else ""),
                    span, context=context, hint="take the subset out of the study, or write `coverage = partial` in the study to keep its cells empty", notes=notes,
                )

        # Cells: every language with every partition value and subset, not only each of them
        # in some language of the study.
        langs_left = [lang for lang in all_langs if lang not in missing and lang not in filtered]
        if langs_left and (values_left or subsets_left):
            _cells(study, name, plan, recs, langs_of, scoped, langs_left, values_left, subsets_left, w is not None, context, report)

        # Without a partition axis, the partitions of a dataset meet in one cell: their ids
        # must not repeat there.
        if not partitions and part is not None and "id" in ds.fields and isinstance(ds.fields["id"].source, str):
            _cross_partition_ids(d, name, ds, recs, langs_of, scoped, all_langs, scope.subsets, subsets, settings, context, diags)

    # Few-shot pool: enough examples in every language.
    if fewshot and shots and max(shots) > 0 and fewshot in scope.records and fewshot in scope.datasets:
        need = max(shots) + (1 if fewshot in datasets else 0)
        pool = scope.datasets[fewshot]
        plan = {"fields": {k: v.model_dump(exclude_none=True) for k, v in pool.fields.items()}}
        counts = {lang: 0 for lang in all_langs}
        for r in scope.records[fewshot]:
            langs = record_languages(r, plan)
            for lang in all_langs:
                if langs is None or lang in langs:
                    counts[lang] += 1
        short_of = [f"{lang} ({n})" for lang, n in counts.items() if n < need]
        if short_of:
            decl = scope.decls["dataset"].get(fewshot)
            report.gap(
                "E017", f"few-shot pool `{fewshot}` has fewer than {need} examples in {_listed(short_of)}, for shots = {max(shots)}",
                span_of(settings["fewshot"].value) if "fewshot" in settings else d.name.span, context=decl.name.span if decl is not None else None,
                hint="add examples in those languages, lower `shots`, or write `coverage = partial` in the study (those prompts get fewer examples)",
                notes=[f"study `{study}`" + ("; the pool is also a dataset of the study, and an item is never its own example" if fewshot in datasets else "")],
            )


def _cells(study: str, name: str, plan: dict, recs: list, langs_of: list, scoped: list[int], langs: list[str],
           values: list[tuple[str, Span | None]], subsets: list[tuple[str, Span | None, Any]], filtered: bool,
           context: Span | None, report: _Report) -> None:
    """Cells that are empty although each of their axis values has items somewhere in the
    study: a partition value or subset with items in some of the study's languages but not
    in this one, or a subset with no item in one partition.  Items are counted the way
    :func:`xlspec.items.select` picks them."""
    wanted = set(langs)
    # (language, partition value or None, subset or None) of every item in scope.
    found: set[tuple[str, str | None, str | None]] = set()
    for i in scoped:
        r = recs[i]
        here = wanted if langs_of[i] is None else langs_of[i] & wanted
        subs = [sub for sub, _, tree in subsets if _true(tree, r.fields)] if subsets else [None]
        for lang in here:
            value = partition_of(r, plan, lang) if values else None
            for sub in subs:
                found.add((lang, value, sub))
    by_value = {(lang, v) for lang, v, _ in found}
    by_subset = {(lang, s) for lang, _, s in found}
    keep = " that `where` keeps" if filtered else ""
    for value, span in values:
        lacking = [lang for lang in langs if (lang, value) not in by_value]
        if lacking:
            report.gap(
                "E018", f"partition value `{value}` has no item of dataset `{name}`{keep} in {_named(lacking)}, {_a_language(lacking)} of study `{study}`",
                span, context=context, hint="take the languages or the value out of the study, or write `coverage = partial` in the study to keep those cells empty",
                notes=[f"the value has items in {_listed(sorted({lang for lang, v in by_value if v == value}))}"],
            )
    for sub, span, _ in subsets:
        lacking = [lang for lang in langs if (lang, sub) not in by_subset]
        if lacking:
            report.gap(
                "E018", f"subset `{sub}` selects no item of dataset `{name}`{keep} in {_named(lacking)}, {_a_language(lacking)} of study `{study}`",
                span, context=context, hint="take the languages or the subset out of the study, or write `coverage = partial` in the study to keep those cells empty",
                notes=[f"the subset has items in {_listed(sorted({lang for lang, s in by_subset if s == sub}))}"],
            )
    if not (values and subsets):
        return
    for sub, span, _ in subsets:
        for value, _ in values:
            lacking = [lang for lang in langs if (lang, value) in by_value and (lang, sub) in by_subset and (lang, value, sub) not in found]
            if lacking:
                report.gap(
                    "E018", f"subset `{sub}` selects no item of dataset `{name}` with partition value `{value}` in {_named(lacking)}, {_a_language(lacking)} of study `{study}`",
                    span, context=context, hint="take the subset or the value out of the study, or write `coverage = partial` in the study to keep those cells empty",
                    notes=[],
                )


def _a_language(langs: list[str]) -> str:
    return "a language" if len(langs) == 1 else "languages"


def _true(tree: Any, fields: dict) -> bool:
    try:
        return bool(evaluate(tree, fields))
    except Exception:  # a comparison the data cannot make selects nothing
        return False


def _languages(langs_of: list[set[str] | None], keep: list[bool]) -> set[str] | None:
    """The languages with items (None: the dataset's items are in every language)."""
    out: set[str] = set()
    for langs, k in zip(langs_of, keep):
        if not k:
            continue
        if langs is None:
            return None
        out |= langs
    return out


def _has(langs: set[str] | None, lang: str) -> bool:
    return langs is None or lang in langs


def _partition_values(recs: list, src: str, indexes) -> set[str]:
    out: set[str] = set()
    for i in indexes:
        v = recs[i].fields.get(src)
        if isinstance(v, dict):  # partition[lang]
            out |= {str(x) for x in v.values()}
        else:
            out.add(str(v))
    return out


def _all_partition_values(scope: Scope, datasets: list[str]) -> set[str]:
    out: set[str] = set()
    for n in datasets:
        ds, recs = scope.datasets.get(n), scope.records.get(n)
        part = ds.fields.get("partition") if ds is not None else None
        if part is not None and isinstance(part.source, str) and recs is not None:
            out |= _partition_values(recs, part.source, range(len(recs)))
    return out


def _written(setting: ast.Setting | None, values: list[str]) -> list[tuple[str, Span | None]]:
    """Each value with where the study writes it (its group's name where a group holds it)."""
    items = items_of(setting.value) if setting is not None else []
    spans: dict[str, Span | None] = {}
    for item in items:
        text = item.value if isinstance(item, ast.Str) else item.parts[0].text if isinstance(item, ast.Ref) and item.is_name else None
        if text is not None:
            spans.setdefault(text, item.span)
    fallback = span_of(setting.value) if setting is not None else None
    return [(v, spans.get(v, fallback)) for v in dict.fromkeys(values)]


def _comparisons(tree: Any) -> list[tuple[str, Any]]:
    """(field, constant) of the ``==`` and ``in`` comparisons in a filter tree."""
    if not isinstance(tree, list) or not tree:
        return []
    op = tree[0]
    if op in ("==", "in") and len(tree) == 3:
        a, b = tree[1], tree[2]
        if isinstance(a, list) and isinstance(b, list) and a[:1] == ["field"] and b[:1] == ["const"]:
            consts = b[1] if op == "in" and isinstance(b[1], list) else [b[1]]
            return [(a[1], c) for c in consts]
        if isinstance(a, list) and isinstance(b, list) and b[:1] == ["field"] and a[:1] == ["const"] and op == "==":
            return [(b[1], a[1])]
    if op in ("and", "or", "not"):
        return [c for x in tree[1:] for c in _comparisons(x)]
    return []


def _filter_hint(tree: Any, recs: list) -> str | None:
    """Did you mean, for a filter constant that no record has in that field."""
    for fld, const in _comparisons(tree):
        values = {r.fields.get(fld) for r in recs if isinstance(r.fields.get(fld), (str, int, float, bool))}
        if const in values:
            continue
        texts = sorted(str(v) for v in values)
        close = suggest(str(const), texts) if isinstance(const, str) else None
        if close is not None:
            return f"did you mean `{close}`? `{fld}` is never `{short(const)}` in the data"
        if texts:
            return f"`{fld}` is never `{short(const)}` in the data; its values: {_listed([short(t) for t in texts], 10)}"
    return None


def _cross_partition_ids(d: ast.Decl, name: str, ds, recs: list, langs_of: list, scoped: list[int], all_langs: list[str],
                         trees: dict, subsets: list[str] | None, settings: dict, context: Span | None, diags: Diagnostics) -> None:
    src = ds.fields["id"].source
    part_src = ds.fields["partition"].source
    for tree in [trees.get(s) for s in subsets] if subsets else [None]:
        seen: dict[tuple[str, str], tuple[int, Any]] = {}
        for i in scoped:
            r = recs[i]
            if tree is not None and not _true(tree, r.fields):
                continue
            item_id = r.fields.get(src)
            if item_id is None:
                continue
            langs = langs_of[i]
            for lang in all_langs if langs is None else sorted(langs & set(all_langs)):
                key = (str(item_id), lang)
                prev = seen.get(key)
                if prev is None:
                    seen[key] = (r.line, r.fields.get(part_src))
                    continue
                diags.error(
                    "E015",
                    f"item id `{short(item_id)}` is on line {prev[0]} and line {r.line} of {ds.path} (partitions `{short(prev[1])}` and `{short(r.fields.get(part_src))}`), which study `{d.name.text}` asks in one cell ({lang}): it has no `partition` axis",
                    span_of(settings["dataset"].value), context=context,
                    hint="add a `partition` axis to the study (partition = [...]), or a `where` that keeps one partition",
                    notes=[f"dataset `{name}` ({ds.path}) maps `partition`; without the axis a cell holds every partition's items"],
                )
                return
