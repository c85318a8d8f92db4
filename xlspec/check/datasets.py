"""Datasets: each ``dataset NAME = jsonl("path") { ... }`` read and its mapping
checked against the file.

``read_datasets(decls, diags, allow_outside_data) -> (datasets, records)``: dataset name ->
its :class:`~xlspec.spec.DatasetSpec`, and dataset name -> its records (read once here,
reused by the study checks and by expansion).  Reports paths outside the root spec's folder
(E019, unless ``allow_outside_data``), missing and unreadable files, bad records, mapped
fields the file lacks, fields indexed by language or country that are not objects, the
``scale`` and ``labels`` settings, and a missing ``id``.

Then every record is checked against the mapping (:func:`check_records`), so that what a
prompt or a metric reads is what the data says: an id on every item and no id twice where
items meet in one cell, options that are a list of texts the label set can name, a gold
answer that names an option, text where text is shown, well-formed targets and human
distributions.  Each kind of problem is reported once, at the first record that has it
(file, line, and the field's column), with how many more records have it.
"""

from __future__ import annotations

import os
import re

from .. import ast
from ..tables import CONFIG_LANGUAGE, HubUnavailable, language_configs, read_dataset
from ..data import DataError, Record, decode, json_key_col, json_type, line_text, read_bytes, read_records, short, value_col_in_line
from ..diagnostics import Diagnostics, Span, suggest
from ..items import GOLD_READINGS, LIST_FIELDS, SPECIAL_FIELDS, empty, gold_problem, gold_readings, is_text, max_options, option_values, record_languages
from ..normalize import normalize_label
from ..prompt import option_labels
from ..spec import DatasetSpec, FieldMap
from .context import did_you_mean, display, span_of, where
from .declarations import Declarations
from .stages import responses_call
from .vocabulary import DATA_FORMATS, FIELD_INDEXES, LABELS


def read_datasets(decls: Declarations, diags: Diagnostics, allow_outside_data: bool = False, languages: list[str] | None = None) -> tuple[dict[str, DatasetSpec], dict[str, list[Record]]]:
    """``allow_outside_data``: read data files that resolve (symbolic links followed) outside
    the root spec's folder; without it such a file is E019 and is not opened.
    ``languages``: every language code of the spec's language sets, the languages a hub
    dataset's ``config = "{lang}"`` is read for (a language without a config is left out)."""
    datasets: dict[str, DatasetSpec] = {}
    records: dict[str, list[Record]] = {}
    for d in decls["dataset"].values():
        if responses_call(d) is not None:
            continue  # another study's responses: stages.py, once the files are read
        got = _dataset(d, decls.folder(d), decls.root.path, allow_outside_data, diags, languages or [])
        if got is not None:
            datasets[d.name.text], records[d.name.text] = got
    return datasets, records


def inside_folder(path: str, folder: str) -> bool:
    """``path`` resolves (symbolic links followed) to ``folder`` or somewhere under it."""
    real, base = os.path.realpath(path), os.path.realpath(folder)
    return real == base or real.startswith(base.rstrip(os.sep) + os.sep)


def path_problem(rel: str) -> str | None:
    """Why a path written in a spec cannot name a file (None when it can)."""
    if "\0" in rel:
        return "contains a NUL character"
    try:
        os.fsencode(rel)
    except UnicodeError:
        return "is not valid text (it holds an unpaired surrogate)"
    if not rel.strip():
        return "is empty"
    return None


def outside_note(abs_path: str, root_spec: str) -> str:
    return f"it resolves to {display(os.path.realpath(abs_path))}; a spec reads files in the folder of {display(root_spec)} and below it"


DATASET_FORMS = "a dataset is a file, jsonl(\"path\"), csv(\"path\") or parquet(\"path\"), a hub dataset, hf(\"org/name\", config = \"...\", split = \"...\"), or a study's responses: responses(STUDY)"
HUB_ARGS = {
    "config": "the config: one name, \"{lang}\" (one config per language, named by its code), or a map { en: \"eng\", fr: \"fra\" }",
    "split": "the split (train, test, ...); needed where the dataset has several",
    "revision": "a branch, tag or commit of the hub repository",
}
ROW_FORMATS = ("parquet", "hf")
"""Formats whose records are table rows: a problem is located as ``<source>: row N``."""
HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?")


