r"""Answer kinds and answer parsers: a study's ``answer = options + generate(parser = ...)``.

``resolve_answers(setting, datasets, diags) -> list[AnswerSpec]``: the kinds are the
registered ones (``xlspec.answers.ANSWER_KINDS``), with the parameters each declares; a
``parser`` parameter takes a registered parser (``xlspec.parsers.PARSERS``) by name
(``option_letter``) or as a call with positional or keyword arguments (``json(answer)``,
``regex("\\\\boxed\\{([^}]*)\\}")``), checked against the parser's parameters and by the
parser itself (``Parser.validate``: a regex that does not compile).  Without an ``answer``
setting a study reads option probabilities where its datasets map options, else the text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .. import ast
from ..answers import ANSWER_KINDS, kinds_providing
from ..diagnostics import Diagnostics
from ..parsers import PARSERS, Parser, ParserParam
from ..parsers.base import ParserArgError, score_names
from ..items import SPECIAL_FIELDS
from ..spec import AnswerSpec, DatasetSpec, ModelSpec
from .context import did_you_mean, span_of
from .vocabulary import OPTIONS_FIELD

DEFAULT_PARSERS = {"numbers": "option_number", "letters": "option_letter"}
"""``generate`` without a parser, on datasets with options: the option parser for their
labels (``text`` without options)."""


def kinds_in_order() -> list[str]:
    """The answer kinds, in the order metrics prefer the answers they choose (the rank of
    ``choice``: generate, options, loglik), then by name."""
    names = ANSWER_KINDS.names()
    rank = kinds_providing("choice")
    return sorted(names, key=lambda n: (rank.get(n, len(names)), n))


def resolve_answers(s: ast.Setting | None, datasets: list[DatasetSpec], diags: Diagnostics, models: Mapping[str, ModelSpec | None] | None = None) -> list[AnswerSpec]:
    """``models``: the models the spec declares (what a ``model`` argument may name), with
    their settings where they could be read."""
    if s is None:
        has_options = all(OPTIONS_FIELD in d.fields for d in datasets)
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
    has_options = all(OPTIONS_FIELD in d.fields for d in datasets)
    for t in terms:
        name = t.parts[0].text if isinstance(t, ast.Ref) and t.is_name else t.func.text if isinstance(t, ast.Call) else None
        kind = ANSWER_KINDS.get(name) if name else None
        if kind is None:
            kinds = kinds_in_order()
            diags.error("E014", f"unknown answer kind `{name or '?'}`", span_of(t), hint=did_you_mean(name or "", kinds, f"answer kinds: {', '.join(kinds)}"))
            continue
        kw = {k.name.text: k.value for k in t.keywords} if isinstance(t, ast.Call) else {}
        if isinstance(t, ast.Call) and t.positional:
            named = ", ".join(f"{p.name} = ..." for p in kind.params) or "no arguments"
            diags.error("E014", f"`{name}` takes its arguments by name", span_of(t.positional[0]), hint=f"write {name}({named})")
        values: dict[str, Any] = {}
        for p in kind.params:
            given = kw.pop(p.name, None)
            if p.kind == "parser":
                if given is not None:
                    values["parser"], values["parser_args"] = _parser(given, diags)
                else:
                    values["parser"] = p.default or _default_parser(datasets, has_options)
            elif p.kind == "field":
                field = given.parts[0].text if isinstance(given, ast.Ref) and given.is_name else None
                if given is None and (p.default is not None or p.optional):
                    field = p.default
                    if field is not None and datasets and not all(field in d.fields for d in datasets):
                        lacking = next(d.name for d in datasets if field not in d.fields)
                        diags.error("E011", f"dataset `{lacking}` maps no field `{field}`, which `{name}`'s `{p.name}` reads unless it is given", span_of(t), hint=f"write {name}({p.name} = <field>)")
                    elif field is not None:
                        values.setdefault("args", {})[p.name] = field
                elif given is None:
                    diags.error("E014", f"`{name}` needs `{p.name}`: {name}({p.name} = <field>)", span_of(t), hint=p.summary)
                elif field is None:
                    diags.error("E014", f"`{name}`'s `{p.name}` names a field of the dataset", span_of(given))
                else:
                    lacking = [d.name for d in datasets if field not in d.fields or field in SPECIAL_FIELDS]
                    if lacking:
                        diags.error("E011", f"dataset `{lacking[0]}` maps no field `{field}` for `{name}`'s `{p.name}`", span_of(given), hint=did_you_mean(field, [k for k in datasets[0].fields if k not in SPECIAL_FIELDS] if datasets else [], None))
                    values.setdefault("args", {})[p.name] = field
            elif p.kind == "number":
                if given is not None and not isinstance(given, ast.Num):
                    diags.error("E014", f"`{name}`'s `{p.name}` is a number", span_of(given))
                values.setdefault("args", {})[p.name] = given.value if isinstance(given, ast.Num) else p.default
            elif p.kind == "bool":
                if given is not None and not isinstance(given, ast.Bool):
                    diags.error("E014", f"`{name}`'s `{p.name}` is true or false", span_of(given))
                value = bool(given.value) if isinstance(given, ast.Bool) else bool(p.default)
                if p.name in AnswerSpec.model_fields:
                    values[p.name] = value
                else:
                    values.setdefault("args", {})[p.name] = value
            elif p.kind == "choice":
                value = p.default
                if isinstance(given, ast.Bool) and p.name == "normalize":
                    # `normalize = true` once meant per token, while lm-eval's acc_norm is per
                    # character: the name has to say which
                    if given.value:
                        diags.error("E014", f"`{name}`'s `{p.name}` names how: {', '.join(p.choices)}", span_of(given), hint="chars is lm-eval's acc_norm, tokens the mean per-token log-likelihood")
                    else:
                        value = "none"
                elif given is not None:
                    text = given.parts[0].text if isinstance(given, ast.Ref) and given.is_name else given.value if isinstance(given, ast.Str) else None
                    if text not in p.choices:
                        diags.error("E014", f"`{name}`'s `{p.name}` is one of {', '.join(p.choices)}", span_of(given), hint=did_you_mean(str(text or ""), list(p.choices), p.summary))
                    else:
                        value = text
                values.setdefault("args", {})[p.name] = value
            elif p.kind == "text":
                if given is not None and not isinstance(given, ast.Str):
                    diags.error("E014", f"`{name}`'s `{p.name}` is a string in quotes", span_of(given), hint=p.summary)
                values.setdefault("args", {})[p.name] = given.value if isinstance(given, ast.Str) else p.default
            elif p.kind == "model":
                ref = given.parts[0].text if isinstance(given, ast.Ref) and given.is_name else None
                if given is None:
                    if not p.optional:
                        diags.error("E014", f"`{name}` needs `{p.name}`: {name}({p.name} = <model>)", span_of(t), hint=p.summary)
                elif ref is None:
                    diags.error("E014", f"`{name}`'s `{p.name}` names a model of the spec", span_of(given))
                elif models is not None and ref not in models:
                    diags.error("E003", f"undefined model `{ref}`", span_of(given), hint=did_you_mean(ref, list(models), f"models: {', '.join(models)}" if models else "declare it: model NAME = hf(\"...\")"))
                else:
                    declared = models.get(ref) if models is not None else None
                    if declared is not None and declared.head != "lm":
                        diags.error("E009", f"`{name}`'s `{p.name}` must be a language model; model `{ref}` has head `{declared.head}`", span_of(given))
                    values.setdefault("args", {})[p.name] = ref
            else:  # pragma: no cover - a parameter kind the checker cannot read yet
                raise TypeError(f"answer kind {name!r}: parameter {p.name!r} has an unknown kind {p.kind!r}")
        if kind.needs_options and not has_options:
            diags.error("E009", f"answer kind `{name}` needs the dataset to map `{OPTIONS_FIELD}`", span_of(t))
        for k, val in kw.items():
            diags.error("E014", f"`{name}` takes no argument `{k}`", span_of(val))
        spec = AnswerSpec(kind=name, **values)
        if spec in out:
            diags.error("E004", f"answer kind `{name}` is given twice with the same settings", span_of(t), hint="each answer kind is computed once per item; remove one")
            continue
        out.append(spec)
    return out


def _default_parser(datasets: list[DatasetSpec], has_options: bool) -> str:
    if not has_options:
        return "text"
    labels = {d.labels for d in datasets if OPTIONS_FIELD in d.fields}
    return DEFAULT_PARSERS["numbers"] if labels == {"numbers"} else DEFAULT_PARSERS["letters"]


# ---- parsers ---------------------------------------------------------------------------------


def _parser(p: ast.Expr, diags: Diagnostics) -> tuple[str | None, dict | None]:
    """(name, arguments or None) of ``parser = NAME`` or ``parser = NAME(args)``."""
    if isinstance(p, ast.Ref):
        name, call = p.parts[0].text, None
    elif isinstance(p, ast.Call):
        name, call = p.func.text, p
    else:
        names = PARSERS.names()
        if isinstance(p, ast.ListExpr):
            diags.error("E014", "an answer kind has one parser, not a list", span_of(p), hint="to read the same answers two ways, give two answer kinds: answer = generate(parser = a) + generate(parser = b)")
        else:
            diags.error("E014", "a parser is a name, or a name with arguments: parser = regex(\"...\")", span_of(p), hint=f"parsers: {', '.join(names)}")
        return None, None
    info = PARSERS.get(name) if name else None
    if info is None:
        names = PARSERS.names()
        diags.error("E014", f"unknown answer parser `{name or '?'}`", span_of(p), hint=did_you_mean(name or "", names, f"parsers: {', '.join(names)}"))
        return name, None
    args = _parser_args(info, p, call, diags)
    if args is None:
        return name, None
    names = score_names(name, args)
    if names:
        from ..runtime.schema import RESULTS_SCHEMA  # pyarrow: only where a rubric is named

        taken = [n for n in names if n in RESULTS_SCHEMA.names]
        if taken:
            diags.error("E014", f"parser `{name}`: the score `{taken[0]}` has the name of a results column", span_of(p), hint="name the score otherwise (metrics name scores and columns alike)")
            return name, None
    return name, args or None


def _parser_args(info: Parser, node: ast.Expr, call: ast.Call | None, diags: Diagnostics) -> dict | None:
    """The parser's arguments, defaults filled in; None after an error (reported)."""
    name = info.name
    params = {p.name: p for p in info.params}
    positional = call.positional if call else []
    given: list[tuple[ParserParam, ast.Expr]] = []
    ok = True
    if len(positional) > len(info.params):
        extra = positional[len(info.params)]
        takes = f"takes {len(info.params)} argument(s) ({', '.join(params)})" if params else "takes no arguments"
        diags.error("E014", f"parser `{name}` {takes}, got {len(positional)}", span_of(extra))
        ok = False
    given += list(zip(info.params, positional))
    for kw in call.keywords if call else []:
        key = kw.name.text
        if key not in params:
            diags.error("E014", f"parser `{name}` has no argument `{key}`", kw.name.span, hint=did_you_mean(key, params, f"it takes: {', '.join(params)}" if params else "it takes no arguments"))
            ok = False
            continue
        given.append((params[key], kw.value))
    args: dict[str, Any] = {}
    nodes: dict[str, ast.Expr] = {}
    for p, val in given:
        if p.name in nodes:
            diags.error("E014", f"parser `{name}`: argument `{p.name}` given twice", span_of(val))
            ok = False
            continue
        nodes[p.name] = val
        got = _parser_value(name, p, val, diags)
        if got is None:
            ok = False
        else:
            args[p.name] = got
    for p in info.params:
        if p.name in nodes:
            continue
        if p.required:
            if ok:
                diags.error("E014", f"parser `{name}` needs `{p.name}`: {name}({p.name} = ...)", span_of(node), hint=f"{p.name}: {p.summary}")
            ok = False
        elif p.default is not None:
            args[p.name] = p.default
    if not ok:
        return None
    try:
        info.validate(args)
    except ParserArgError as e:
        at = next(iter(nodes.values())) if len(nodes) == 1 else node
        diags.error("E014", f"parser `{name}`: {e}", span_of(at))
        return None
    return args


