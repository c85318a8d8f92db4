"""Check phase: parsed files -> a typed :class:`xlspec.spec.Spec`, or diagnostics.

``check_file(path) -> CheckResult``.  The checker is a sequence of passes, each a function
of what the earlier ones produced, run in the order the data needs:

1. ``load_files`` (load.py): the spec and its imports, parsed; cycles -> E012.
2. ``collect_declarations`` (declarations.py): declarations by kind and name, duplicates,
   shapes (the table in vocabulary.py).
3. ``resolve_groups`` (groups.py): named groups, before anything that may use one.
4. ``resolve_language_sets`` (languages.py): language sets, which may use groups;
   ``resolve_countries``: country -> native language.
5. ``read_datasets`` (datasets.py): data files, read once, and their field mappings;
   ``read_response_datasets`` (stages.py): datasets made of another study's responses.
6. ``resolve_framings``, ``resolve_modes`` (framings.py), ``resolve_models`` (models.py),
   ``resolve_subsets`` (filters.py): the declarations a study names.
7. ``resolve_studies`` (studies.py): each study against all of the above, with its
   answers (answers.py), metrics (metrics.py) and coverage (coverage.py: every language,
   partition value and subset has items in every dataset).
8. ``resolve_reports`` (reports.py).

All problems are collected in one pass through this sequence: a pass reports what it finds
and leaves out what it could not resolve, and later passes skip what is missing.  What
exists (engines, answer kinds, parsers, metrics, axes, model and mode settings, report
templates) is read from registries; the spec language's own words and their summaries are
in vocabulary.py.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..data import Record
from ..diagnostics import Diagnostics, SourceCache
from ..spec import SourceFile, Spec
from .datasets import read_datasets
from .declarations import Declarations, collect_declarations
from .filters import resolve_subsets
from .framings import resolve_framings, resolve_modes
from .groups import resolve_groups
from .languages import resolve_countries, resolve_language_sets
from .load import LoadedFile, load_files
from .models import resolve_models
from .reports import resolve_reports
from .stages import read_response_datasets
from .studies import Scope, resolve_studies
from .derived import check_metric_names, warn_unused_metrics
from .vocabulary import KINDS, STUDY_SETTINGS

__all__ = ["CheckResult", "KINDS", "LoadedFile", "STUDY_SETTINGS", "check_file"]


@dataclass
class CheckResult:
    spec: Spec | None
    diagnostics: Diagnostics
    sources: SourceCache
    records: dict[str, list[Record]] = field(default_factory=dict)
    """Dataset name -> its records, read once here and reused by expansion."""


def check_file(path: str, *, allow_outside_data: bool = False) -> CheckResult:
    """``allow_outside_data``: data files may resolve outside the root spec's folder (by
    default such a path is E019 and the file is not read)."""
    diags = Diagnostics()
    sources = SourceCache()
    files = load_files(path, diags, sources)
    if files is None or diags.has_errors():
        return CheckResult(None, diags, sources)
    decls = collect_declarations(files, diags)
    check_metric_names(decls, diags)
    warn_unused_metrics(decls, diags)
    groups = resolve_groups(decls, diags)
    languages = resolve_language_sets(decls, groups, diags)
    countries = resolve_countries(decls, diags)
    datasets, records = read_datasets(decls, diags, allow_outside_data, sorted({c for codes in languages.codes.values() for c in codes or ()}))
    read_response_datasets(decls, groups, datasets, diags)
    scope = Scope(
        decls=decls,
        groups=groups,
        languages=languages,
        countries=countries,
        datasets=datasets,
        records=records,
        framings=resolve_framings(decls, diags),
        modes=resolve_modes(decls, diags),
        models=resolve_models(decls, diags),
        subsets=resolve_subsets(decls, diags),
    )
    studies = resolve_studies(scope, diags)
    reports = resolve_reports(decls, diags)
    diags.merge_duplicates()
    spec = None
    if not diags.has_errors() and decls.experiment is not None:
        spec = _spec(files, decls, scope, studies, reports)
    return CheckResult(spec, diags, sources, records)


def _spec(files: list[LoadedFile], decls: Declarations, scope: Scope, studies, reports) -> Spec:
    root, exp = files[0], decls.experiment
    spec_dir = os.path.dirname(root.path)
    return Spec(
        experiment=exp.name.text,
        title=exp.title.value if exp.title else "",
        path=root.path,
        sha256=root.sha256,
        imports=[SourceFile(path=os.path.relpath(f.path, spec_dir).replace(os.sep, "/"), sha256=f.sha256) for f in files[1:]],
        countries=scope.countries,
        datasets=scope.datasets,
        models=scope.models,
        framings=scope.framings,
        modes=scope.modes,
        subsets=scope.subsets,
        studies=studies,
        reports=reports,
    )
