"""Framings and modes: prompt templates per language, and how the model answers.

- ``resolve_framings(decls, diags) -> dict[str, FramingSpec]``
- ``resolve_modes(decls, diags) -> dict[str, ModeSpec]``: settings and their value types
  read from :class:`~xlspec.spec.ModeSpec`'s fields.
- ``check_templates(...)``: for one study, every framing and mode instruction covers the
  study's languages, and every ``{placeholder}`` has a source (a mapped field of every
  dataset, the options, or a cell variable); used by the study pass.
"""

from __future__ import annotations

import math
import typing
from typing import Any

from .. import ast
from ..diagnostics import Diagnostics, Span
from ..items import SPECIAL_FIELDS
from ..prompt import is_valid_placeholder, placeholders
from ..spec import DatasetSpec, FramingSpec, ModeSpec
from .context import did_you_mean, expect_int, expect_number, span_of, string_offset_span, value_type, where
from .declarations import Declarations
from .languages import check_code
from .vocabulary import OPTION_PLACEHOLDERS, OPTIONS_FIELD, TEMPLATE_VARIABLES

MODE_SETTINGS: tuple[str, ...] = tuple(ModeSpec.model_fields)
"""What a mode's block may set: every field of :class:`~xlspec.spec.ModeSpec`."""

NUMBER_RANGES: dict[str, tuple[float, float, bool]] = {"temperature": (0.0, 2.0, False), "top_p": (0.0, 1.0, True)}
"""The range of each number-valued mode setting, and whether it excludes the low end (others:
any number >= 0).  ``top_p = 0`` would sample from nothing."""


def resolve_framings(decls: Declarations, diags: Diagnostics) -> dict[str, FramingSpec]:
    out: dict[str, FramingSpec] = {}
    for name, d in decls["framing"].items():
        templates: dict[str, str] = {}
        system: dict[str, str] = {}
        default = None
        for s in d.body.settings if d.body else ():
            if s.key.text == "system":
                system.update(per_language_text(s.value, "system", decls, diags))
                continue
            if s.key.text == "default":
                if isinstance(s.value, ast.Str):
                    default = s.value.value
                else:
                    diags.error("E014", "a framing's default template is a string", span_of(s.value))
                continue
            if not check_code(s.key, decls, diags):
                continue
            if not isinstance(s.value, ast.Str):
                diags.error("E014", "a framing template is a string", span_of(s.value))
                continue
            if s.key.text in templates:
                diags.error("E004", f"framing `{name}` has two `{s.key.text}` templates", s.key.span)
            templates[s.key.text] = s.value.value
        out[name] = FramingSpec(templates=templates, system=system or None, default=default)
    return out


def per_language_text(v: ast.Expr, what: str, decls: Declarations, diags: Diagnostics) -> dict[str, str]:
    """A string for every language (key ``*``), or a map from language code to string."""
    if isinstance(v, ast.Str):
        return {"*": v.value}
    if isinstance(v, ast.MapExpr):
        out = {}
        for e in v.entries:
            if check_code(e.key, decls, diags) and isinstance(e.value, ast.Str):
                out[e.key.text] = e.value.value
            elif not isinstance(e.value, ast.Str):
                diags.error("E014", f"{what} text is a string", span_of(e.value))
        return out
    diags.error("E014", f'{what} is a string, or a map from language to string: {{ en: "...", ar: "..." }}', span_of(v))
    return {}


def resolve_modes(decls: Declarations, diags: Diagnostics) -> dict[str, ModeSpec]:
    fields = ModeSpec.model_fields
    out: dict[str, ModeSpec] = {}
    for name, d in decls["mode"].items():
        vals: dict[str, Any] = {}
        for s in d.body.settings if d.body else ():
            key = s.key.text
            if key not in fields:
                diags.error("E014", f"unknown mode setting `{key}`", s.key.span, hint=did_you_mean(key, MODE_SETTINGS, f"a mode takes: {', '.join(sorted(MODE_SETTINGS))}"))
                continue
            vtype = value_type(fields[key].annotation)
            kind = typing.get_origin(vtype) or vtype
            if kind is dict:  # per language (the instruction)
                vals[key] = per_language_text(s.value, key, decls, diags)
            elif kind is int:
                vals[key] = expect_int(s.value, 1, diags, key)
            elif kind is float:
                lo, hi, above = NUMBER_RANGES.get(key, (0.0, math.inf, False))
                vals[key] = expect_number(s.value, lo, hi, diags, key, above=above)
            else:  # pragma: no cover - a ModeSpec field of a type the checker cannot read yet
                raise TypeError(f"mode setting {key!r}: no reader for {fields[key].annotation!r}")
        out[name] = ModeSpec(**{k: v for k, v in vals.items() if v is not None})
    return out


