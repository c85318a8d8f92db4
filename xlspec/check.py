"""Check phase: parsed files -> a typed :class:`xlspec.spec.Spec`, or diagnostics.

All problems are collected in one pass.  The checker resolves imports (cycles are errors),
names (undefined, duplicate, did-you-mean), language codes, dataset files and their fields,
framing coverage, template placeholders and metrics against the study's answer kinds.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

from . import ast
from .data import DataError, Record, read_records
from .diagnostics import Diagnostics, SourceCache, Span, suggest
from .items import SPECIAL_FIELDS
from .languages import check_code, country_is_valid, describe
from .metric_catalog import ANSWER_PROVIDES, CATALOG, ITEM_METRICS
from .prompt import is_valid_placeholder, placeholders
from .spec import (
    AnswerSpec,
    DatasetSpec,
    FieldMap,
    FramingSpec,
    MetricSpec,
    ModelSpec,
    ModeSpec,
    ReportSpec,
    SourceFile,
    Spec,
    StudySpec,
)
from .syntax import parse

KINDS = ("experiment", "languages", "countries", "dataset", "framing", "mode", "model", "subset", "group", "study", "report")
ENGINES = ("hf", "vllm")
DATA_FORMATS = ("jsonl", "csv")
PARSERS = ("option_number", "option_letter", "text", "first_line", "json")
BUILTIN_TEMPLATES = ("report.html.j2", "report.md.j2")
AXES = ("model", "dataset", "country", "language", "framing", "mode", "partition", "subset", "shots", "seed")
VARIABLES = ("lang", "language", "country")
"""Placeholders a cell provides whatever the dataset: the language code, the language's
name and the country's name, both written in the prompt's language."""

MODE_SETTINGS = {"instruction", "max_tokens", "temperature", "top_p"}
MODEL_SETTINGS = {"revision", "chat", "dtype", "max_model_len", "tensor_parallel", "batch_size"}
STUDY_SETTINGS = {
    "model", "dataset", "country", "language", "framing", "mode", "partition", "subset", "where",
    "shots", "fewshot", "seeds", "samples", "answer", "metrics", "group_by", "limit",
}


@dataclass
class LoadedFile:
    path: str
    text: str
    sha256: str
    tree: ast.File


@dataclass
class CheckResult:
    spec: Spec | None
    diagnostics: Diagnostics
    sources: SourceCache
    records: dict[str, list[Record]] = field(default_factory=dict)
    """Dataset name -> its records, read once here and reused by expansion."""


def check_file(path: str) -> CheckResult:
    diags = Diagnostics()
    sources = SourceCache()
    files = _load(path, diags, sources)
    if files is None or diags.has_errors():
        return CheckResult(None, diags, sources)
    checker = _Checker(files, diags)
    spec = checker.run()
    return CheckResult(spec if not diags.has_errors() else None, diags, sources, checker.records)


# ---- loading and imports -----------------------------------------------------------------


def _display(path: str) -> str:
    """Paths in diagnostics: relative to the working directory when inside it."""
    rel = os.path.relpath(path)
    return rel if not rel.startswith("..") else path


def _load(root: str, diags: Diagnostics, sources: SourceCache) -> list[LoadedFile] | None:
    loaded: dict[str, LoadedFile] = {}
    order: list[LoadedFile] = []

    def visit(path: str, stack: list[str], via: ast.Import | None) -> None:
        real = os.path.realpath(path)
        if real in stack:
            cycle = " -> ".join(_display(p) for p in stack[stack.index(real):] + [real])
            diags.error("E012", f"import cycle: {cycle}", via.path.span if via else None, hint="remove one of these imports")
            return
        if real in loaded:
            return
        shown = _display(path)
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except OSError as e:
            diags.error("E010", f"cannot read {shown}: {e.strerror}", via.path.span if via else None)
            return
        text = raw.decode("utf-8", errors="replace")
        sources.add(shown, text)
        tree = parse(text, shown, diags)
        if tree is None:
            return
        lf = LoadedFile(real, text, hashlib.sha256(raw).hexdigest(), tree)
        loaded[real] = lf
        for imp in tree.imports:
            target = os.path.join(os.path.dirname(real), imp.path.value)
            visit(target, stack + [real], imp)
        order.append(lf)

    visit(root, [], None)
    if not order:
        return None
    # The root file last in `order`; put it first, imports after in load order.
    root_real = os.path.realpath(root)
    return sorted(order, key=lambda f: f.path != root_real)


# ---- the checker -------------------------------------------------------------------------


class _Checker:
    def __init__(self, files: list[LoadedFile], diags: Diagnostics):
        self.files = files
        self.root = files[0]
        self.diags = diags
        self.decls: dict[str, dict[str, ast.Decl]] = {k: {} for k in KINDS}
        self.decl_dir: dict[int, str] = {}
        self.records: dict[str, list[Record]] = {}
        self.language_sets: dict[str, list[str] | None] = {}
        self.countries: dict[str, dict[str, str]] = {}
        self.datasets: dict[str, DatasetSpec] = {}
        self.models: dict[str, ModelSpec] = {}
        self.framings: dict[str, FramingSpec] = {}
        self.modes: dict[str, ModeSpec] = {}
        self.subsets: dict[str, Any] = {}
        self.groups: dict[str, list[ast.Ref]] = {}

    def err(self, code: str, msg: str, span: Span | None, **kw) -> None:
        self.diags.error(code, msg, span, **kw)

    # -- collect ------------------------------------------------------------------------

    def run(self) -> Spec | None:
        for f in self.files:
            for d in f.tree.decls:
                self._collect(d, f)
        experiments = list(self.decls["experiment"].values())
        if not experiments:
            self.err("E013", "no `experiment` declaration", Span.point(self.root.tree.path, 1, 1), hint='start the file with: experiment NAME "Title"')
        anchor = experiments[0].name.span if experiments else Span.point(self.root.tree.path, 1, 1)
        for name in self.decls["languages"]:
            self._language_set(name, [])
        for d in self.decls["countries"].values():
            self._countries(d)
        for d in self.decls["dataset"].values():
            self._dataset(d)
        for d in self.decls["framing"].values():
            self._framing(d)
        for d in self.decls["mode"].values():
            self._mode(d)
        for d in self.decls["model"].values():
            self._model(d)
        for d in self.decls["subset"].values():
            self._subset(d)
        for d in self.decls["group"].values():
            self._group(d)
        studies = {}
        for d in self.decls["study"].values():
            s = self._study(d)
            if s is not None:
                studies[s.name] = s
        if not self.decls["study"]:
            self.err("E013", "no `study` declaration: nothing to run", anchor, hint="add: study main { model = ... dataset = ... language = ... framing = ... }")
        reports = [r for r in (self._report(d) for d in self.decls["report"].values()) if r]
        if self.diags.has_errors() or not experiments:
            return None
        exp = experiments[0]
        spec_dir = os.path.dirname(self.root.path)
        return Spec(
            experiment=exp.name.text,
            title=exp.title.value if exp.title else "",
            path=self.root.path,
            sha256=self.root.sha256,
            imports=[SourceFile(path=os.path.relpath(f.path, spec_dir).replace(os.sep, "/"), sha256=f.sha256) for f in self.files[1:]],
            countries=self.countries,
            datasets=self.datasets,
            models=self.models,
            framings=self.framings,
            modes=self.modes,
            subsets=self.subsets,
            studies=studies,
            reports=reports,
        )

    def _collect(self, d: ast.Decl, f: LoadedFile) -> None:
        kind = d.kind.text
        if kind not in KINDS:
            self.err("E013", f"unknown declaration kind `{kind}`", d.kind.span, hint=_did_you_mean(kind, KINDS, f"one of: {', '.join(KINDS)}"))
            return
        if kind == "experiment" and f is not self.root:
            self.err("E013", "`experiment` belongs in the top-level spec, not in an imported file", d.kind.span)
            return
        table = self.decls[kind]
        if d.name.text in table:
            first = table[d.name.text]
            self.err("E004", f"duplicate {kind} `{d.name.text}`", d.name.span, context=first.name.span, notes=[f"first declared at {_where(first.name.span)}"])
            return
        if kind == "experiment" and table:
            first = next(iter(table.values()))
            self.err("E004", "a spec declares one experiment", d.name.span, notes=[f"first declared at {_where(first.name.span)}"])
            return
        table[d.name.text] = d
        self.decl_dir[id(d)] = os.path.dirname(f.path)
        self._shape(d)

    def _shape(self, d: ast.Decl) -> None:
        """Which parts (title, value, block) each kind takes."""
        kind = d.kind.text
        wants_value = kind in ("languages", "countries", "dataset", "model", "subset", "group", "report")
        wants_body = kind in ("framing", "mode", "study")
        may_body = wants_body or kind in ("dataset", "model")
        if d.title is not None and kind != "experiment":
            self.err("E013", f"a {kind} takes no title string", d.title.span)
        if wants_value and d.value is None:
            self.err("E013", f"`{kind} {d.name.text}` needs a value: {kind} {d.name.text} = ...", d.name.span)
        if not wants_value and d.value is not None:
            self.err("E013", f"a {kind} takes no `= value`" + (" but a { ... } block" if wants_body else ""), d.value.span)
        if wants_body and d.body is None:
            self.err("E013", f"`{kind} {d.name.text}` needs a {{ ... }} block", d.name.span)
        if not may_body and d.body is not None:
            self.err("E013", f"a {kind} takes no {{ ... }} block", d.body.span)

    # -- languages and countries -------------------------------------------------------

    def _language_set(self, name: str, stack: list[str]) -> list[str] | None:
        """The codes of a named set; None when its definition had errors (reported once)."""
        if name in self.language_sets:
            return self.language_sets[name]
        d = self.decls["languages"][name]
        if name in stack:
            self.err("E013", f"language set `{name}` is defined in terms of itself", d.name.span)
            return None
        if d.value is None:
            return None
        codes = self._languages(d.value, stack + [name], country=None, allow_native=False)
        self.language_sets[name] = codes
        return codes

    def _languages(self, expr: ast.Expr, stack: list[str], country: str | None, allow_native: bool, countries: dict[str, str] | None = None) -> list[str] | None:
        """Evaluate a language expression; None after an error (already reported)."""
        if isinstance(expr, ast.ListExpr):
            out: list[str] = []
            failed = False
            for item in expr.items:  # every item, so every bad code is reported
                got = self._languages(item, stack, country, allow_native, countries)
                if got is None:
                    failed = True
                else:
                    out += [c for c in got if c not in out]
            return None if failed else out
        if isinstance(expr, ast.Ref) and expr.is_name:
            name = expr.parts[0].text
            if name in self.decls["languages"]:
                codes = self._language_set(name, stack)
                return None if codes is None else list(codes)
            if name in self.decls["group"]:
                return self._languages(ast.ListExpr(tuple(self.groups.get(name) or ())), stack, country, allow_native, countries)
            return self._code(expr.parts[0])
        if isinstance(expr, ast.Str):
            return self._code(ast.Ident(expr.value, expr.span))
        if isinstance(expr, ast.BinOp) and expr.op in "+-&":
            left = self._languages(expr.left, stack, country, allow_native, countries)
            right = self._languages(expr.right, stack, country, allow_native, countries)  # reported too
            if left is None or right is None:
                return None
            if expr.op == "+":
                return left + [c for c in right if c not in left]
            if expr.op == "-":
                return [c for c in left if c not in right]
            return [c for c in left if c in right]
        if isinstance(expr, ast.Call) and expr.func.text == "native":
            if not allow_native:
                self.err("E014", "native(country) can only be used in a study, where `country` is an axis", expr.span)
                return None
            if countries is None:
                self.err("E014", "native(country) needs the study to set `country = <countries>`", expr.span)
                return None
            return [countries[country]] if country in countries else []
        self.err("E014", "not a language expression", _span_of(expr), hint="write codes in a list ([en, ar]), a named set, or set algebra (a + b, a - b, a & b)")
        return None

    def _code(self, ident: ast.Ident) -> list[str] | None:
        code = ident.text
        ok, hint = check_code(code)
        if ok:
            return [code]
        if "-" in code and all(p in self.decls["languages"] for p in code.split("-")):
            self.err("E003", f"`{code}` is neither a language code nor a language set", ident.span, hint=f"for a set difference put spaces around '-': {code.replace('-', ' - ')}")
            return None
        names = list(self.decls["languages"])
        close_set = suggest(code, names)
        if close_set:
            self.err("E003", f"undefined language set `{code}`", ident.span, hint=f"did you mean `{close_set}`?")
            return None
        msg = f"unknown language code `{code}`"
        if hint:
            self.err("E002", msg, ident.span, hint=f"did you mean `{hint}` ({describe(hint)})?")
        else:
            self.err("E002", msg, ident.span, hint="use an ISO 639 / BCP-47 code such as en, ar, zh-Hant")
        return None

    def _countries(self, d: ast.Decl) -> None:
        if not isinstance(d.value, ast.MapExpr):
            if d.value is not None:
                self.err("E014", "countries are a map: { EG: ar, IR: fa }", _span_of(d.value))
            return
        out: dict[str, str] = {}
        for e in d.value.entries:
            if not country_is_valid(e.key.text):
                self.err("E014", f"unknown country code `{e.key.text}`", e.key.span, hint="use ISO 3166-1 alpha-2 codes such as EG, IR, TR")
            if not (isinstance(e.value, ast.Ref) and e.value.is_name):
                self.err("E014", "a country maps to one language code", _span_of(e.value))
                continue
            codes = self._code(e.value.parts[0])
            if codes:
                out[e.key.text] = codes[0]
        self.countries[d.name.text] = out

    # -- datasets -------------------------------------------------------------------------

    def _dataset(self, d: ast.Decl) -> None:
        v = d.value
        if not isinstance(v, ast.Call) or v.func.text not in DATA_FORMATS or len(v.args) != 1 or not isinstance(v.args[0], ast.Str):
            if v is not None:
                hint = _did_you_mean(v.func.text, DATA_FORMATS, None) if isinstance(v, ast.Call) else None
                self.err("E014", 'a dataset is a file: jsonl("path") or csv("path")', _span_of(v), hint=hint)
            return
        rel = v.args[0].value
        abs_path = os.path.normpath(os.path.join(self.decl_dir[id(d)], rel))
        if not os.path.isfile(abs_path):
            self.err("E010", f"dataset file not found: {rel}", v.args[0].span, notes=[f"looked for {_display(abs_path)} (paths are relative to the spec file)"])
            return
        try:
            records, digest = read_records(abs_path, v.func.text)
        except DataError as e:
            self.err("E015", f"bad data file: {e.message}", Span.point(_display(e.path), e.line, 1), context=d.name.span, notes=[f"dataset `{d.name.text}` declared at {_where(d.name.span)}"])
            return
        except OSError as e:
            self.err("E010", f"cannot read dataset file {rel}: {e.strerror}", v.args[0].span)
            return
        if not records:
            self.err("E015", f"dataset file {rel} has no records", v.args[0].span)
            return
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
                scale = self._scale(s.value)
                continue
            if key == "labels":
                if isinstance(s.value, ast.Ref) and s.value.is_name and s.value.parts[0].text in ("numbers", "letters"):
                    labels = s.value.parts[0].text
                else:
                    self.err("E014", "labels are `numbers` (1, 2, ...) or `letters` (A, B, ...)", _span_of(s.value))
                continue
            fm = self._field_map(s, seen_keys, rel, records)
            if fm is not None:
                fields[key] = fm
        if "id" not in fields:
            self.err("E014", f"dataset `{d.name.text}` maps no `id` field", d.name.span, hint="add `id = <field>` so items can be paired across languages")
        self.records[d.name.text] = records
        self.datasets[d.name.text] = DatasetSpec(
            name=d.name.text, format=v.func.text, path=rel, abs_path=abs_path, sha256=digest, fields=fields,
            scale=scale, labels=labels or ("numbers" if scale else "letters"),
        )

    def _scale(self, v: ast.Expr) -> tuple[float, float] | None:
        if isinstance(v, ast.Call) and v.func.text == "ordinal" and len(v.args) == 2 and all(isinstance(a, ast.Num) for a in v.args):
            lo, hi = (a.value for a in v.args)
            if hi > lo:
                return (lo, hi)
        self.err("E014", "scale is ordinal(MIN, MAX) with MIN < MAX", _span_of(v))
        return None

    def _field_map(self, s: ast.Setting, seen: dict[str, int], rel: str, records: list[Record]) -> FieldMap | None:
        v = s.value
        refs = list(v.items) if isinstance(v, ast.ListExpr) else [v]
        if not refs or not all(isinstance(r, ast.Ref) and len(r.parts) == 1 for r in refs):
            self.err("E014", "a field mapping names a data field: `name = field`, `field[lang]`, `field[country]` or a list of fields", _span_of(v))
            return None
        index = None
        ok = True
        for r in refs:
            src = r.parts[0].text
            if src not in seen:
                close = suggest(src, seen)
                self.err("E011", f"{rel} has no field `{src}`", r.parts[0].span, hint=f"did you mean `{close}`?" if close else f"fields in the file: {', '.join(sorted(seen)[:12])}")
                ok = False
            if r.index is not None:
                if r.index.text not in ("lang", "country"):
                    self.err("E014", f"a field is indexed by `lang` or `country`, not `{r.index.text}`", r.index.span, hint=_did_you_mean(r.index.text, ("lang", "country"), None))
                    ok = False
                elif isinstance(v, ast.ListExpr):
                    self.err("E014", "a list of fields cannot be indexed", r.index.span)
                    ok = False
                else:
                    index = r.index.text
                    bad = next((rec for rec in records if src in rec.fields and not isinstance(rec.fields[src], dict)), None)
                    if bad is not None:
                        self.err("E015", f"field `{src}` is indexed by {index}, so it must map {index} codes to values", Span.point(rel, bad.line, 1), context=r.span, notes=[f"in {rel} line {bad.line}, `{src}` is a {type(bad.fields[src]).__name__}"])
                        ok = False
        if not ok:
            return None
        if isinstance(v, ast.ListExpr):
            return FieldMap(source=[r.parts[0].text for r in refs])
        return FieldMap(source=refs[0].parts[0].text, index=index)

    # -- framings, modes, models ------------------------------------------------------------

    def _framing(self, d: ast.Decl) -> None:
        templates: dict[str, str] = {}
        system: dict[str, str] = {}
        for s in d.body.settings if d.body else ():
            if s.key.text == "system":
                system.update(self._per_language_text(s.value, "system"))
                continue
            if not self._code(s.key):
                continue
            if not isinstance(s.value, ast.Str):
                self.err("E014", "a framing template is a string", _span_of(s.value))
                continue
            if s.key.text in templates:
                self.err("E004", f"framing `{d.name.text}` has two `{s.key.text}` templates", s.key.span)
            templates[s.key.text] = s.value.value
        self.framings[d.name.text] = FramingSpec(name=d.name.text, templates=templates, system=system or None)

    def _per_language_text(self, v: ast.Expr, what: str) -> dict[str, str]:
        if isinstance(v, ast.Str):
            return {"*": v.value}
        if isinstance(v, ast.MapExpr):
            out = {}
            for e in v.entries:
                if self._code(e.key) and isinstance(e.value, ast.Str):
                    out[e.key.text] = e.value.value
                elif not isinstance(e.value, ast.Str):
                    self.err("E014", f"{what} text is a string", _span_of(e.value))
            return out
        self.err("E014", f'{what} is a string, or a map from language to string: {{ en: "...", ar: "..." }}', _span_of(v))
        return {}

    def _mode(self, d: ast.Decl) -> None:
        vals: dict[str, Any] = {}
        for s in d.body.settings if d.body else ():
            key = s.key.text
            if key not in MODE_SETTINGS:
                self.err("E014", f"unknown mode setting `{key}`", s.key.span, hint=_did_you_mean(key, MODE_SETTINGS, f"a mode takes: {', '.join(sorted(MODE_SETTINGS))}"))
            elif key == "instruction":
                vals["instruction"] = self._per_language_text(s.value, "instruction")
            elif key == "max_tokens":
                vals[key] = self._int(s.value, 1)
            else:
                vals[key] = self._number(s.value, 0.0, 2.0 if key == "temperature" else 1.0)
        self.modes[d.name.text] = ModeSpec(name=d.name.text, **{k: v for k, v in vals.items() if v is not None})

    def _model(self, d: ast.Decl) -> None:
        v = d.value
        if not isinstance(v, ast.Call) or v.func.text not in ENGINES or len(v.args) != 1 or not isinstance(v.args[0], ast.Str):
            if v is not None:
                hint = _did_you_mean(v.func.text, ENGINES, None) if isinstance(v, ast.Call) else None
                self.err("E014", 'a model is an engine and a source: hf("org/name"), vllm("org/name"), or hf("builtin:smollm2-135m-instruct")', _span_of(v), hint=hint)
            return
        vals: dict[str, Any] = {}
        for s in d.body.settings if d.body else ():
            key = s.key.text
            if key not in MODEL_SETTINGS:
                self.err("E014", f"unknown model setting `{key}`", s.key.span, hint=_did_you_mean(key, MODEL_SETTINGS, f"a model takes: {', '.join(sorted(MODEL_SETTINGS))}"))
            elif key == "chat":
                vals[key] = self._bool(s.value)
            elif key in ("revision", "dtype"):
                vals[key] = self._str(s.value)
            else:
                vals[key] = self._int(s.value, 1)
        source = v.args[0].value
        if source.startswith("builtin:") and source != "builtin:smollm2-135m-instruct":
            self.err("E014", f"unknown builtin model `{source}`", v.args[0].span, hint="the embedded model is builtin:smollm2-135m-instruct")
        self.models[d.name.text] = ModelSpec(name=d.name.text, engine=v.func.text, source=source, **{k: x for k, x in vals.items() if x is not None})

    def _subset(self, d: ast.Decl) -> None:
        if d.value is not None:
            f = self._filter(d.value)
            if f is not None:
                self.subsets[d.name.text] = f

    def _group(self, d: ast.Decl) -> None:
        if not isinstance(d.value, ast.ListExpr) or not all(isinstance(i, ast.Ref) and i.is_name for i in d.value.items):
            if d.value is not None:
                self.err("E014", "a group is a list of names: [a, b, c]", _span_of(d.value))
            return
        self.groups[d.name.text] = list(d.value.items)

    def _filter(self, e: ast.Expr) -> Any:
        if isinstance(e, ast.Ref):
            if e.index is not None:
                self.err("E014", "filters compare plain item fields", _span_of(e))
                return None
            return ["field", e.dotted]
        if isinstance(e, ast.Str):
            return ["const", e.value]
        if isinstance(e, ast.Num):
            return ["const", int(e.value) if e.is_int else e.value]
        if isinstance(e, ast.Bool):
            return ["const", e.value]
        if isinstance(e, ast.ListExpr):
            items = [self._filter(i) for i in e.items]
            if any(i is None or i[0] != "const" for i in items):
                self.err("E014", "a list in a filter holds constants", _span_of(e))
                return None
            return ["const", [i[1] for i in items]]
        if isinstance(e, ast.Not):
            inner = self._filter(e.operand)
            return None if inner is None else ["not", inner]
        if isinstance(e, ast.BinOp) and e.op not in ("+", "-", "&"):
            left, right = self._filter(e.left), self._filter(e.right)
            return None if left is None or right is None else [e.op, left, right]
        self.err("E014", "not a filter: use comparisons (==, !=, <, in) joined by and/or/not", _span_of(e))
        return None

    # -- studies ----------------------------------------------------------------------------

    def _names(self, v: ast.Expr, kind: str, what: str) -> list[tuple[str, Span | None]]:
        """A name or a list of names of one kind; groups expand in place."""
        items = list(v.items) if isinstance(v, ast.ListExpr) else [v]
        out: list[tuple[str, Span | None]] = []
        for item in items:
            if not (isinstance(item, ast.Ref) and item.is_name):
                self.err("E014", f"expected a {what} name", _span_of(item))
                continue
            name = item.parts[0].text
            if name in self.decls["group"]:
                for member in self.groups.get(name, []):
                    out += self._names(member, kind, what)
                continue
            if name not in self.decls[kind]:
                self.err("E003", f"undefined {what} `{name}`", item.span, hint=_did_you_mean(name, self.decls[kind], f"declare it: {kind} {name} ..."))
                continue
            out.append((name, item.span))
        return out

    def _study(self, d: ast.Decl) -> StudySpec | None:
        body = d.body
        if body is None:
            return None
        settings: dict[str, ast.Setting] = {}
        for s in body.settings:
            key = s.key.text
            if key not in STUDY_SETTINGS:
                self.err("E014", f"unknown study setting `{key}`", s.key.span, hint=_did_you_mean(key, STUDY_SETTINGS, f"a study takes: {', '.join(sorted(STUDY_SETTINGS))}"))
                continue
            if key in settings:
                self.err("E004", f"`{key}` is set twice in study `{d.name.text}`", s.key.span)
                continue
            settings[key] = s
        errors_before = len(self.diags.errors)
        for required in ("model", "dataset", "language", "framing"):
            if required not in settings:
                self.err("E014", f"study `{d.name.text}` does not set `{required}`", d.name.span)
        if len(self.diags.errors) > errors_before:
            return None

        models = [n for n, _ in self._names(settings["model"].value, "model", "model")]
        datasets = [n for n, _ in self._names(settings["dataset"].value, "dataset", "dataset")]
        framings = self._names(settings["framing"].value, "framing", "framing")
        modes = self._names(settings["mode"].value, "mode", "mode") if "mode" in settings else []

        countries = None
        if "country" in settings:
            cv = settings["country"].value
            if isinstance(cv, ast.Ref) and cv.is_name and cv.parts[0].text in self.decls["countries"]:
                countries = self.countries.get(cv.parts[0].text, {})
            elif isinstance(cv, ast.ListExpr):
                # A subset of a declared map: [EG, IR] picks those countries.
                merged = {k: v for m in self.countries.values() for k, v in m.items()}
                countries = {}
                for item in cv.items:
                    code = item.parts[0].text if isinstance(item, ast.Ref) else None
                    if code in merged:
                        countries[code] = merged[code]
                    else:
                        self.err("E003", f"country `{code}` is not in any `countries` map", _span_of(item), hint=_did_you_mean(code or "", merged, None))
            else:
                name = cv.parts[0].text if isinstance(cv, ast.Ref) else "?"
                self.err("E003", f"undefined countries `{name}`", _span_of(cv), hint=_did_you_mean(name, self.decls["countries"], "declare it: countries NAME = { EG: ar }"))

        languages: dict[str, list[str]] = {}
        lang_expr = settings["language"].value
        for c in (sorted(countries) if countries else [""]):
            got = self._languages(lang_expr, [], c or None, allow_native=True, countries=countries)
            if got is None:
                return None
            languages[c] = got
        all_langs = sorted({lang for ls in languages.values() for lang in ls})
        if not all_langs:
            self.err("E016", f"study `{d.name.text}` has no languages", _span_of(lang_expr))

        answers = self._answers(settings.get("answer"), datasets)
        partitions = self._strings(settings.get("partition"), "partition")
        subsets = [n for n, _ in self._names(settings["subset"].value, "subset", "subset")] if "subset" in settings else None
        where = self._filter(settings["where"].value) if "where" in settings else None
        shots = self._ints(settings.get("shots"), 0) or [0]
        seeds = self._ints(settings.get("seeds"), 0) or [0]
        samples = self._int(settings["samples"].value, 1) if "samples" in settings else 1
        limit = self._int(settings["limit"].value, 1) if "limit" in settings else None
        fewshot = None
        if "fewshot" in settings:
            names = self._names(settings["fewshot"].value, "dataset", "dataset")
            fewshot = names[0][0] if names else None
        if any(s > 0 for s in shots) and fewshot is None:
            self.err("E014", "shots > 0 needs `fewshot = <dataset>`, the pool examples come from", _span_of(settings["shots"].value))
        if partitions and not all("partition" in self.datasets[n].fields for n in datasets if n in self.datasets):
            self.err("E011", "`partition` needs each dataset to map a `partition` field", settings["partition"].key.span)

        self._check_item_fields(where, subsets, datasets, settings)
        self._check_framings(d, framings, languages, datasets, countries is not None, modes, settings)

        axes_present = {"model", "dataset", "language", "framing"} | {k for k in ("country", "mode", "partition", "subset") if k in settings}
        if len(shots) > 1:
            axes_present.add("shots")
        if len(seeds) > 1:
            axes_present.add("seed")
        group_by = self._group_by(settings.get("group_by"), axes_present)
        metrics = self._metrics(settings.get("metrics"), answers, datasets, axes_present, {
            "model": models, "dataset": datasets, "language": all_langs, "framing": [n for n, _ in framings],
            "mode": [n for n, _ in modes], "country": sorted(countries or {}), "partition": partitions or [], "subset": subsets or [],
        })
        if self.diags.has_errors():
            return None
        return StudySpec(
            name=d.name.text, models=models, datasets=datasets, countries=countries, languages=languages,
            framings=[n for n, _ in framings], modes=[n for n, _ in modes], partitions=partitions, subsets=subsets,
            where=where, shots=shots, fewshot=fewshot, seeds=seeds, samples=samples, answers=answers,
            metrics=metrics, group_by=group_by, limit=limit,
        )

    def _answers(self, s: ast.Setting | None, datasets: list[str]) -> list[AnswerSpec]:
        if s is None:
            has_options = any("options" in self.datasets[n].fields for n in datasets if n in self.datasets)
            return [AnswerSpec(kind="options")] if has_options else [AnswerSpec(kind="generate", parser="text")]
        terms: list[ast.Expr] = []

        def flatten(e: ast.Expr) -> None:
            if isinstance(e, ast.BinOp) and e.op == "+":
                flatten(e.left)
                flatten(e.right)
            elif isinstance(e, ast.ListExpr):
                for i in e.items:
                    flatten(i)
            else:
                terms.append(e)

        flatten(s.value)
        out: list[AnswerSpec] = []
        has_options = all("options" in self.datasets[n].fields for n in datasets if n in self.datasets)
        for t in terms:
            name = t.parts[0].text if isinstance(t, ast.Ref) and t.is_name else t.func.text if isinstance(t, ast.Call) else None
            if name not in ("generate", "options", "loglik"):
                self.err("E014", f"unknown answer kind `{name or '?'}`", _span_of(t), hint=_did_you_mean(name or "", ("generate", "options", "loglik"), "answer kinds: generate, options, loglik"))
                continue
            kw = {k.name.text: k.value for k in t.keywords} if isinstance(t, ast.Call) else {}
            parser = None
            normalize = False
            if name == "generate":
                p = kw.pop("parser", None)
                if p is not None:
                    parser = p.parts[0].text if isinstance(p, ast.Ref) else p.func.text if isinstance(p, ast.Call) else None
                    if parser not in PARSERS:
                        self.err("E014", f"unknown answer parser `{parser}`", _span_of(p), hint=_did_you_mean(parser or "", PARSERS, f"parsers: {', '.join(PARSERS)}"))
                    if parser == "json" and isinstance(p, ast.Call) and p.args and isinstance(p.args[0], (ast.Str, ast.Ref)):
                        parser = "json:" + (p.args[0].value if isinstance(p.args[0], ast.Str) else p.args[0].dotted)
                else:
                    labels = {self.datasets[n].labels for n in datasets if n in self.datasets and "options" in self.datasets[n].fields}
                    parser = ("option_number" if labels == {"numbers"} else "option_letter") if has_options else "text"
            elif name == "loglik":
                nv = kw.pop("normalize", None)
                normalize = bool(nv.value) if isinstance(nv, ast.Bool) else False
            if name in ("options", "loglik") and not has_options:
                self.err("E009", f"answer kind `{name}` needs the dataset to map `options`", _span_of(t))
            for k, val in kw.items():
                self.err("E014", f"`{name}` takes no argument `{k}`", _span_of(val))
            out.append(AnswerSpec(kind=name, parser=parser, normalize=normalize))
        return out

    def _check_item_fields(self, where: Any, subsets: list[str] | None, datasets: list[str], settings: dict[str, ast.Setting]) -> None:
        """Filters name raw item fields: they must exist in every dataset of the study."""
        for label, f, span in [("where", where, settings["where"].value.span if "where" in settings else None)] + [
            (f"subset {s}", self.subsets.get(s), self.decls["subset"][s].value.span if s in self.decls["subset"] else None) for s in (subsets or [])
        ]:
            if f is None:
                continue
            for fld in sorted(_filter_fields(f)):
                for n in datasets:
                    recs = self.records.get(n)
                    if recs is not None and not any(fld in r.fields for r in recs):
                        keys = {k for r in recs[:50] for k in r.fields}
                        self.err("E011", f"{label}: dataset `{n}` has no field `{fld}`", span, hint=_did_you_mean(fld, keys, None))

    def _check_framings(self, d, framings, languages, datasets, has_country, modes, settings) -> None:
        used = sorted({lang for ls in languages.values() for lang in ls})
        provided = set(VARIABLES) - ({"country"} if not has_country else set())
        ds_fields: set[str] | None = None
        for n in datasets:
            ds = self.datasets.get(n)
            if ds is None:
                continue
            names = {k for k in ds.fields if k not in SPECIAL_FIELDS} | ({"options", "option_texts"} if "options" in ds.fields else set())
            ds_fields = names if ds_fields is None else ds_fields & names
        provided |= ds_fields or set()
        for name, span in framings:
            f = self.framings.get(name)
            fdecl = self.decls["framing"][name]
            if f is None:
                continue
            missing = [lang for lang in used if lang not in f.templates]
            if missing:
                self.err(
                    "E005",
                    f"framing `{name}` has no template for {', '.join(missing)}",
                    fdecl.name.span,
                    context=settings["language"].span,
                    notes=[f"study `{d.name.text}` uses {', '.join(used)} (language set at {_where(settings['language'].span)})"],
                    hint=f"add: {missing[0]} = \"...\"",
                )
            for lang, text in sorted(f.templates.items()):
                if lang not in used:
                    continue
                setting = next(s for s in fdecl.body.settings if s.key.text == lang)
                self._check_placeholders(text, setting.value, provided, f"framing `{name}`")
        for name, _span in modes:
            m = self.modes.get(name)
            if m and m.instruction:
                mdecl = self.decls["mode"][name]
                setting = mdecl.body.get("instruction")
                for lang, text in sorted(m.instruction.items()):
                    if lang != "*" and lang not in used:
                        continue
                    self._check_placeholders(text, setting.value, provided, f"mode `{name}`")
                missing = [lang for lang in used if lang not in m.instruction and "*" not in m.instruction]
                if missing:
                    self.err("E005", f"mode `{name}` has no instruction for {', '.join(missing)}", setting.key.span, notes=[f"study `{d.name.text}` uses {', '.join(used)}"])

    def _check_placeholders(self, text: str, node: ast.Expr, provided: set[str], where: str) -> None:
        for ph, offset in placeholders(text):
            span = _string_offset_span(node, text, offset, len(ph) + 2)
            if not is_valid_placeholder(ph):
                self.err("E006", f"malformed placeholder `{{{ph}}}` in {where}", span, hint="placeholders are {name}; write {{ and }} for literal braces")
            elif ph == "country" and ph not in provided:
                self.err("E006", f"placeholder `{{country}}` in {where} needs a country axis", span, hint="set `country = <countries>` in the study")
            elif ph not in provided:
                self.err("E006", f"placeholder `{{{ph}}}` in {where} has no source", span, hint=_did_you_mean(ph, provided, f"available: {', '.join(sorted(provided))}"))

    def _group_by(self, s: ast.Setting | None, axes: set[str]) -> list[str]:
        if s is None:
            return [a for a in AXES if a in axes]
        out = []
        for n, span in self._axis_list(s.value):
            if n not in axes:
                self.err("E014", f"`{n}` is not an axis of this study", span, hint=_did_you_mean(n, axes, f"axes: {', '.join(a for a in AXES if a in axes)}"))
            else:
                out.append(n)
        return out

    def _axis_list(self, v: ast.Expr) -> list[tuple[str, Span | None]]:
        items = list(v.items) if isinstance(v, ast.ListExpr) else [v]
        out = []
        for i in items:
            if isinstance(i, ast.Ref) and i.is_name:
                out.append((i.parts[0].text, i.span))
            else:
                self.err("E014", "expected an axis name", _span_of(i))
        return out

    # -- metrics ----------------------------------------------------------------------------

    def _metrics(self, s: ast.Setting | None, answers: list[AnswerSpec], datasets: list[str], axes: set[str], values: dict[str, list]) -> list[MetricSpec]:
        if s is None:
            return []
        items = list(s.value.items) if isinstance(s.value, ast.ListExpr) else [s.value]
        provides = set().union(*(ANSWER_PROVIDES[a.kind] for a in answers)) if answers else set()
        if any(a.kind == "generate" and a.parser and not a.parser.startswith(("option", "json")) for a in answers):
            provides.discard("parsed")
        ds = [self.datasets[n] for n in datasets if n in self.datasets]
        if ds and all(d.scale for d in ds):
            provides.add("scale")
        if ds and all("human" in d.fields for d in ds):
            provides.add("human")
        if ds and all(("gold" in d.fields or "targets" in d.fields) for d in ds):
            provides.add("targets")
        out: list[MetricSpec] = []
        labels: set[str] = set()
        for item in items:
            m = self._metric(item, provides, axes, values, [a.kind for a in answers])
            if m is not None:
                if m.label in labels:
                    self.err("E004", f"metric `{m.label}` is listed twice", _span_of(item))
                    continue
                labels.add(m.label)
                out.append(m)
        return out

    def _metric(self, e: ast.Expr, provides: set[str], axes: set[str], values: dict[str, list], kinds: list[str]) -> MetricSpec | None:
        if isinstance(e, ast.Ref) and e.is_name:
            name, call = e.parts[0].text, None
        elif isinstance(e, ast.Call):
            name, call = e.func.text, e
        else:
            self.err("E014", "a metric is a name or a call: accuracy, consistency(over = language)", _span_of(e))
            return None
        info = CATALOG.get(name)
        name_span = e.span if call is None else call.func.span
        if info is None:
            self.err("E007", f"unknown metric `{name}`", name_span, hint=_did_you_mean(name, CATALOG, f"metrics: {', '.join(sorted(CATALOG))}"))
            return None
        args: dict[str, Any] = {}
        by = None
        ok = True
        params = {p.name: p for p in info.params}
        positional = call.positional if call else []
        if len(positional) > len(info.positional):
            self.err("E008", f"`{name}` takes at most {len(info.positional)} positional argument(s), got {len(positional)}", _span_of(positional[len(info.positional)]))
            ok = False
        assigned = list(zip(info.positional, positional))
        for kw in call.keywords if call else []:
            key = kw.name.text
            if key == "by":
                by = [n for n, sp in self._axis_list(kw.value)]
                for n in by:
                    if n not in axes:
                        self.err("E008", f"`by`: `{n}` is not an axis of this study", _span_of(kw.value), hint=_did_you_mean(n, axes, None))
                        ok = False
                continue
            if key in params:
                assigned.append((key, kw.value))
            elif key in axes and "pair" in params:
                # `delta(agreement, mode = direct - reason)`: an axis contrast.
                assigned.append(("pair", kw))
            else:
                names = [p for p in params if params[p].kind != "contrast"] + (["<axis> = a - b"] if "pair" in params else []) + ["by"]
                self.err("E008", f"`{name}` has no argument `{key}`", kw.name.span, hint=_did_you_mean(key, list(params) + list(axes), f"it takes: {', '.join(names)}"))
                ok = False
        for pname, val in assigned:
            if pname in args:
                self.err("E008", f"`{name}`: argument `{pname}` given twice", _span_of(val))
                ok = False
                continue
            got = self._metric_arg(name, params[pname], val, axes, values)
            if got is None:
                ok = False
            else:
                args[pname] = got
        for p in info.params:
            if p.required and p.name not in args and ok:
                form = "<axis> = a - b" if p.kind == "contrast" else p.name
                self.err("E008", f"`{name}` needs `{form}`", name_span, hint=f"{name}: {info.summary}")
                ok = False
            elif p.name not in args and p.default is not None:
                args[p.name] = p.default
        needs = set(info.needs)
        if "metric" in args and args["metric"] in CATALOG:
            needs |= CATALOG[args["metric"]].needs
        missing = sorted(needs - provides)
        if missing and ok:
            why = {
                "choice": "a chosen answer (answer = options, loglik or generate)",
                "text": "generated text (answer = generate)",
                "parsed": "an answer parser that can refuse (answer = generate with an option parser)",
                "probs": "option probabilities (answer = options or loglik)",
                "scale": "an ordinal scale on the dataset (scale = ordinal(1, 4))",
                "human": "a human distribution on the dataset (human = field[country])",
                "targets": "gold answers on the dataset (gold = field or targets = field)",
            }
            self.err("E009", f"`{name}` cannot be computed for this study: it needs {'; '.join(why[m] for m in missing)}", name_span, notes=[f"the study's answer kinds: {' + '.join(kinds) or 'none'}"])
            ok = False
        if not ok:
            return None
        label = name if call is None else _metric_label(name, args, by)
        return MetricSpec(name=name, args=args, by=by, label=label)

    def _metric_arg(self, metric: str, p, val, axes: set[str], values: dict[str, list]) -> Any:
        if p.kind == "contrast":
            kw = val
            if not isinstance(kw, ast.KwArg) or not (isinstance(kw.value, ast.BinOp) and kw.value.op == "-"):
                self.err("E008", f"`{metric}` compares two conditions: write <axis> = a - b (e.g. mode = direct - reason)", _span_of(val))
                return None
            axis = kw.name.text
            sides = []
            for side in (kw.value.left, kw.value.right):
                text = side.parts[0].text if isinstance(side, ast.Ref) and side.is_name else str(side.value) if isinstance(side, (ast.Str, ast.Num)) else None
                known = [str(x) for x in values.get(axis, [])]
                if text is None:
                    self.err("E008", f"each side of `{axis} = a - b` is one value of `{axis}`", _span_of(side), hint=f"values: {', '.join(known)}; write one contrast per pair")
                    return None
                if known and text not in known:
                    self.err("E008", f"`{text}` is not a value of axis `{axis}` in this study", _span_of(side), hint=_did_you_mean(text, known, f"values: {', '.join(known)}"))
                    return None
                sides.append(text)
            return {"axis": axis, "a": sides[0], "b": sides[1]}
        if p.kind == "axis":
            if isinstance(val, ast.Ref) and val.is_name and val.parts[0].text in axes:
                return val.parts[0].text
            name = val.parts[0].text if isinstance(val, ast.Ref) else "?"
            self.err("E008", f"`{metric}`: `{name}` is not an axis of this study", _span_of(val), hint=_did_you_mean(name, axes, f"axes: {', '.join(sorted(axes))}"))
            return None
        if p.kind == "metric":
            name = val.parts[0].text if isinstance(val, ast.Ref) and val.is_name else None
            if name not in ITEM_METRICS:
                self.err("E008", f"`{metric}` aggregates a per-item metric; `{name or '?'}` is not one", _span_of(val), hint=_did_you_mean(name or "", ITEM_METRICS, f"one of: {', '.join(sorted(ITEM_METRICS))}"))
                return None
            return name
        if p.kind == "number":
            if isinstance(val, ast.Num):
                return val.value
            self.err("E008", f"`{metric}`: `{p.name}` is a number", _span_of(val))
            return None
        if p.kind == "language":
            if isinstance(val, ast.Ref) and val.is_name and self._code(val.parts[0]):
                if val.parts[0].text not in values.get("language", []):
                    self.err("E008", f"pivot language `{val.parts[0].text}` is not one of the study's languages", _span_of(val))
                    return None
                return val.parts[0].text
            return None
        if p.kind == "source":
            text = val.dotted if isinstance(val, ast.Ref) and val.index is None else None
            allowed = ("answer", "expected", "human.mean", "human", "option_probs")
            if text not in allowed:
                self.err("E008", f"`{metric}`: `{text or '?'}` is not a value it can compare", _span_of(val), hint=_did_you_mean(text or "", allowed, f"one of: {', '.join(allowed)}"))
                return None
            return text
        return None  # pragma: no cover - every kind handled above

    def _report(self, d: ast.Decl) -> ReportSpec | None:
        if not isinstance(d.value, ast.Str):
            if d.value is not None:
                self.err("E014", 'a report names a Jinja template: report main = "report.html.j2"', _span_of(d.value))
            return None
        name = d.value.value
        if name in BUILTIN_TEMPLATES:
            return ReportSpec(name=d.name.text, template=name)
        abs_path = os.path.normpath(os.path.join(self.decl_dir[id(d)], name))
        if not os.path.isfile(abs_path):
            self.err("E010", f"report template not found: {name}", d.value.span, hint=f"built-in templates: {', '.join(BUILTIN_TEMPLATES)}; a file path is relative to the spec")
            return None
        return ReportSpec(name=d.name.text, template=name, abs_path=abs_path)

    # -- scalar helpers ---------------------------------------------------------------------

    def _int(self, v: ast.Expr, minimum: int) -> int | None:
        if isinstance(v, ast.Num) and v.is_int and v.value >= minimum:
            return int(v.value)
        self.err("E014", f"expected a whole number >= {minimum}", _span_of(v))
        return None

    def _ints(self, s: ast.Setting | None, minimum: int) -> list[int] | None:
        if s is None:
            return None
        items = list(s.value.items) if isinstance(s.value, ast.ListExpr) else [s.value]
        out = [self._int(i, minimum) for i in items]
        return [i for i in out if i is not None]

    def _number(self, v: ast.Expr, lo: float, hi: float) -> float | None:
        if isinstance(v, ast.Num) and lo <= v.value <= hi:
            return v.value
        self.err("E014", f"expected a number from {lo:g} to {hi:g}", _span_of(v))
        return None

    def _bool(self, v: ast.Expr) -> bool | None:
        if isinstance(v, ast.Bool):
            return v.value
        self.err("E014", "expected true or false", _span_of(v))
        return None

    def _str(self, v: ast.Expr) -> str | None:
        if isinstance(v, ast.Str):
            return v.value
        self.err("E014", "expected a string", _span_of(v))
        return None

    def _strings(self, s: ast.Setting | None, what: str) -> list[str] | None:
        if s is None:
            return None
        items = list(s.value.items) if isinstance(s.value, ast.ListExpr) else [s.value]
        out = []
        for i in items:
            if isinstance(i, ast.Ref) and i.is_name:
                out.append(i.parts[0].text)
            elif isinstance(i, ast.Str):
                out.append(i.value)
            else:
                self.err("E014", f"expected {what} values (names or strings)", _span_of(i))
        return out


# ---- small helpers -----------------------------------------------------------------------


def _did_you_mean(word: str, candidates, fallback: str | None) -> str | None:
    close = suggest(word, candidates)
    return f"did you mean `{close}`?" if close else fallback


def _where(span: Span | None) -> str:
    return f"{span.file}:{span.line}:{span.col}" if span else "?"


def _span_of(node: Any) -> Span | None:
    return getattr(node, "span", None)


def _filter_fields(f: Any) -> set[str]:
    if not isinstance(f, list) or not f:
        return set()
    if f[0] == "field":
        return {f[1]}
    if f[0] == "const":
        return set()
    return set().union(*(_filter_fields(x) for x in f[1:]))


def _string_offset_span(node: ast.Expr, text: str, offset: int, width: int) -> Span | None:
    """The span of ``text[offset:offset+width]`` (decoded text) inside a one-line string
    literal, mapping escapes back to their source columns; otherwise the whole literal."""
    span = node.span
    if span is None or not isinstance(node, ast.Str):
        return span
    raw = node.raw
    if raw.startswith('"""') or span.line != span.end_line:
        return span
    cols: list[int] = []  # source column of each decoded character
    i, col = 1, span.col + 1
    while i < len(raw) - 1:
        step = 6 if raw.startswith("\\u", i) else 2 if raw[i] == "\\" else 1
        cols.append(col)
        i += step
        col += step
    if offset + width > len(cols):
        return span
    start, last = cols[offset], cols[offset + width - 1]
    return Span(span.file, span.line, start, span.line, last + 1)


def _metric_label(name: str, args: dict, by: list[str] | None) -> str:
    parts = []
    for k, v in args.items():
        if isinstance(v, dict):
            parts.append(f"{v['axis']}={v['a']}-{v['b']}")
        else:
            parts.append(f"{k}={_fmt_num(v)}")
    if by:
        parts.append("by=" + "+".join(by))
    return f"{name}({', '.join(parts)})" if parts else name


def _fmt_num(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)
