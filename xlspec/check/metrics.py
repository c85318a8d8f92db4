"""Metric typing: a study's ``metrics = [...]`` against the registered metrics
(``xlspec.runtime.metrics.registry.METRICS``) and what the study can feed them.

``resolve_metrics(setting, answers, datasets, axes, values, decls, diags) -> list[MetricSpec]``:
each metric's arguments are bound (positional, by name, ``by = [axes]``, and
``<axis> = a - b`` contrasts) and typed by the metric's parameters; what it needs
(``MetricInfo.needs``, and those of a per-item metric it aggregates) must be provided by the
study's answer kinds (``AnswerKind.provides``; ``parsed`` only with a parser that can refuse)
and its datasets (``scale``, ``human``, ``targets``), else E009 says which are missing
(:data:`~xlspec.runtime.metrics.registry.NEEDS`).  Labels are ``metric_label``'s.

Importing the registry imports neither numpy nor pandas.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from .. import ast
from ..answers import ANSWER_KINDS
from ..diagnostics import Diagnostics
from ..parsers.base import can_refuse, score_names
from ..runtime.metrics.registry import METRICS, NEEDS, MetricInfo, Param, listed_metrics, metric_label, per_item_metrics
from ..spec import AnswerSpec, DatasetSpec, MetricSpec
from .context import did_you_mean, items_of, name_of, span_of
from .declarations import Declarations
from ..runtime.metrics.derived import expression_text
from .derived import DerivedChecker, derived_axes, is_derived
from .languages import check_code

DATASET_PROVIDES: dict[str, Callable[[DatasetSpec], bool]] = {
    "scale": lambda d: d.scale is not None,
    "human": lambda d: "human" in d.fields,
    "targets": lambda d: "gold" in d.fields or "targets" in d.fields,
}
"""Needs a study's datasets provide (when every one of them does)."""


def provided_needs(answers: list[AnswerSpec], datasets: list[DatasetSpec]) -> set[str]:
    """What the study can feed metrics: its answer kinds' provisions and its datasets'."""
    provides: set[str] = set().union(*(ANSWER_KINDS[a.kind].provides for a in answers)) if answers else set()
    if any(a.parser and not can_refuse(a.parser) for a in answers):
        provides.discard("parsed")
    if any(score_names(a.parser, a.parser_args) or ANSWER_KINDS[a.kind].scores(a.args) for a in answers):
        provides.add("scores")
    if any(a.kind == "pairwise" for a in answers):
        provides.add("pairwise")
    for need, has in DATASET_PROVIDES.items():
        # No dataset could be read (reported where it is declared): what the data provides is
        # unknown, so nothing is reported as missing from it.
        if not datasets or all(has(d) for d in datasets):
            provides.add(need)
    return provides


def axis_names(v: ast.Expr, diags: Diagnostics) -> list[tuple[str, Any]]:
    """``group_by`` and ``by``: an axis name or a list of them, with their spans."""
    out = []
    for i in items_of(v):
        if isinstance(i, ast.Ref) and i.is_name:
            out.append((i.parts[0].text, i.span))
        else:
            diags.error("E014", "expected an axis name", span_of(i))
    return out


def resolve_metrics(
    s: ast.Setting | None,
    answers: list[AnswerSpec],
    datasets: list[DatasetSpec],
    axes: set[str],
    values: dict[str, list],
    decls: Declarations,
    diags: Diagnostics,
    attributes: dict[str, dict[str, Any]] | None = None,
    numeric: dict[str, list] | None = None,
    natives: list[str] | str | None = None,
) -> list[MetricSpec]:
    """``axes``: the study's axes; ``values``: each axis's values where they are names or
    codes (what a contrast's sides are checked against); ``attributes``: each model's
    declared attributes and ``numeric`` the values of the integer axes (what a fit is
    fitted against); ``natives``: the native languages of the study's countries (what a
    contrast side ``native(country)`` stands for), or why it cannot stand for them."""
    if s is None:
        return []
    provides = provided_needs(answers, datasets)
    kinds = [a.kind for a in answers]
    scores = list(dict.fromkeys(n for a in answers for n in (*score_names(a.parser, a.parser_args), *ANSWER_KINDS[a.kind].scores(a.args))))
    out: list[MetricSpec] = []
    labels: set[str] = set()
    if natives is not None:
        values = {**values, NATIVE: natives}

    def metric(e: ast.Expr) -> MetricSpec | None:
        return _metric(e, provides, axes, values, kinds, scores, decls, diags)

    for listed in items_of(s.value):
        derived = is_derived(listed, decls)
        for item in [listed] if derived else _each(listed, axes, values, diags):
            m = _derived(item, metric, DerivedChecker(axes, values, decls, diags, lambda x: None, attributes, numeric)) if derived else metric(item)
            if m is not None:
                if m.label in labels:
                    diags.error("E004", f"metric `{m.label}` is listed twice", span_of(item))
                    continue
                labels.add(m.label)
                out.append(m)
    return out