def _hub_args(v: ast.Call, diags: Diagnostics) -> dict | None:
    """``hf(...)``'s keyword arguments (None after an error, reported)."""
    out: dict = {}
    ok = True
    takes = "hf(\"org/name\") takes: " + ", ".join(HUB_ARGS)
    for a in v.keywords:
        key = a.name.text
        if key not in HUB_ARGS or key in out:
            message = f"`hf` takes no argument `{key}`" if key not in HUB_ARGS else f"`{key}` is given twice"
            diags.error("E014", message, a.name.span, hint=did_you_mean(key, HUB_ARGS, takes))
            ok = False
            continue
        if key == "config" and isinstance(a.value, ast.MapExpr):
            table = {}
            for e in a.value.entries:
                if not isinstance(e.value, ast.Str) or not e.value.value:
                    diags.error("E014", "a config map gives each language code the name of its config, as a string", span_of(e.value))
                    ok = False
                else:
                    table[e.key.text] = e.value.value
            out[key] = table
        elif isinstance(a.value, ast.Str) and a.value.value:
            out[key] = a.value.value
        elif isinstance(a.value, ast.Ref) and a.value.is_name and key != "config":
            out[key] = a.value.parts[0].text
        else:
            diags.error("E014", f"`{key}` is {HUB_ARGS[key]}", span_of(a.value))
            ok = False
    return out if ok else None


