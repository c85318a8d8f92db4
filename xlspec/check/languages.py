"""Languages and countries: named language sets (set algebra over codes, sets and
groups), ``countries`` maps, and the language expressions of studies.

- ``resolve_language_sets(decls, groups, diags) -> dict[str, list[str] | None]``: each set's
  codes in order, None where its definition had errors (reported once).  Needs the groups,
  since a set may be written with one (``languages eu = pair``).
- ``resolve_countries(decls, diags) -> dict[str, dict[str, str]]``: countries map -> country
  code -> language code.
- ``study_languages(...)``: a study's language expression for one country, where
  ``native(country)`` is allowed.
- ``check_code(ident, decls, diags)``: one language code (E002 with a suggestion, or E003
  where it looks like a set's name).

Language-code rules themselves are in :mod:`xlspec.languages`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .. import ast
from ..diagnostics import Diagnostics, suggest
from ..languages import check_code as code_status, country_is_valid, describe
from .context import span_of
from .declarations import Declarations
from .vocabulary import NATIVE


MAX_CODE_LENGTH = 64
"""Longer than any BCP-47 tag a dataset uses, or any language name."""


def check_code(ident: ast.Ident, decls: Declarations, diags: Diagnostics) -> list[str] | None:
    """``[code]`` when ``ident`` is a valid language code; None after reporting why not."""
    code = ident.text
    if len(code) > MAX_CODE_LENGTH:  # no code or language name is this long; do not look it up
        shown = code[:20] + "..."
        diags.error("E002", f"unknown language code `{shown}` ({len(code):,} characters)", ident.span, hint="use an ISO 639 / BCP-47 code such as en, ar, zh-Hant")
        return None
    ok, hint = code_status(code)
    if ok:
        return [code]
    sets = decls["languages"]
    if "-" in code and all(p in sets for p in code.split("-")):
        diags.error("E003", f"`{code}` is neither a language code nor a language set", ident.span, hint=f"for a set difference put spaces around '-': {code.replace('-', ' - ')}")
        return None
    close_set = suggest(code, list(sets))
    if close_set:
        diags.error("E003", f"undefined language set `{code}`", ident.span, hint=f"did you mean `{close_set}`?")
        return None
    msg = f"unknown language code `{code}`"
    if hint:
        diags.error("E002", msg, ident.span, hint=f"did you mean `{hint}` ({describe(hint)})?")
    else:
        diags.error("E002", msg, ident.span, hint="use an ISO 639 / BCP-47 code such as en, ar, zh-Hant")
    return None


@dataclass
class _Scope:
    """What a language expression can name: sets (resolved on first use, cycles reported)
    and groups (their members evaluated as languages, once)."""

    decls: Declarations
    groups: dict[str, list[ast.Ref]]
    diags: Diagnostics
    sets: dict[str, list[str] | None] = field(default_factory=dict)
    group_codes: dict[str, list[str] | None] = field(default_factory=dict)

    def language_set(self, name: str, stack: list[str]) -> list[str] | None:
        if name in self.sets:
            return self.sets[name]
        d = self.decls["languages"][name]
        if name in stack:
            self.diags.error("E013", f"language set `{name}` is defined in terms of itself", d.name.span)
            return None
        if d.value is None:
            return None
        codes = self.evaluate(d.value, stack + [name], country=None, allow_native=False)
        self.sets[name] = codes
        return codes

    def group(self, name: str, stack: list[str]) -> list[str] | None:
        # Members are names, so the result does not depend on the country; errors in them
        # are reported once, however many expressions use the group.
        if name not in self.group_codes:
            members = ast.ListExpr(tuple(self.groups.get(name) or ()))
            self.group_codes[name] = self.evaluate(members, stack, country=None, allow_native=False)
        codes = self.group_codes[name]
        return None if codes is None else list(codes)

    def evaluate(self, expr: ast.Expr, stack: list[str], country: str | None, allow_native: bool, countries: dict[str, str] | None = None) -> list[str] | None:
        """A language expression's codes; None after an error (already reported)."""
        if isinstance(expr, ast.ListExpr):
            out: list[str] = []
            failed = False
            for item in expr.items:  # every item, so every bad code is reported
                got = self.evaluate(item, stack, country, allow_native, countries)
                if got is None:
                    failed = True
                else:
                    out += [c for c in got if c not in out]
            return None if failed else out
        if isinstance(expr, ast.Ref) and expr.is_name:
            name = expr.parts[0].text
            if name in self.decls["languages"]:
                codes = self.language_set(name, stack)
                return None if codes is None else list(codes)
            if name in self.decls["group"]:
                return self.group(name, stack)
            return check_code(expr.parts[0], self.decls, self.diags)
        if isinstance(expr, ast.Str):
            return check_code(ast.Ident(expr.value, expr.span), self.decls, self.diags)
        if isinstance(expr, ast.BinOp) and expr.op in "+-&":
            left = self.evaluate(expr.left, stack, country, allow_native, countries)
            right = self.evaluate(expr.right, stack, country, allow_native, countries)  # reported too
            if left is None or right is None:
                return None
            if expr.op == "+":
                return left + [c for c in right if c not in left]
            if expr.op == "-":
                return [c for c in left if c not in right]
            return [c for c in left if c in right]
        if isinstance(expr, ast.Call) and expr.func.text == NATIVE:
            if not allow_native:
                self.diags.error("E014", "native(country) can only be used in a study, where `country` is an axis", expr.span)
                return None
            if countries is None:
                self.diags.error("E014", "native(country) needs the study to set `country = <countries>`", expr.span)
                return None
            return [countries[country]] if country in countries else []
        self.diags.error("E014", "not a language expression", span_of(expr), hint="write codes in a list ([en, ar]), a named set, or set algebra (a + b, a - b, a & b)")
        return None


class LanguageSets:
    """The resolved language sets, and the evaluator studies use on top of them."""

    def __init__(self, decls: Declarations, groups: dict[str, list[ast.Ref]], diags: Diagnostics):
        self._scope = _Scope(decls, groups, diags)
        for name in decls["languages"]:
            self._scope.language_set(name, [])

    @property
    def codes(self) -> dict[str, list[str] | None]:
        return self._scope.sets

    def study_languages(self, expr: ast.Expr, country: str | None, countries: dict[str, str] | None) -> list[str] | None:
        """A study's ``language = ...`` for one country (``native(country)`` allowed)."""
        return self._scope.evaluate(expr, [], country, allow_native=True, countries=countries)


def resolve_language_sets(decls: Declarations, groups: dict[str, list[ast.Ref]], diags: Diagnostics) -> LanguageSets:
    return LanguageSets(decls, groups, diags)


def resolve_countries(decls: Declarations, diags: Diagnostics) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for name, d in decls["countries"].items():
        if not isinstance(d.value, ast.MapExpr):
            if d.value is not None:
                diags.error("E014", "countries are a map: { EG: ar, IR: fa }", span_of(d.value))
            continue
        table: dict[str, str] = {}
        for e in d.value.entries:
            if not country_is_valid(e.key.text):
                diags.error("E014", f"unknown country code `{e.key.text}`", e.key.span, hint="use ISO 3166-1 alpha-2 codes such as EG, IR, TR")
            if not (isinstance(e.value, ast.Ref) and e.value.is_name):
                diags.error("E014", "a country maps to one language code", span_of(e.value))
                continue
            codes = check_code(e.value.parts[0], decls, diags)
            if codes:
                table[e.key.text] = codes[0]
        out[name] = table
    return out