def _each(item: ast.Expr, axes: set[str], values: dict[str, list], diags: Diagnostics) -> list[ast.Expr]:
    """``metric(..., axis = a - each([b, c]))`` is one metric per value, as if written
    ``axis = a - b`` and ``axis = a - c``; ``each(others)`` takes every value of the axis
    not on the other side.  (A list side without ``each`` pools the values' answers.)"""
    if not isinstance(item, ast.Call):
        return [item]
    for i, arg in enumerate(item.args):
        if not (isinstance(arg, ast.KwArg) and isinstance(arg.value, ast.BinOp) and arg.value.op == "-"):
            continue
        sides = (arg.value.left, arg.value.right)
        which = [k for k, x in enumerate(sides) if isinstance(x, ast.Call) and x.func.text == "each"]
        if not which:
            continue
        if len(which) == 2:
            diags.error("E008", "each(...) goes on one side of a contrast: language = en - each([fr, de])", span_of(arg.value))
            return []
        k = which[0]
        call, other = sides[k], sides[1 - k]
        if len(call.args) != 1 or isinstance(call.args[0], ast.KwArg):
            diags.error("E008", "each(...) takes the values to compare one by one: each([fr, de]), each(others)", span_of(call))
            return []
        inner = call.args[0]
        axis = arg.name.text
        if axis not in axes:
            return [item]  # reported as an unknown argument
        if isinstance(inner, ast.ListExpr):
            members = list(inner.items)
        elif isinstance(inner, ast.Ref) and inner.is_name and inner.parts[0].text == "others" and "others" not in [str(v) for v in values.get(axis, [])]:
            known = [str(v) for v in values.get(axis, [])]
            if not known:
                diags.error("E008", f"each(others) needs the values of `{axis}`, which are numbers here: name them", span_of(inner), hint="each([1, 5])")
                return []
            taken = {_value_text(x) for x in (other.items if isinstance(other, ast.ListExpr) else [other])}
            members = [ast.Ref(parts=(ast.Ident(v, inner.span),), span=inner.span) for v in known if v not in taken]
        else:
            members = [inner]
        if not members:
            diags.error("E008", f"each(...) leaves no value of `{axis}` to compare", span_of(call), hint="the other side already takes every value")
            return []
        out: list[ast.Expr] = []
        for member in members:
            left, right = (member, other) if k == 0 else (other, member)
            one = replace(arg, value=replace(arg.value, left=left, right=right))
            out += _each(replace(item, args=(*item.args[:i], one, *item.args[i + 1 :])), axes, values, diags)
        return out
    return [item]


def _derived(e: ast.Expr, metric: Callable[[ast.Expr], MetricSpec | None], checker: DerivedChecker) -> MetricSpec | None:
    """A derived metric (``xlspec/check/derived.py``): its tree, labelled with the declared
    name or the expression's text."""

    diags = checker.diags

    def leaf(x: ast.Expr) -> Any:
        m = metric(x)
        if m is None:
            return None
        if m.by is not None:
            diags.error("E008", "a metric inside an expression is grouped by the expression; drop its `by`", span_of(x))
            return None
        return {"name": m.name, "args": m.args} if m.args else m.name

    checker.leaf = leaf
    tree = checker.build(e)
    if tree is None:
        return None
    if "number" in tree:
        diags.error("E014", "a number alone is not a metric: a metric is a name, a call or an expression of metrics (accuracy, consistency(over = language), accuracy - 0.25)", span_of(e))
        return None
    try:
        derived_axes(tree)
    except ValueError as err:
        diags.error("E008", str(err), span_of(e))
        return None
    if isinstance(e, ast.Ref) and e.is_name:
        label = e.parts[0].text
    else:
        label = expression_text(tree)
    return MetricSpec(name="derived", args={"expr": tree}, label=label)