def _dataset(d: ast.Decl, folder: str, root_spec: str, allow_outside_data: bool, diags: Diagnostics, languages: list[str]) -> tuple[DatasetSpec, list[Record]] | None:
    v = d.value
    forms_ok = isinstance(v, ast.Call) and v.func.text in DATA_FORMATS and len(v.positional) == 1 and isinstance(v.positional[0], ast.Str)
    if not forms_ok or (v.keywords and v.func.text != "hf"):
        if v is not None:
            hint = did_you_mean(v.func.text, DATA_FORMATS, None) if isinstance(v, ast.Call) else None
            if forms_ok:
                hint = f"only hf(...) takes {', '.join(HUB_ARGS)}"
            diags.error("E014", DATASET_FORMS, span_of(v), hint=hint)
        return None
    fmt = v.func.text
    arg = v.positional[0]
    rel = arg.value
    hub: dict = {}
    if fmt == "hf":
        got = _hub_args(v, diags)
        if got is None:
            return None
        hub = got
    is_hub_id = fmt == "hf" and not rel.startswith((".", "/", "~")) and not os.path.isdir(os.path.join(folder, rel))
    if is_hub_id:
        abs_path, shown = "", rel
        if not HUB_ID.fullmatch(rel):
            diags.error("E010", f"`{rel}` is neither a hub dataset id (org/name) nor a folder next to the spec", arg.span, hint="a local copy is hf(\"./folder\") (relative to the spec)")
            return None
    else:
        bad = path_problem(rel)
        if bad is not None:
            diags.error("E010", f"the dataset path {bad}", arg.span)
            return None
        abs_path = os.path.normpath(os.path.join(folder, rel))
        if not allow_outside_data and not inside_folder(abs_path, os.path.dirname(root_spec)):
            diags.error(
                "E019", f"dataset file {rel} is outside the spec's folder", arg.span,
                hint="put the file in the spec's folder (or a folder under it), or compile with --allow-outside-data",
                notes=[outside_note(abs_path, root_spec)],
            )
            return None
        if not os.path.lexists(abs_path):
            diags.error("E010", f"dataset file not found: {rel}", arg.span, notes=[f"looked for {display(abs_path)} (paths are relative to the spec file)"])
            return None
        shown = display(abs_path)
    config = hub.get("config")
    configs = language_configs(config, languages) if fmt == "hf" else None
    try:
        records, digest, read = read_dataset(
            fmt, abs_path, hub_id=rel if is_hub_id else None, config=None if configs is not None else config, configs=configs,
            split=hub.get("split"), revision=hub.get("revision"), skip_missing=isinstance(config, str),
        )
    except DataError as e:
        diags.error("E015", f"bad data file: {e.message}", Span.point(shown, e.line, e.col), context=d.name.span, notes=[f"dataset `{d.name.text}` declared at {where(d.name.span)}"])
        return None
    except HubUnavailable as e:
        diags.error("E010", f"dataset `{d.name.text}`: {e.message}", arg.span)
        return None
    except OSError as e:
        diags.error("E010", f"cannot read dataset file {rel}: {e.strerror or e}", arg.span)
        return None
    if configs is not None and not read:
        tried = ", ".join(f"{k}: {c}" for k, c in configs.items()) or "no language is declared"
        diags.error("E010", f"dataset `{d.name.text}`: `{rel}` has no config for any language of the spec ({tried})", arg.span)
        return None
    if not records:
        diags.error("E015", f"dataset {'file ' if fmt != 'hf' else ''}{rel} has no records", arg.span)
        return None
    seen_keys: dict[str, int] = {}
    for r in records:
        for k in r.fields:
            seen_keys.setdefault(k, r.line)
    fields: dict[str, FieldMap] = {}
    scale = None
    labels = None
    gold_is: tuple[str, Span | None] | None = None
    for s in d.body.settings if d.body else ():
        key = s.key.text
        if key == "gold_is":
            name = s.value.parts[0].text if isinstance(s.value, ast.Ref) and s.value.is_name else None
            if name in GOLD_READINGS:
                gold_is = (name, s.value.span)
            else:
                diags.error("E014", "gold_is is `label` (A or 1), `index` (0-based) or `text` (the option's text)", span_of(s.value), hint=did_you_mean(name or "", list(GOLD_READINGS), None))
            continue
        if key == "scale":
            scale = _scale(s.value, diags)
            continue
        if key == "labels":
            if isinstance(s.value, ast.Ref) and s.value.is_name and s.value.parts[0].text in LABELS:
                labels = s.value.parts[0].text
            else:
                diags.error("E014", "labels are `numbers` (1, 2, ...) or `letters` (A, B, ...)", span_of(s.value))
            continue
        fm = _field_map(s, seen_keys, shown, records, diags)
        if fm is not None:
            fields[key] = fm
    if "id" not in fields:
        diags.error("E014", f"dataset `{d.name.text}` maps no `id` field", d.name.span, hint="add `id = <field>` so items can be paired across languages")
    if read is not None:  # one config per language: the long layout, by the config's language
        if "language" in fields:
            span = next(s.key.span for s in d.body.settings if s.key.text == "language")
            diags.error("E014", "`language` comes from the config here (one config per language); do not map it", span)
        fields["language"] = FieldMap(source=CONFIG_LANGUAGE)
    spec = DatasetSpec(
        name=d.name.text, format=fmt, path="" if is_hub_id else rel, abs_path=abs_path, sha256=digest, fields=fields,
        scale=scale, labels=labels or ("numbers" if scale else "letters"), hub_id=rel if is_hub_id else None,
        config=config if isinstance(config, str) and read is None else None, configs=read, split=hub.get("split"), revision=hub.get("revision"),
    )
    if "gold" in fields and "options" in fields:
        spec = spec.model_copy(update={"gold_is": _gold_reading(d, spec, records, gold_is, diags)})
    elif gold_is is not None:
        diags.error("E014", "gold_is says how gold names an option; this dataset maps no `options`" if "gold" in fields else "gold_is says how `gold` is read; this dataset maps no `gold`", gold_is[1])
    check_records(d, spec, records, shown, diags)
    return spec, records