def _parser_value(parser: str, p: ParserParam, v: ast.Expr, diags: Diagnostics) -> Any:
    if p.kind == "string":
        if isinstance(v, ast.Str):
            return v.value
        diags.error("E014", f"parser `{parser}`: `{p.name}` is a string", span_of(v))
        return None
    if p.kind == "field":
        if isinstance(v, ast.Str):
            return v.value
        if isinstance(v, ast.Ref) and v.index is None:
            return v.dotted
        diags.error("E014", f"parser `{parser}`: `{p.name}` is a field name or a dotted path (a.b)", span_of(v))
        return None
    if p.kind == "bool":
        if isinstance(v, ast.Bool):
            return v.value
        diags.error("E014", f"parser `{parser}`: `{p.name}` is true or false", span_of(v))
        return None
    if p.kind == "names":
        items = list(v.items) if isinstance(v, ast.ListExpr) else [v]
        names = [i.value if isinstance(i, ast.Str) else i.dotted if isinstance(i, ast.Ref) and i.index is None else None for i in items]
        if not items or None in names:
            diags.error("E014", f"parser `{parser}`: `{p.name}` is a name or a list of names: [fluency, coherence]", span_of(v))
            return None
        return names
    if p.kind == "number":
        if isinstance(v, ast.Num):
            return v.value
        diags.error("E014", f"parser `{parser}`: `{p.name}` is a number", span_of(v))
        return None
    raise TypeError(f"parser {parser!r}: parameter {p.name!r} has an unknown kind {p.kind!r}")  # pragma: no cover