def _metric(e: ast.Expr, provides: set[str], axes: set[str], values: dict[str, list], kinds: list[str], scores: list[str], decls: Declarations, diags: Diagnostics) -> MetricSpec | None:
    if isinstance(e, ast.Ref) and e.is_name:
        name, call = e.parts[0].text, None
    elif isinstance(e, ast.Call):
        name, call = e.func.text, e
    else:
        diags.error("E014", "a metric is a name, a call or an expression of metrics: accuracy, consistency(over = language), accuracy - 0.25", span_of(e))
        return None
    info = METRICS.get(name)
    name_span = e.span if call is None else call.func.span
    if info is None or not info.listed:
        names = listed_metrics() + sorted(decls["metric"])
        diags.error("E007", f"unknown metric `{name}`", name_span, hint=did_you_mean(name, names, f"metrics: {', '.join(names)}"))
        return None
    args: dict[str, Any] = {}
    by = None
    ok = True
    params = {p.name: p for p in info.params}
    contrast = next((p.name for p in info.params if p.kind == "contrast"), None)
    positional = call.positional if call else []
    if len(positional) > len(info.positional):
        diags.error("E008", f"`{name}` takes at most {len(info.positional)} positional argument(s), got {len(positional)}", span_of(positional[len(info.positional)]))
        ok = False
    assigned: list[tuple[str, Any]] = list(zip(info.positional, positional))
    for kw in call.keywords if call else []:
        key = kw.name.text
        if key == "by":
            by = [n for n, _ in axis_names(kw.value, diags)]
            for n in by:
                if n not in axes:
                    diags.error("E008", f"`by`: `{n}` is not an axis of this study", span_of(kw.value), hint=did_you_mean(n, axes, None))
                    ok = False
            continue
        if key in params:
            assigned.append((key, kw.value))
        elif key in axes and contrast is not None:
            # `delta(agreement, mode = direct - reason)`: an axis contrast.
            assigned.append((contrast, kw))
        else:
            names = [p for p in params if params[p].kind != "contrast"] + (["<axis> = a - b"] if contrast is not None else []) + ["by"]
            diags.error("E008", f"`{name}` has no argument `{key}`", kw.name.span, hint=did_you_mean(key, list(params) + list(axes), f"it takes: {', '.join(names)}"))
            ok = False
    for pname, val in assigned:
        if pname in args:
            diags.error("E008", f"`{name}`: argument `{pname}` given twice", span_of(val))
            ok = False
            continue
        got = _argument(name, params[pname], val, axes, values, scores, decls, diags, lambda e: _metric(e, provides, axes, values, kinds, scores, decls, diags))
        if got is None:
            ok = False
        else:
            args[pname] = got
    for p in info.params:
        if p.required and p.name not in args and ok:
            form = "<axis> = a - b" if p.kind == "contrast" else p.name
            diags.error("E008", f"`{name}` needs `{form}`", name_span, hint=f"{name}: {info.summary}")
            ok = False
        elif p.name not in args and p.default is not None:
            args[p.name] = p.default
    if ok:
        folds = list(info.folds(args))
        if len(folds) != len(set(folds)):  # rank_stability(..., rank = language, language = en - et)
            twice = next(a for a in folds if folds.count(a) > 1)
            diags.error("E008", f"`{name}` uses `{twice}` twice: it cannot rank the values of the axis it compares along", name_span, hint=f"rank another axis than `{twice}`")
            ok = False
    if ok:
        for axis in info.folds(args):
            have = values.get(axis)
            if have is not None and len(have) == 1:  # none: reported where the axis is set
                many = "countries" if axis == "country" else f"{axis}s"
                diags.error("E008", f"`{name}` compares {many}, and this study has one: {have[0]}", name_span, hint=f"give the study two or more {many}, or drop the metric")
                ok = False
    missing = sorted(_needs(info, args) - provides)
    if missing and ok:
        diags.error(
            "E009",
            f"`{name}` cannot be computed for this study: it needs {'; '.join(NEEDS[m] for m in missing)}",
            name_span,
            notes=[f"the study's answer kinds: {' + '.join(kinds) or 'none'}"],
        )
        ok = False
    if not ok:
        return None
    label = name if call is None else metric_label(name, args, by)
    pair = args.get("pair")
    if name == "delta" and isinstance(pair, dict) and any(isinstance(pair[k], dict) for k in ("a", "b")):
        return _delta_of_means(args, by, label)
    return MetricSpec(name=name, args=args, by=by, label=label)