def _gold_reading(d: ast.Decl, spec: DatasetSpec, records: list[Record], declared: tuple[str, Span | None] | None, diags: Diagnostics) -> str:
    """How gold names the right option: as the spec says, else the one reading every record
    fits (a label, a 0-based index or an option's text).  Where two fit every record (a
    whole number with `labels = numbers`: the label 1 or the index 1?) the spec has to say;
    where none does, labels, and the records that are not one are reported."""
    if declared is not None:
        return declared[0]
    fits = dict.fromkeys(GOLD_READINGS, 0)
    total = 0
    first_line = None
    for r in records:
        for labels, texts, value in _gold_options(r, spec):
            total += 1
            for reading in gold_readings(value, labels, texts):
                fits[reading] += 1
            first_line = first_line or r.line
    every = [g for g in GOLD_READINGS if total and fits[g] == total]
    if len(every) > 1:
        span = next((s.value.span for s in d.body.settings if s.key.text == "gold"), d.name.span) if d.body else d.name.span
        both = " or ".join(f"`{g}`" for g in every)
        diags.error(
            "E014", f"gold can be read as an option {' or as an option '.join(every)} in every record: say which with gold_is = {both}", span,
            hint="with labels = numbers a whole number is both a label (1 = the first option) and a 0-based index (1 = the second)",
        )
    # none fits every record: read labels (the default), and the records that are not one
    # are reported
    return every[0] if every else "label"


def _gold_options(r: Record, spec: DatasetSpec):
    """(labels, option texts, gold value) of a record, per language where they vary."""
    fields = spec.fields
    golds = {sub: value for sub, value, _present in _values(r, fields["gold"])}
    opts = fields["options"]
    subs = set(golds) - {None}
    if isinstance(opts.source, str) and opts.index is not None:
        subs |= {str(k) for k, v in (r.fields.get(opts.source) or {}).items() if not empty(v)} if isinstance(r.fields.get(opts.source), dict) else set()
    for sub in sorted(subs) or [None]:
        value = golds.get(sub, golds.get(None))
        texts = _option_texts(r, opts, sub)
        if value is None or not texts:
            continue
        yield option_labels(len(texts), spec.labels), texts, value


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
    if isinstance(v, ast.ListExpr) and s.key.text not in LIST_FIELDS:
        diags.error("E014", f"`{s.key.text}` is one value, not a list of fields (only {', '.join(f'`{n}`' for n in sorted(LIST_FIELDS))} can be)", span_of(v))
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
                    col = json_key_col(line_text(rel, bad.line), src)
                    diags.error("E015", f"field `{src}` is indexed by {index}, so it must map {index} codes to values", Span.point(rel, bad.line, col), context=r.span, notes=[f"in {rel} line {bad.line}, `{src}` is a {type(bad.fields[src]).__name__}"])
                    ok = False
    if not ok:
        return None
    if isinstance(v, ast.ListExpr):
        return FieldMap(source=[r.parts[0].text for r in refs])
    return FieldMap(source=refs[0].parts[0].text, index=index)


# ---- records against the mapping ---------------------------------------------------------


