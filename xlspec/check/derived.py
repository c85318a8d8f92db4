"""Derived metrics: ``metric NAME = EXPR`` declarations and the expressions a study's
``metrics = [...]`` writes inline, typed against the study and lowered to the expression
tree the runtime evaluates (``xlspec/runtime/metrics/derived.py`` documents the nodes).

What an expression may say:

- a per-item metric (``accuracy``, ``mean(fluency)``, ``consistency(over = framing)``), its
  value per cell; a declared ``metric`` by name;
- numbers and arithmetic: ``accuracy - chance``, ``100 * accuracy``, ``a / b``;
- an aggregate over an axis, with an optional filter on that axis's values:
  ``mean(accuracy, over = language, where = language != en)`` (also median, max, min, std,
  var, sum, count, argmax, argmin);
- the value at one value of an axis: ``at(accuracy, language = en)``;
- a correlation across an axis, of two values or of one metric under two conditions:
  ``spearman(accuracy, dataset = mmlu - gmmlu, across = model)``;
- a selection: ``choose(accuracy, over = language, partition = train - test)`` (best on
  train, scored on test);
- a fit: ``fit(accuracy, against = train_languages, across = model, form = power)``.

``is_derived(expr, decls)`` tells the metrics checker which items are expressions;
``resolve_derived(...)`` returns the tree, or None after reporting what is wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import ast
from ..diagnostics import Diagnostics
from ..runtime.metrics.derived import CORRELATIONS, FITS, REDUCERS
from ..runtime.metrics.registry import METRICS
from .context import did_you_mean, span_of
from .declarations import Declarations, referenced_names

ARITHMETIC = ("+", "-", "*", "/")
FUNCTIONS = {
    **{r: f"{r} of a metric over an axis's values: {r}(accuracy, over = language, where = language != en)" for r in REDUCERS},
    "at": "the value at one value of an axis: at(accuracy, language = en)",
    **{c: f"{c} correlation across an axis: {c}(x, y, across = model) or {c}(accuracy, dataset = a - b, across = model)" for c in CORRELATIONS},
    "choose": "the best value of an axis on one partition, scored on another: choose(accuracy, over = language, partition = train - test)",
    "fit": "a linear or power-law fit against a number per axis value: fit(accuracy, against = params, across = model, form = power)",
}
"""The functions of a derived metric, with their one-line forms (the reference's words)."""


def is_leaf_metric(name: str) -> bool:
    """A metric a derived expression can read per cell: one scored per item."""
    info = METRICS.get(name)
    return info is not None and info.listed and (info.per_item or (info.compute is not None and info.compute.item_stats is not None))


def is_derived(e: ast.Expr, decls: Declarations) -> bool:
    """Whether a metrics-list item is a derived expression rather than a catalog metric."""
    if isinstance(e, ast.Ref) and e.is_name:
        return e.parts[0].text in decls["metric"]
    if isinstance(e, ast.BinOp):
        return e.op in ARITHMETIC
    if isinstance(e, ast.Num):
        return True
    if isinstance(e, ast.Call):
        name = e.func.text
        if name in REDUCERS and any(k.name.text == "over" for k in e.keywords):
            return True
        return name in FUNCTIONS and name not in REDUCERS
    return False


class DerivedChecker:
    """Lowers one study's derived expressions.  ``leaf(expr)`` resolves a per-item metric
    the way the metrics checker does (needs included) and returns its plan reference."""

    def __init__(self, axes: set[str], values: dict[str, list], decls: Declarations, diags: Diagnostics, leaf: Callable[[ast.Expr], Any], attributes: dict[str, dict[str, Any]] | None = None, numeric: dict[str, list] | None = None):
        self.axes, self.values, self.decls, self.diags, self.leaf = axes, values, decls, diags, leaf
        self.attributes = attributes or {}
        """model name -> its declared attributes (``attributes = { params: 8e9 }``)."""
        self.numeric = numeric or {}
        """integer axis -> its values (``shots``: a fit's x)."""
        self.stack: list[str] = []

    # ---- errors
    def _err(self, message: str, node: Any, hint: str | None = None) -> None:
        self.diags.error("E008", message, span_of(node), hint=hint)

    def build(self, e: ast.Expr) -> dict | None:
        if isinstance(e, ast.Num):
            return {"number": e.value}
        if isinstance(e, ast.BinOp):
            if e.op not in ARITHMETIC:
                self._err(f"`{e.op}` does not combine metrics: use + - * /", e)
                return None
            left, right = self.build(e.left), self.build(e.right)
            if left is None or right is None:
                return None
            if "number" in left and "number" in right:
                self._err("an expression of numbers alone is not a metric", e)
                return None
            return {"op": e.op, "left": left, "right": right}
        if isinstance(e, ast.Ref) and e.is_name:
            name = e.parts[0].text
            decl = self.decls["metric"].get(name)
            if decl is not None:
                return self._declared(name, decl, e)
            return self._leaf(e)
        if isinstance(e, ast.Call):
            name = e.func.text
            if name in REDUCERS and any(k.name.text == "over" for k in e.keywords):
                return self._reduce(e)
            if name == "at":
                return self._at(e)
            if name in CORRELATIONS:
                return self._corr(e)
            if name == "choose":
                return self._choose(e)
            if name == "fit":
                return self._fit(e)
            return self._leaf(e)
        self._err("not a metric expression: a metric, a number, arithmetic (+ - * /) or a function of metrics", e)
        return None

    def _declared(self, name: str, decl: ast.Decl, at: Any) -> dict | None:
        if name in self.stack:
            cycle = " -> ".join([*self.stack[self.stack.index(name) :], name])
            self._err(f"metric `{name}` is defined in terms of itself: {cycle}", at)
            return None
        if decl.value is None:
            return None  # reported where it is declared
        self.stack.append(name)
        try:
            return self.build(decl.value)
        finally:
            self.stack.pop()

    def _leaf(self, e: ast.Expr) -> dict | None:
        name = e.parts[0].text if isinstance(e, ast.Ref) else e.func.text if isinstance(e, ast.Call) else None
        if name is not None and name not in METRICS.names() and name not in FUNCTIONS:
            known = sorted({*(n for n, _ in METRICS.items() if is_leaf_metric(n)), *self.decls["metric"], *FUNCTIONS})
            self._err(f"unknown metric `{name}`", e.func if isinstance(e, ast.Call) else e, hint=did_you_mean(name, known, f"a derived metric reads per-item metrics ({', '.join(n for n, _ in METRICS.items() if is_leaf_metric(n))}), declared metrics and functions ({', '.join(FUNCTIONS)})"))
            return None
        if name is not None and not is_leaf_metric(name):
            self._err(
                f"`{name}` is not scored per item, so an expression cannot read it per cell",
                e,
                hint="write the statistic from a per-item metric: e.g. max(accuracy, over = language) - min(accuracy, over = language) for parity_gap(accuracy)",
            )
            return None
        ref = self.leaf(e)
        return None if ref is None else {"metric": ref}

    def _axis(self, v: Any, what: str) -> str | None:
        if isinstance(v, ast.Ref) and v.is_name and v.parts[0].text in self.axes:
            return v.parts[0].text
        name = v.parts[0].text if isinstance(v, ast.Ref) else "?"
        self._err(f"{what}: `{name}` is not an axis of this study", v, hint=did_you_mean(name, self.axes, f"axes: {', '.join(sorted(self.axes))}"))
        return None

    def _value(self, axis: str, v: Any) -> str | None:
        text = v.parts[0].text if isinstance(v, ast.Ref) and v.is_name else str(int(v.value) if v.is_int else v.value) if isinstance(v, ast.Num) else v.value if isinstance(v, ast.Str) else None
        known = [str(x) for x in self.values.get(axis, [])]
        if text is None:
            self._err(f"expected a value of `{axis}`", v)
            return None
        if known and text not in known:
            self._err(f"`{text}` is not a value of axis `{axis}` in this study", v, hint=did_you_mean(text, known, f"values: {', '.join(known)}"))
            return None
        return text

    def _args(self, e: ast.Call, allowed: tuple[str, ...], positional: int, contrast: bool = False) -> tuple[list, dict, list] | None:
        """(positional, keywords, axis contrasts ``axis = a - b`` / ``axis = value``)."""
        pos = e.positional
        if len(pos) != positional:
            self._err(f"`{e.func.text}` takes {positional} metric(s) before its keyword arguments, got {len(pos)}", e.func, hint=FUNCTIONS[e.func.text])
            return None
        kws, pairs = {}, []
        for kw in e.keywords:
            key = kw.name.text
            if key in allowed:
                if key in kws:
                    self._err(f"`{key}` is given twice", kw)
                    return None
                kws[key] = kw.value
            elif contrast and key in self.axes:
                pairs.append(kw)
            else:
                self._err(f"`{e.func.text}` has no argument `{key}`", kw.name, hint=did_you_mean(key, list(allowed), f"{FUNCTIONS[e.func.text]}"))
                return None
        return pos, kws, pairs

    def _reduce(self, e: ast.Call) -> dict | None:
        got = self._args(e, ("over", "where"), 1)
        if got is None:
            return None
        (of,), kws, _ = got
        over = self._axis(kws["over"], f"`{e.func.text}` over")
        inner = self.build(of)
        where = self._filter(kws["where"]) if "where" in kws else None
        if over is None or inner is None or ("where" in kws and where is None):
            return None
        return {"reduce": e.func.text, "of": inner, "over": over, "where": where}

    def _filter(self, w: Any) -> dict | None:
        if isinstance(w, ast.Not):
            inner = self._filter(w.operand)
            return None if inner is None else {"not": inner}
        if isinstance(w, ast.BinOp) and w.op in ("and", "or"):
            left, right = self._filter(w.left), self._filter(w.right)
            return None if left is None or right is None else {w.op: [left, right]}
        if isinstance(w, ast.BinOp) and w.op in ("==", "!=", "in", "not in"):
            axis = self._axis(w.left, "`where`")
            if axis is None:
                return None
            if w.op in ("==", "!="):
                value = self._value(axis, w.right)
                return None if value is None else {"cmp": w.op, "axis": axis, "value": value}
            items = w.right.items if isinstance(w.right, ast.ListExpr) else [w.right]
            vals = [self._value(axis, i) for i in items]
            if any(v is None for v in vals):
                return None
            f = {"in": axis, "values": vals}
            return f if w.op == "in" else {"not": f}
        self._err("a `where` filter compares an axis with its values: language != en, language in [fr, de], joined by and/or/not", w)
        return None

    def _at(self, e: ast.Call) -> dict | None:
        got = self._args(e, (), 1, contrast=True)
        if got is None:
            return None
        (of,), _, pairs = got
        if not pairs:
            self._err("`at` names the value it reads: at(accuracy, language = en)", e.func)
            return None
        select = {}
        for kw in pairs:
            value = self._value(kw.name.text, kw.value)
            if value is None:
                return None
            select[kw.name.text] = value
        inner = self.build(of)
        return None if inner is None else {"select": select, "of": inner}

    def _contrast(self, kw: ast.KwArg) -> tuple[str, str, str] | None:
        axis = kw.name.text
        if not (isinstance(kw.value, ast.BinOp) and kw.value.op == "-"):
            self._err(f"write the two conditions as {axis} = a - b", kw.value)
            return None
        a, b = self._value(axis, kw.value.left), self._value(axis, kw.value.right)
        if a is None or b is None:
            return None
        if a == b:
            self._err(f"`{a}` is compared with itself", kw.value)
            return None
        return axis, a, b

    def _corr(self, e: ast.Call) -> dict | None:
        n = len(e.positional)
        got = self._args(e, ("across",), n if n in (1, 2) else 2, contrast=n == 1)
        if got is None:
            return None
        pos, kws, pairs = got
        if "across" not in kws:
            self._err(f"`{e.func.text}` needs `across = <axis>`: the axis whose values are the points", e.func, hint=FUNCTIONS[e.func.text])
            return None
        across = self._axis(kws["across"], f"`{e.func.text}` across")
        if across is None:
            return None
        if n == 2:
            x, y = self.build(pos[0]), self.build(pos[1])
        else:
            if len(pairs) != 1:
                self._err(f"`{e.func.text}` of one metric compares it under two conditions: {e.func.text}(accuracy, dataset = a - b, across = model)", e.func)
                return None
            c = self._contrast(pairs[0])
            if c is None:
                return None
            inner = self.build(pos[0])
            if inner is None:
                return None
            x, y = {"select": {c[0]: c[1]}, "of": inner}, {"select": {c[0]: c[2]}, "of": inner}
        if x is None or y is None:
            return None
        return {"corr": e.func.text, "x": x, "y": y, "across": across}

    def _choose(self, e: ast.Call) -> dict | None:
        got = self._args(e, ("over", "pick"), 1, contrast=True)
        if got is None:
            return None
        (of,), kws, pairs = got
        if "over" not in kws or len(pairs) != 1:
            self._err("`choose` needs the axis to choose along and the two partitions: choose(accuracy, over = language, partition = train - test)", e.func)
            return None
        over = self._axis(kws["over"], "`choose` over")
        c = self._contrast(pairs[0])
        if over is not None and c is not None and over == c[0]:
            self._err(f"`choose` picks a value of `{over}` on one value of another axis and scores it on another; it cannot split along `{over}` itself", pairs[0])
            return None
        pick = "max"
        if "pick" in kws:
            p = kws["pick"]
            pick = p.parts[0].text if isinstance(p, ast.Ref) and p.is_name else ""
            if pick not in ("max", "min"):
                self._err("`pick` is max or min", p)
                return None
        inner = self.build(of)
        if over is None or c is None or inner is None:
            return None
        return {"choose": pick, "of": inner, "over": over, "split": {"axis": c[0], "a": c[1], "b": c[2]}}

    def _fit(self, e: ast.Call) -> dict | None:
        got = self._args(e, ("against", "across", "form", "holdout"), 1)
        if got is None:
            return None
        (of,), kws, _ = got
        for need in ("against", "across"):
            if need not in kws:
                self._err(f"`fit` needs `{need}`", e.func, hint=FUNCTIONS["fit"])
                return None
        across = self._axis(kws["across"], "`fit` across")
        if across is None:
            return None
        form = "linear"
        if "form" in kws:
            f = kws["form"]
            form = f.parts[0].text if isinstance(f, ast.Ref) and f.is_name else ""
            if form not in FITS:
                self._err(f"`form` is one of: {', '.join(FITS)}", f)
                return None
        against = kws["against"].parts[0].text if isinstance(kws["against"], ast.Ref) and kws["against"].is_name else None
        x = self._x_values(against, across, kws["against"])
        if x is None:
            return None
        hold = self._value(across, kws["holdout"]) if "holdout" in kws else None
        if "holdout" in kws and hold is None:
            return None
        inner = self.build(of)
        if inner is None:
            return None
        return {"fit": form, "of": inner, "across": across, "x": x, "holdout": hold}

    def _x_values(self, against: str | None, across: str, node: Any) -> dict | None:
        """The number each value of ``across`` is fitted at: the axis's own values (``shots``)
        or a declared model attribute."""
        values = [str(v) for v in self.values.get(across, self.numeric.get(across, []))]
        if against == across:
            if not values:
                self._err(f"the values of `{across}` are not known when the spec compiles, so they cannot be fitted against; fit across `model` against a model attribute, or across a numeric axis (shots)", node)
                return None
            try:
                return {v: float(v) for v in values}
            except ValueError:
                self._err(f"the values of `{across}` are not numbers; fit against a declared attribute", node)
                return None
        if across == "model" and against is not None:
            missing = [m for m in values if not isinstance(self.attributes.get(m, {}).get(against), (int, float))]
            if not missing:
                return {m: float(self.attributes[m][against]) for m in values}
            known = sorted({k for a in self.attributes.values() for k in a})
            self._err(
                f"{'model' if len(missing) == 1 else 'models'} {', '.join(f'`{m}`' for m in missing)} {'declares' if len(missing) == 1 else 'declare'} no number `{against}`",
                node,
                hint=f"give each model `attributes = {{ {against}: ... }}`" + (f"; declared attributes: {', '.join(known)}" if known else ""),
            )
            return None
        self._err(f"`against` is `{across}` itself (when its values are numbers) or, across models, a model attribute", node)
        return None


def warn_unused_metrics(decls: Declarations, diags: Diagnostics) -> None:
    """W001 for a declared metric of the root file that no study and no other metric names
    (an imported file's metrics are there for whichever spec imports them)."""
    root = decls.root.tree.path
    mine = {name: d for name, d in decls["metric"].items() if d.name.span is not None and d.name.span.file == root}
    if not mine:
        return
    used = referenced_names(decls, ("study", "metric"))
    for name, d in mine.items():
        if name not in used:
            diags.warning("W001", f"metric `{name}` is never used", d.name.span, hint="list it in a study's metrics, or remove it")


def check_metric_names(decls: Declarations, diags: Diagnostics) -> None:
    """A declared metric may not take the name of a catalog metric or of a function of
    expressions: ``metric accuracy = ...`` would hide the catalog's ``accuracy``."""
    from ..runtime.metrics.registry import listed_metrics

    taken = set(listed_metrics()) | set(FUNCTIONS) | {"native", "others"}
    for name, d in decls["metric"].items():
        if name in taken:
            what = "a metric of the catalog" if name in METRICS.names() else "a function of metric expressions" if name in FUNCTIONS else "a word of contrasts"
            diags.error("E004", f"`{name}` is {what}; a declared metric needs a name of its own", d.name.span, hint=f"for example: metric my_{name} = ...")


def derived_axes(tree: dict) -> tuple[str, ...]:
    """The axes a derived metric's rows still name; ``ValueError`` where the tree reduces
    along an axis its operand does not vary along."""
    from ..runtime.metrics import derived
    from ..runtime.metrics.defs.derived import leaf_axes

    inner = derived.inner_axes(tree)
    return derived.result_axes(tree, lambda ref: leaf_axes(ref, inner))