def _delta_of_means(args: dict[str, Any], by: list[str] | None, label: str) -> MetricSpec:
    """``delta(m, language = en - mean(others))``: the derived metric ``m`` at ``en`` minus
    the mean of ``m`` over the other values (one vote per value), one bootstrap for both.
    With a mean on one side, a list on the other is averaged the same way (one vote per
    value), not pooled."""
    pair, inner = args["pair"], args["metric"]
    axis = pair["axis"]

    def side(v: Any) -> dict:
        leaf = {"metric": inner}
        if isinstance(v, dict):
            return {"reduce": "mean", "of": leaf, "over": axis, "where": {"in": axis, "values": list(v["mean"])}}
        if isinstance(v, list):
            return {"reduce": "mean", "of": leaf, "over": axis, "where": {"in": axis, "values": v}}
        return {"select": {axis: v}, "of": leaf}

    tree = {"op": "-", "left": side(pair["a"]), "right": side(pair["b"])}
    return MetricSpec(name="derived", args={"expr": tree}, by=by, label=label)


def _needs(info: MetricInfo, args: dict[str, Any]) -> set[str]:
    """A metric's needs, with those of the per-item metrics it aggregates or compares."""
    needs = set(info.needs)
    if any(p.scores and p.choices and args.get(p.name) not in (None, *p.choices) for p in info.params):
        needs = {"scores"}  # `mean(fluency)`: a score, not a chosen answer
    for p in info.params:
        ref = args.get(p.name) if p.kind == "metric" else None
        inner = METRICS.get(ref["name"] if isinstance(ref, dict) else ref) if ref is not None else None
        if inner is not None:
            # `mean(preference)` needs a score, where plain `mean` needs a chosen answer
            needs |= _needs(inner, ref.get("args") or {}) if isinstance(ref, dict) else inner.needs
    return needs


NATIVE = "native(country)"
"""The key under which ``values`` holds the native languages of the study's countries."""


def _value_text(x: Any) -> str | None:
    """The value a contrast side names (``en``, ``"pt-BR"``, ``5``), or None."""
    return x.parts[0].text if isinstance(x, ast.Ref) and x.is_name else str(x.value) if isinstance(x, (ast.Str, ast.Num)) else None


def _contrast_side(metric: str, axis: str, side: Any, values: dict[str, list], diags: Diagnostics) -> Any:
    """One side of ``axis = a - b``: a value (``en``), a list of values (``[fr, de]``, the
    items' answers under any of them), ``native(country)`` (each country's own language),
    or the mean of the values' metric values (``mean([fr, de])``, ``mean(others)``: every
    value not on the other side), which only ``delta`` compares.  None after an error."""
    known = [str(x) for x in values.get(axis, [])]

    def one(x: Any) -> str | None:
        text = _value_text(x)
        if text is None:
            each = isinstance(x, ast.Call) and x.func.text == "each"
            hint = "each(...) is a whole side of a contrast of a metric the study lists: language = en - each([fr, de])" if each else f"values: {', '.join(known)}"
            diags.error("E008", f"each side of `{axis} = a - b` is a value of `{axis}`, a list of them, native(country), mean(...) or each(...)", span_of(x), hint=hint)
            return None
        if known and text not in known:
            diags.error("E008", f"`{text}` is not a value of axis `{axis}` in this study", span_of(x), hint=did_you_mean(text, known, f"values: {', '.join(known)}"))
            return None
        return text

    def many(x: Any) -> list[str] | None:
        if isinstance(x, ast.ListExpr):
            got = [one(i) for i in x.items]
            return None if any(g is None for g in got) else list(dict.fromkeys(g for g in got if g is not None))
        if isinstance(x, ast.Call) and x.func.text == "native":
            if axis != "language" or NATIVE not in values:
                diags.error("E008", "native(country) is a side of a language contrast in a study with a country axis", span_of(x))
                return None
            if isinstance(values[NATIVE], str):
                diags.error("E008", values[NATIVE], span_of(x), hint="write the languages the contrast compares: language = en - [ar, fa]")
                return None
            return list(values[NATIVE])
        got = one(x)
        return None if got is None else got

    if isinstance(side, ast.Call) and side.func.text == "mean":
        if metric != "delta":
            diags.error("E008", f"`{metric}` pairs answers item by item; only `delta` compares a value with the mean of several", span_of(side), hint=f"write the values as a list, [{', '.join(known[:2])}], to pool their answers")
            return None
        if len(side.args) != 1 or isinstance(side.args[0], ast.KwArg):
            diags.error("E008", "mean(...) takes the values to average: mean([fr, de]), mean(others)", span_of(side))
            return None
        inner = side.args[0]
        if isinstance(inner, ast.Ref) and inner.is_name and inner.parts[0].text == "others" and "others" not in known:
            if not known:
                diags.error("E008", f"mean(others) needs the values of `{axis}`, which are numbers here: name them", span_of(inner), hint="mean([1, 5])")
                return None
            return {"mean": known, "others": True}
        got = many(inner)
        if got is None:
            return None
        return {"mean": got if isinstance(got, list) else [got]}
    return many(side)