class _Problems:
    """Problems in a data file's records: one diagnostic per kind (at the first record that
    has it), with how many more records have it, so a file with one systematic mistake gives
    one error, not thousands."""

    def __init__(self, d: ast.Decl, spec: DatasetSpec, records: list[Record], shown: str):
        self.d, self.spec, self.shown = d, spec, shown
        self.header = list(records[0].fields) if spec.format == "csv" and records else []
        self.rows = spec.format in ROW_FORMATS
        """Records are rows of a table (located as ``row N``), not lines of a text file."""
        self.ranges: list[tuple[str, int, int]] = []
        """A hub dataset read config by config: (language, first row, last row) of each."""
        if spec.configs:
            for r in records:
                lang = r.fields.get(CONFIG_LANGUAGE)
                if self.ranges and self.ranges[-1][0] == lang:
                    self.ranges[-1] = (lang, self.ranges[-1][1], r.line)
                else:
                    self.ranges.append((lang, r.line, r.line))
        self.kinds: dict[tuple, list] = {}
        self._lines: list[str] | None = None
        self.unit = "row" if self.rows else "line"

    def add(self, key: tuple, line: int, message: str, field: str | None = None, sub: str | None = None, hint: str | None = None) -> None:
        hit = self.kinds.get(key)
        if hit is None:
            self.kinds[key] = [line, field, sub, message, hint, []]
        elif line != hit[0] and (not hit[5] or hit[5][-1] != line):  # one count per record
            hit[5].append(line)

    def _line(self, n: int) -> str | None:
        if self._lines is None:
            try:
                self._lines = decode(self.spec.abs_path, read_bytes(self.spec.abs_path)).split("\n")
            except (DataError, OSError):
                self._lines = []
        return self._lines[n - 1] if 0 < n <= len(self._lines) else None

    def _col(self, line: int, field: str | None, sub: str | None) -> int:
        if self.rows:
            return 0  # a row, shown as `row N`
        if field is None:
            return 1
        if self.spec.format == "csv":
            return value_col_in_line(self._line(line), self.header.index(field)) if field in self.header else 1
        return json_key_col(self._line(line), field, sub)

    def report(self, diags: Diagnostics) -> None:
        for line, field, sub, message, hint, more in self.kinds.values():
            notes = []
            unit = "row" if self.rows else "line"
            if more:
                lines = ", ".join(str(n) for n in more[:8]) + (", ..." if len(more) > 8 else "")
                notes.append(f"{len(more)} more record{'s' if len(more) != 1 else ''} like it: {unit}{'s' if len(more) != 1 else ''} {lines}")
            config = next((f"row {line} is row {line - first + 1} of config `{self.spec.configs[lang]}` ({lang})" for lang, first, last in self.ranges if first <= line <= last), None)
            if config:
                notes.append(config)
            notes.append(f"dataset `{self.d.name.text}` declared at {where(self.d.name.span)}")
            col = self._col(line, field, sub)
            diags.error("E015", message, Span.point(self.shown, line, col), context=self.d.name.span, hint=hint, notes=notes)


def _ref(src: str, sub: str | None) -> str:
    return f"`{src}[{sub}]`" if sub is not None else f"`{src}`"


def _values(record: Record, fm: FieldMap) -> list[tuple[str | None, object, bool]]:
    """(language or country code, value, present) of a mapped field in one record: one
    entry per code for an indexed field (codes whose value is empty are left out: the item
    does not exist there), else one entry."""
    if isinstance(fm.source, list):
        return [(None, [record.fields.get(s) for s in fm.source], True)]
    present = fm.source in record.fields
    value = record.fields.get(fm.source)
    if fm.index is not None:
        if not isinstance(value, dict):
            return []  # reported by _field_map, or absent: the item is not in any language
        return [(str(k), v, True) for k, v in value.items() if not empty(v)]
    return [(None, value, present)]