# ---- per study -------------------------------------------------------------------------------


def template_sources(datasets: list[DatasetSpec], has_country: bool) -> set[str]:
    """The placeholders a study's prompts can fill: cell variables, and the fields every one
    of its datasets maps (with the option placeholders where it maps options)."""
    provided = set(TEMPLATE_VARIABLES) - ({"country"} if not has_country else set())
    ds_fields: set[str] | None = None
    for ds in datasets:
        names = {k for k in ds.fields if k not in SPECIAL_FIELDS} | (set(OPTION_PLACEHOLDERS) if OPTIONS_FIELD in ds.fields else set())
        ds_fields = names if ds_fields is None else ds_fields & names
    return provided | (ds_fields or set())


def check_templates(
    study: ast.Decl,
    language_setting: ast.Setting,
    framings: list[str],
    modes: list[str],
    used: list[str],
    provided: set[str] | None,
    decls: Declarations,
    framing_specs: dict[str, FramingSpec],
    mode_specs: dict[str, ModeSpec],
    diags: Diagnostics,
) -> None:
    """Coverage of the study's languages ``used`` and the placeholders of the templates the
    study uses (not checked where ``provided`` is None: the study's data could not be read,
    so what its placeholders can name is unknown)."""
    where_study = f"study `{study.name.text}`"
    for name in framings:
        f = framing_specs.get(name)
        fdecl = decls["framing"][name]
        if f is None:
            continue
        own = {s.key.text for s in fdecl.body.settings} if fdecl.body else set()
        missing = [lang for lang in used if lang not in own]
        if missing and f.default is not None:
            # `default = "..."`: said explicitly, the shared template serves these languages
            # (the plan records it under each of them, as if written out); its placeholders
            # are checked against every study that uses it
            setting = fdecl.body.get("default")
            if provided is not None:
                check_placeholders(f.default, setting.value, provided, f"framing `{name}`", diags, where_study)
            for lang in missing:
                f.templates[lang] = f.default
            missing = []
        if missing:
            diags.error(
                "E005",
                f"framing `{name}` has no template for {', '.join(missing)}",
                fdecl.name.span,
                context=language_setting.span,
                notes=[f"study `{study.name.text}` uses {', '.join(used)} (language set at {where(language_setting.span)})"],
                hint=f"add: {missing[0]} = \"...\", or a template for every language without one: default = \"...\"",
            )
        for lang, text in sorted(f.templates.items()):
            setting = next((s for s in fdecl.body.settings if s.key.text == lang), None)
            if lang not in used or setting is None:  # None: filled from the default
                continue
            if provided is not None:
                check_placeholders(text, setting.value, provided, f"framing `{name}`", diags, where_study)
    for name in modes:
        m = mode_specs.get(name)
        if m and m.instruction:
            mdecl = decls["mode"][name]
            setting = mdecl.body.get("instruction")
            for lang, text in sorted(m.instruction.items()):
                if lang != "*" and lang not in used or provided is None:
                    continue
                check_placeholders(text, setting.value, provided, f"mode `{name}`", diags, where_study)
            missing = [lang for lang in used if lang not in m.instruction and "*" not in m.instruction]
            if missing:
                diags.error("E005", f"mode `{name}` has no instruction for {', '.join(missing)}", setting.key.span, notes=[f"study `{study.name.text}` uses {', '.join(used)}"])


def check_placeholders(text: str, node: ast.Expr, provided: set[str], where_: str, diags: Diagnostics, used_by: str | None = None) -> None:
    """``used_by``: the study whose data the placeholders are checked against, as a note (the
    same error found for several studies is reported once, with a note for each)."""
    notes = [f"as used by {used_by}"] if used_by else []
    for ph, offset in placeholders(text):
        if ph in provided and is_valid_placeholder(ph):
            continue
        span: Span | None = string_offset_span(node, text, offset, len(ph) + 2)
        if not is_valid_placeholder(ph):
            diags.error("E006", f"malformed placeholder `{{{ph}}}` in {where_}", span, hint="placeholders are {name}; write {{ and }} for literal braces")
        elif ph == "country":
            diags.error("E006", f"placeholder `{{country}}` in {where_} needs a country axis", span, hint="set `country = <countries>` in the study", notes=notes)
        else:
            diags.error("E006", f"placeholder `{{{ph}}}` in {where_} has no source", span, hint=did_you_mean(ph, provided, f"available: {', '.join(sorted(provided))}"), notes=notes)