def _argument(metric: str, p: Param, val: Any, axes: set[str], values: dict[str, list], scores: list[str], decls: Declarations, diags: Diagnostics, nested: Callable[[ast.Expr], MetricSpec | None] | None = None) -> Any:
    """One argument, typed by the parameter's kind; None after an error (reported)."""
    if p.kind == "contrast":
        kw = val
        if not isinstance(kw, ast.KwArg) or not (isinstance(kw.value, ast.BinOp) and kw.value.op == "-"):
            diags.error("E008", f"`{metric}` compares two conditions: write <axis> = a - b (e.g. mode = direct - reason)", span_of(val))
            return None
        axis = kw.name.text
        sides = []
        for side in (kw.value.left, kw.value.right):
            got = _contrast_side(metric, axis, side, values, diags)
            if got is None:
                return None
            sides.append(got)
        a, b = sides
        flat_a = set(a if isinstance(a, list) else a["mean"] if isinstance(a, dict) else [a])
        flat_b = set(b if isinstance(b, list) else b["mean"] if isinstance(b, dict) else [b])
        if isinstance(b, dict) and b.get("others"):
            b = {"mean": [v for v in b["mean"] if v not in flat_a]}
            flat_b = set(b["mean"])
            if not flat_b:
                diags.error("E008", f"`others` leaves no value of `{axis}` besides {', '.join(sorted(flat_a))}", span_of(kw.value.right))
                return None
        if flat_a & flat_b:
            same = ", ".join(sorted(flat_a & flat_b))
            diags.error("E008", f"`{metric}` compares `{same}` with itself", span_of(kw.value), hint=f"the two sides of `{axis} = a - b` share no value")
            return None
        return {"axis": axis, "a": a, "b": b}
    if p.kind == "axis":
        if isinstance(val, ast.Ref) and val.is_name and val.parts[0].text in axes:
            return val.parts[0].text
        name = val.parts[0].text if isinstance(val, ast.Ref) else "?"
        diags.error("E008", f"`{metric}`: `{name}` is not an axis of this study", span_of(val), hint=did_you_mean(name, axes, f"axes: {', '.join(sorted(axes))}"))
        return None
    if p.kind == "metric":
        item_metrics = per_item_metrics()
        if isinstance(val, ast.Call) and val.func.text in item_metrics and nested is not None:
            # `rank_stability(mean(fluency), ...)`: a per-item metric with its own arguments
            inner = nested(val)
            if inner is None:
                return None
            if inner.by is not None:
                diags.error("E008", f"`{metric}` groups its metric itself; `by` goes on `{metric}`", span_of(val))
                return None
            return {"name": inner.name, "args": inner.args} if inner.args else inner.name
        name = name_of(val)
        if name not in item_metrics:
            diags.error("E008", f"`{metric}` aggregates a per-item metric; `{name or '?'}` is not one", span_of(val), hint=did_you_mean(name or "", item_metrics, f"one of: {', '.join(sorted(item_metrics))}"))
            return None
        return name
    if p.kind == "number":
        if isinstance(val, ast.Num):
            return val.value
        diags.error("E008", f"`{metric}`: `{p.name}` is a number", span_of(val))
        return None
    if p.kind == "language":
        if not (isinstance(val, ast.Ref) and val.is_name):
            diags.error("E008", f"`{metric}`: `{p.name}` is a language code", span_of(val))
            return None
        if not check_code(val.parts[0], decls, diags):
            return None
        if val.parts[0].text not in values.get("language", []):
            diags.error("E008", f"pivot language `{val.parts[0].text}` is not one of the study's languages", span_of(val))
            return None
        return val.parts[0].text
    if p.kind in ("source", "field"):
        text = val.dotted if isinstance(val, ast.Ref) and val.index is None else None
        allowed = p.choices + (tuple(s for s in scores if s not in p.choices) if p.scores else ())
        if text is None or (allowed and text not in allowed):
            what = "a value it can compare" if p.kind == "source" else "a field it can read"
            diags.error("E008", f"`{metric}`: `{text or '?'}` is not {what}", span_of(val), hint=did_you_mean(text or "", allowed, f"one of: {', '.join(allowed)}" if allowed else None))
            return None
        return text
    raise TypeError(f"metric {metric!r}: parameter {p.name!r} has a kind the checker cannot read: {p.kind!r}")  # pragma: no cover