def check_records(d: ast.Decl, spec: DatasetSpec, records: list[Record], shown: str, diags: Diagnostics) -> None:
    """Every record against the dataset's mapping (see the module's docstring)."""
    p = _Problems(d, spec, records, shown)
    fields = spec.fields
    cap = max_options(spec.labels)
    plan_fields = {k: v.model_dump(exclude_none=True) for k, v in fields.items()}
    seen_ids: dict[tuple, int] = {}
    for r in records:
        line = r.line
        # The options of this record, per language/country code (None: one list for all).
        counts: dict[str | None, int] = {}
        if "options" in fields:
            counts = _check_options(r, fields["options"], cap, spec.labels, p)
        for name, fm in fields.items():
            if name == "options":
                continue
            src = fm.source if isinstance(fm.source, str) else None
            for sub, value, present in _values(r, fm):
                if name not in SPECIAL_FIELDS:
                    if not is_text(value):
                        _check_text(name, value, present, _ref(src, sub) if src else "`" + "`, `".join(fm.source) + "`", src, sub, line, p)
                    continue
                ref = _ref(src, sub) if src else "`" + "`, `".join(fm.source) + "`"
                if name == "id":
                    _check_id(value, present, src, line, p)
                elif name == "gold":
                    _check_gold(value, present, src, sub, counts, spec.labels, "options" in fields, r, fields, line, p, spec.gold_is)
                elif name == "targets":
                    _check_targets(value, present, ref, src, sub, line, p)
                elif name == "human":
                    _check_human(value, ref, src, sub, counts, spec.labels, line, p)
                elif name == "language":
                    if not (isinstance(value, str) and value.strip()):
                        what = "missing" if not present else "empty" if value == "" else json_type(value)
                        p.add(("language", "bad"), line, f"{ref} (the row's language) is {what}; it must be a language code", src)
                elif name == "partition":
                    if not present or value is None or not is_text(value):
                        what = "missing" if not present else json_type(value)
                        p.add(("partition", "bad"), line, f"{ref} (the item's partition) is {what}; it must be one value (a text or a number)", src, sub)
        # Ids: unique where items meet in one cell (per language, and per partition value
        # where the dataset maps one).
        if "id" in fields and isinstance(fields["id"].source, str):
            item_id = r.fields.get(fields["id"].source)
            if is_text(item_id) and str(item_id).strip():
                part = None
                if "partition" in fields and isinstance(fields["partition"].source, str):
                    part = short(r.fields.get(fields["partition"].source))
                langs = record_languages(r, {"fields": plan_fields})
                clashes: dict[int, list[str]] = {}
                for lang in sorted(langs) if langs is not None else [None]:
                    key = (str(item_id), part, lang)
                    first = seen_ids.setdefault(key, line)
                    if first != line:
                        clashes.setdefault(first, []).append(lang)
                if clashes:
                    first = min(clashes)
                    shared = [lang for lang in clashes[first] if lang is not None]
                    in_langs = f" in {', '.join(shared[:6])}{', ...' if len(shared) > 6 else ''}" if shared else ""
                    in_part = f" (partition `{part}`)" if part is not None else ""
                    p.add(
                        ("id", "duplicate"), line,
                        f"item id `{short(item_id)}` is on {p.unit} {first} and {p.unit} {line}{in_langs}{in_part}: an id names one item per language",
                        fields["id"].source, hint="give each item its own id (translations of one item share it, one per language)",
                    )
    p.report(diags)


def _check_id(value: object, present: bool, src: str | None, line: int, p: _Problems) -> None:
    if not present:
        p.add(("id", "missing"), line, f"the record has no `{src}` (the item id)", hint=f"every record needs its id in `{src}`")
    elif value is None or isinstance(value, bool) or not (isinstance(value, str) or isinstance(value, int)):
        p.add(("id", "type"), line, f"`{src}` (the item id) is {json_type(value)}; an id is a text or a whole number", src)
    elif not str(value).strip():
        p.add(("id", "empty"), line, f"`{src}` (the item id) is empty", src)


def _check_options(r: Record, fm: FieldMap, cap: int | None, labels: str, p: _Problems) -> dict[str | None, int]:
    counts: dict[str | None, int] = {}
    line = r.line
    if isinstance(fm.source, list):
        cols = fm.source
        raw = [r.fields.get(c) for c in cols]
        values = option_values(raw, {"source": cols})
        for i, v in enumerate(values):
            if v is None or v == "" or not (is_text(v) or isinstance(v, bool)):
                later = next((j for j in range(i + 1, len(values)) if not empty(values[j])), len(values) - 1)
                what = "empty" if v == "" else "missing" if cols[i] not in r.fields else json_type(v)
                if v is None or v == "":
                    msg = f"option {i + 1} (`{cols[i]}`) is {what}, but option {later + 1} (`{cols[later]}`) is not: the options after it would move up a label"
                else:
                    msg = f"option {i + 1} (`{cols[i]}`) is {what}; an option is a text"
                p.add(("options", "element"), line, msg, cols[i], hint="only trailing option columns may be empty (an item with fewer options)")
                return counts
        if not values:
            p.add(("options", "none"), line, "the record has no options (" + ", ".join(f"`{c}`" for c in cols) + " are all empty)", cols[0])
            return counts
        if _check_count(len(values), cap, labels, "`" + "`, `".join(cols[:2]) + ("`, ..." if len(cols) > 2 else "`"), line, cols[0], None, p):
            counts[None] = len(values)
        return counts
    src = fm.source
    for sub, value, present in _values(r, fm):
        ref = _ref(src, sub)
        if not present:
            p.add(("options", "missing"), line, f"the record has no `{src}` (the options)", hint=f"every record needs its options in `{src}`")
            continue
        if not isinstance(value, list):
            hint = 'a string is one text: write the options as a list, ["...", "..."]' if isinstance(value, str) else None
            p.add(("options", "type"), line, f"{ref} is {json_type(value)}; options are a list of texts", src, sub, hint=hint)
            continue
        if not value:
            p.add(("options", "none"), line, f"{ref} is an empty list: the item has no options", src, sub)
            continue
        bad = None if "" not in value and {type(v) for v in value} <= _OPTION_TYPES else next(
            (i for i, v in enumerate(value) if v is None or v == "" or not (is_text(v) or isinstance(v, bool))), None
        )
        if bad is not None:
            v = value[bad]
            what = "empty" if v == "" else json_type(v)
            tail = ": the options after it would move up a label" if v is None or v == "" else ""
            p.add(("options", "element"), line, f"option {bad + 1} of {ref} is {what}; an option is a text{tail}", src, sub)
            continue
        if _check_count(len(value), cap, labels, ref, line, src, sub, p):
            counts[sub] = len(value)
    return counts


