"""Datasets: each ``dataset NAME = jsonl("path") { ... }`` read and its mapping
checked against the file.

``read_datasets(decls, diags) -> (datasets, records)``: dataset name -> its
:class:`~xlspec.spec.DatasetSpec`, and dataset name -> its records (read once here, reused
by the study checks and by expansion).  Reports missing and unreadable files, bad records,
mapped fields the file lacks, fields indexed by language or country that are not objects,
the ``scale`` and ``labels`` settings, and a missing ``id``.
"""

from __future__ import annotations

import os

from .. import ast
from ..data import DataError, Record, read_records
from ..diagnostics import Diagnostics, Span, suggest
from ..spec import DatasetSpec, FieldMap
from .context import did_you_mean, display, span_of, where
from .declarations import Declarations
from .vocabulary import DATA_FORMATS, FIELD_INDEXES, LABELS


def read_datasets(decls: Declarations, diags: Diagnostics) -> tuple[dict[str, DatasetSpec], dict[str, list[Record]]]:
    datasets: dict[str, DatasetSpec] = {}
    records: dict[str, list[Record]] = {}
    for d in decls["dataset"].values():
        got = _dataset(d, decls.folder(d), diags)
        if got is not None:
            datasets[d.name.text], records[d.name.text] = got
    return datasets, records


def _dataset(d: ast.Decl, folder: str, diags: Diagnostics) -> tuple[DatasetSpec, list[Record]] | None:
    v = d.value
    if not isinstance(v, ast.Call) or v.func.text not in DATA_FORMATS or len(v.args) != 1 or not isinstance(v.args[0], ast.Str):
        if v is not None:
            hint = did_you_mean(v.func.text, DATA_FORMATS, None) if isinstance(v, ast.Call) else None
            diags.error("E014", 'a dataset is a file: jsonl("path") or csv("path")', span_of(v), hint=hint)
        return None
    rel = v.args[0].value
    abs_path = os.path.normpath(os.path.join(folder, rel))
    if not os.path.isfile(abs_path):
        diags.error("E010", f"dataset file not found: {rel}", v.args[0].span, notes=[f"looked for {display(abs_path)} (paths are relative to the spec file)"])
        return None
    try:
        records, digest = read_records(abs_path, v.func.text)
    except DataError as e:
        diags.error("E015", f"bad data file: {e.message}", Span.point(display(e.path), e.line, 1), context=d.name.span, notes=[f"dataset `{d.name.text}` declared at {where(d.name.span)}"])
        return None
    except OSError as e:
        diags.error("E010", f"cannot read dataset file {rel}: {e.strerror}", v.args[0].span)
        return None
    if not records:
        diags.error("E015", f"dataset file {rel} has no records", v.args[0].span)
        return None
    seen_keys: dict[str, int] = {}
    for r in records:
        for k in r.fields:
            seen_keys.setdefault(k, r.line)
    fields: dict[str, FieldMap] = {}
    scale = None
    labels = None
    for s in d.body.settings if d.body else ():
        key = s.key.text
        if key == "scale":
            scale = _scale(s.value, diags)
            continue
        if key == "labels":
            if isinstance(s.value, ast.Ref) and s.value.is_name and s.value.parts[0].text in LABELS:
                labels = s.value.parts[0].text
            else:
                diags.error("E014", "labels are `numbers` (1, 2, ...) or `letters` (A, B, ...)", span_of(s.value))
            continue
        fm = _field_map(s, seen_keys, rel, records, diags)
        if fm is not None:
            fields[key] = fm
    if "id" not in fields:
        diags.error("E014", f"dataset `{d.name.text}` maps no `id` field", d.name.span, hint="add `id = <field>` so items can be paired across languages")
    spec = DatasetSpec(
        name=d.name.text, format=v.func.text, path=rel, abs_path=abs_path, sha256=digest, fields=fields,
        scale=scale, labels=labels or ("numbers" if scale else "letters"),
    )
    return spec, records


def _scale(v: ast.Expr, diags: Diagnostics) -> tuple[float, float] | None:
    if isinstance(v, ast.Call) and v.func.text == "ordinal" and len(v.args) == 2 and all(isinstance(a, ast.Num) for a in v.args):
        lo, hi = (a.value for a in v.args)
        if hi > lo:
            return (lo, hi)
    diags.error("E014", "scale is ordinal(MIN, MAX) with MIN < MAX", span_of(v))
    return None


def _field_map(s: ast.Setting, seen: dict[str, int], rel: str, records: list[Record], diags: Diagnostics) -> FieldMap | None:
    v = s.value
    refs = list(v.items) if isinstance(v, ast.ListExpr) else [v]
    if not refs or not all(isinstance(r, ast.Ref) and len(r.parts) == 1 for r in refs):
        diags.error("E014", "a field mapping names a data field: `name = field`, `field[lang]`, `field[country]` or a list of fields", span_of(v))
        return None
    index = None
    ok = True
    for r in refs:
        src = r.parts[0].text
        if src not in seen:
            close = suggest(src, seen)
            diags.error("E011", f"{rel} has no field `{src}`", r.parts[0].span, hint=f"did you mean `{close}`?" if close else f"fields in the file: {', '.join(sorted(seen)[:12])}")
            ok = False
        if r.index is not None:
            if r.index.text not in FIELD_INDEXES:
                diags.error("E014", f"a field is indexed by `lang` or `country`, not `{r.index.text}`", r.index.span, hint=did_you_mean(r.index.text, FIELD_INDEXES, None))
                ok = False
            elif isinstance(v, ast.ListExpr):
                diags.error("E014", "a list of fields cannot be indexed", r.index.span)
                ok = False
            else:
                index = r.index.text
                bad = next((rec for rec in records if src in rec.fields and not isinstance(rec.fields[src], dict)), None)
                if bad is not None:
                    diags.error("E015", f"field `{src}` is indexed by {index}, so it must map {index} codes to values", Span.point(rel, bad.line, 1), context=r.span, notes=[f"in {rel} line {bad.line}, `{src}` is a {type(bad.fields[src]).__name__}"])
                    ok = False
    if not ok:
        return None
    if isinstance(v, ast.ListExpr):
        return FieldMap(source=[r.parts[0].text for r in refs])
    return FieldMap(source=refs[0].parts[0].text, index=index)