_OPTION_TYPES = {str, int, float, bool}


def _check_count(n: int, cap: int | None, labels: str, ref: str, line: int, src: str, sub: str | None, p: _Problems) -> bool:
    if cap is not None and n > cap:
        p.add(
            ("options", "count"), line,
            f"{ref} has {n} options, but `labels = {labels}` can name at most {cap} (A-Z)",
            src, sub, hint="use `labels = numbers` (1, 2, ...) for more options",
        )
        return False
    return True


def _labels_for(sub: str | None, counts: dict[str | None, int], style: str) -> list[list[str]]:
    """The option label lists a gold value for ``sub`` must fit (one per language where the
    options are per language and gold is not)."""
    if sub in counts:
        return [option_labels(counts[sub], style)]
    if None in counts:
        return [option_labels(counts[None], style)]
    return [option_labels(n, style) for n in dict.fromkeys(counts.values())]


def _check_gold(value: object, present: bool, src: str | None, sub: str | None, counts: dict[str | None, int], style: str, has_options: bool,
                r: Record, fields: dict[str, FieldMap], line: int, p: _Problems, reading: str | None = "label") -> None:
    ref = _ref(src, sub)
    if not present or value is None:
        what = f"has no `{src}`" if not present else f"has a null {ref}"
        p.add(("gold", "missing"), line, f"the record {what} (the gold answer)", src if present else None, sub, hint="every item needs its gold answer; map `targets` instead for text answers")
        return
    if has_options and not counts:
        return  # the options are reported (or the item has none in this language)
    for labels in _labels_for(sub, counts, style) if has_options else [[]]:
        opts = fields.get("options")
        texts = _option_texts(r, opts, sub) if opts is not None and labels else []
        if reading == "text" and sub is None and opts is not None and opts.index is not None and isinstance(r.fields.get(opts.source), dict):
            # one gold text for options per language: it has to be an option in each
            for lang, options in r.fields[opts.source].items():
                shown_texts = _option_texts(r, opts, str(lang))
                if shown_texts and gold_problem(value, option_labels(len(shown_texts), style), shown_texts, "text"):
                    p.add(("gold", "text-language"), line, f"gold `{short(value)}` ({ref}) is not the text of one of the item's options in `{lang}`", src, sub, hint="map the gold text per language (gold = answer[lang]) or give a label or index")
                    return
        why = gold_problem(value, labels, texts, reading)
        if why is None:
            continue
        shown = f"gold `{short(value)}` ({ref})" if str(value).strip() else f"gold ({ref})"
        if labels and isinstance(value, str) and reading == "label":
            hit = next((i for i, t in enumerate(texts) if normalize_label(t) == normalize_label(value)), None)
            if hit is not None and hit < len(labels):
                p.add(("gold", "text"), line, f"{shown} is the text of option {labels[hit]}, not an option label", src, sub, hint=f"gold names the option's label (`{labels[hit]}`); where every gold is an option's text, say gold_is = text")
                return
        hint = None
        if labels:
            readings = gold_readings(value, labels, texts)
            hint = f"gold is read as an option {reading} (gold_is = {reading}); this value would fit gold_is = {readings[0]}" if readings else (
                f"the options are {', '.join(labels[:4])}{', ...' if len(labels) > 4 else ''}")
        p.add(("gold", why), line, f"{shown} {why}", src, sub, hint=hint)
        return


def _option_texts(r: Record, fm: FieldMap, sub: str | None) -> list[str]:
    if isinstance(fm.source, list):
        return [str(v) for v in option_values([r.fields.get(c) for c in fm.source], {"source": fm.source})]
    value = r.fields.get(fm.source)
    if fm.index is not None and isinstance(value, dict):
        value = value.get(sub) if sub is not None else next(iter(value.values()), None)
    return [str(v) for v in value] if isinstance(value, list) else []


def _check_targets(value: object, present: bool, ref: str, src: str | None, sub: str | None, line: int, p: _Problems) -> None:
    if not present or value is None:
        p.add(("targets", "missing"), line, f"the record has no {ref} (its acceptable answers)" if not present else f"{ref} (the acceptable answers) is null", src if present else None, sub)
        return
    items = value if isinstance(value, list) else [value]
    if not items:
        p.add(("targets", "none"), line, f"{ref} is an empty list: the item has no acceptable answer", src, sub)
        return
    at = next((i for i, t in enumerate(items) if not is_text(t) or not str(t).strip()), None)
    if at is not None:
        bad = items[at]
        what = "empty" if is_text(bad) else json_type(bad)
        p.add(("targets", "element"), line, f"an acceptable answer in {ref} is {what}; targets are texts (a list of them, or one)", src, sub)


def _check_human(value: object, ref: str, src: str | None, sub: str | None, counts: dict[str | None, int], style: str, line: int, p: _Problems) -> None:
    if value is None:
        return  # no human distribution for this item (or country)
    labels = _labels_for(sub, counts, style)
    if isinstance(value, dict):
        shares = list(value.values())
        known = {normalize_label(lab) for ls in labels for lab in ls}
        stray = next((k for k in value if known and normalize_label(k) not in known), None)
        if stray is not None:
            p.add(("human", "key"), line, f"{ref} has a share for `{short(stray)}`, which is no option label ({', '.join(labels[0][:6]) if labels else ''})", src, sub)
            return
    elif isinstance(value, list):
        shares = value
        sizes = {len(ls) for ls in labels}
        if sizes and len(value) not in sizes:
            p.add(("human", "length"), line, f"{ref} has {len(value)} shares for {'/'.join(map(str, sorted(sizes)))} options", src, sub)
            return
    else:
        p.add(("human", "type"), line, f"{ref} is {json_type(value)}; a human distribution is an object (label: share) or a list of shares", src, sub)
        return
    for v in shares:
        try:
            ok = not isinstance(v, bool) and v is not None and float(v) >= 0 and float(v) != float("inf")
        except (TypeError, ValueError, OverflowError):
            ok = False
        if not ok:
            p.add(("human", "share"), line, f"{ref} holds `{short(v)}`, which is not a share (a number >= 0)", src, sub)
            return


def _check_text(name: str, value: object, present: bool, ref: str, src: str | None, sub: str | None, line: int, p: _Problems) -> None:
    fills = f"it fills `{{{name}}}`"
    if not present:
        p.add((name, "missing"), line, f"the record has no {ref} ({fills})", hint=f'every record needs `{src}`; write "" for an empty value')
    elif value is None:
        p.add((name, "null"), line, f"{ref} is null, where text is expected ({fills})", src, sub, hint='write "" for an empty value')
    elif not is_text(value):
        p.add((name, "type"), line, f"{ref} is {json_type(value)}, where text is expected ({fills})", src, sub)
