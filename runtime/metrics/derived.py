"""Derived metrics: statistics across cells, built from per-item metrics in one expression.

A derived metric is a tree (the plan's ``args["expr"]``, written by the checker from the
spec's ``metric NAME = ...`` or an inline expression).  Its nodes, as plan JSON:

``{"metric": M}``
    a per-item metric (``"accuracy"`` or ``{"name", "args"}``): its value per cell.
``{"number": x}``
    a constant.
``{"op": "+" | "-" | "*" | "/", "left": N, "right": N}``
    arithmetic; operands are aligned on the axes they share (a value without ``language``
    meets every language of the other).
``{"reduce": R, "of": N, "over": AXIS, "where": W}``
    ``R`` in mean, median, max, min, std, var (population, ddof = 0), sum, count, argmax,
    argmin over the values of ``AXIS`` that pass the filter ``W`` (or all); NaN values are
    left out.  ``argmax``/``argmin`` give the largest/smallest value and their rows name
    the value of ``AXIS`` where it is reached on the full data.
``{"select": {AXIS: VALUE, ...}, "of": N}``
    the value at one value of an axis (the axis is folded).
``{"corr": "pearson" | "spearman" | "kendall", "x": N, "y": N, "across": AXIS}``
    the correlation of two values across the values of ``AXIS`` (pairs with a NaN left
    out; NaN with fewer than three pairs, or a constant side).
``{"choose": "max" | "min", "of": N, "over": AXIS, "split": {"axis", "a", "b"}}``
    selection: the value of ``AXIS`` with the best value under ``split.a`` (a train
    partition), scored under ``split.b`` (the test partition); chosen again in every
    bootstrap replicate, so the interval includes the uncertainty of the choice.
``{"fit": "linear" | "power", "of": N, "across": AXIS, "x": {value: number}, "holdout": V}``
    least squares of the value against ``x`` over the values of ``AXIS`` (power: ``y = a
    x^b`` fitted on logs, points with x or y <= 0 left out).  Outputs ``a`` (intercept or
    scale), ``b`` (slope or exponent), ``r2`` (on the fitted scale) and, with a
    ``holdout`` value (left out of the fit), ``residual`` = observed - predicted there.

Filters ``W``: ``{"cmp": "==" | "!=", "axis", "value"}``, ``{"in": AXIS, "values": [...]}``,
``{"not": W}``, ``{"and": [W, W]}``, ``{"or": [W, W]}``.

One bootstrap for the chain
---------------------------
Every leaf of the tree is computed per item for every cell the tree touches, and the
cells are the columns of one :class:`~.bootstrap.Job` per group: a replicate resamples the
group's items once and the whole tree is recomputed from the resampled per-item sums, so a
gap, a correlation, a fit or a selection gets an interval that accounts for the pairing of
its cells (the same items answered in every language).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from xlspec.lazy import lazy

np = lazy("numpy")

REDUCERS = ("mean", "median", "max", "min", "std", "var", "sum", "count", "argmax", "argmin")
CORRELATIONS = ("pearson", "spearman", "kendall")
FITS = ("linear", "power")
FIT_OUTPUTS = ("a", "b", "r2", "residual")
STAT = "\x00stat"
"""The pseudo-axis of a node with several outputs (a fit's ``a``, ``b``, ...)."""


# ---- what a tree names (no data needed) ----------------------------------------------------


def leaf_key(ref) -> str:
    return json.dumps(ref, sort_keys=True)


def leaves(node: dict) -> list:
    """The per-item metrics of a tree, once each, in order of first use."""
    out: dict[str, object] = {}

    def walk(n):
        if "metric" in n:
            out.setdefault(leaf_key(n["metric"]), n["metric"])
        for child in _children(n):
            walk(child)

    walk(node)
    return list(out.values())


def _children(n: dict) -> list[dict]:
    if "op" in n:
        return [n["left"], n["right"]]
    if "corr" in n:
        return [n["x"], n["y"]]
    if any(k in n for k in ("reduce", "select", "choose", "fit")):
        return [n["of"]]
    return []


def inner_axes(node: dict) -> tuple[str, ...]:
    """Every axis the tree names: the axes its leaves are computed along within a group."""
    out: list[str] = []

    def add(a):
        if a not in out:
            out.append(a)

    def walk(n):
        if "reduce" in n or "choose" in n:
            add(n["over"])
            if n.get("where"):
                for a in _filter_axes(n["where"]):
                    add(a)
            if "choose" in n:
                add(n["split"]["axis"])
        if "select" in n:
            for a in n["select"]:
                add(a)
        if "corr" in n or "fit" in n:
            add(n["across"])
        for child in _children(n):
            walk(child)

    walk(node)
    return tuple(out)


def _filter_axes(w: dict) -> list[str]:
    if "cmp" in w:
        return [w["axis"]]
    if "in" in w:
        return [w["in"]]
    if "not" in w:
        return _filter_axes(w["not"])
    return [a for part in w.get("and", w.get("or", [])) for a in _filter_axes(part)]


def result_axes(node: dict, leaf_axes) -> tuple[str, ...]:
    """The axes a node's value still varies along (``leaf_axes(ref)``: a leaf's).  Raises
    ``ValueError`` where a node reduces, selects or correlates along an axis its operand
    does not vary along (``max(consistency(over = language), over = language)``)."""
    if "metric" in node:
        return tuple(leaf_axes(node["metric"]))
    if "number" in node:
        return ()
    if "op" in node:
        left = result_axes(node["left"], leaf_axes)
        return left + tuple(a for a in result_axes(node["right"], leaf_axes) if a not in left)
    inner = result_axes(node["of"] if "of" in node else node["x"], leaf_axes)
    if "corr" in node:
        y = result_axes(node["y"], leaf_axes)
        for side in (inner, y):
            if node["across"] not in side:
                raise ValueError(_flat(node["corr"], node["across"], node["x"] if side is inner else node["y"]))
        inner = inner + tuple(a for a in y if a not in inner)
    used = {
        "select": lambda: tuple(node.get("select", {})),
        "reduce": lambda: (node["over"],),
        "choose": lambda: (node["over"], node["split"]["axis"]),
        "corr": lambda: (node["across"],),
        "fit": lambda: (node["across"],),
    }
    kind = next(k for k in used if k in node)
    axes = used[kind]()
    for a in axes:
        if a not in inner:
            raise ValueError(_flat(kind if kind != "reduce" else node["reduce"], a, node["of"] if "of" in node else node["x"]))
    return tuple(a for a in inner if a not in axes)


def _flat(what: str, axis: str, operand: dict) -> str:
    ref = operand.get("metric")
    name = (ref["name"] if isinstance(ref, dict) else ref) if ref is not None else "its operand"
    return f"{what} along `{axis}`: {name} does not vary along `{axis}` here (it folds it, or the expression already did)"


def named_axes(node: dict) -> tuple[str, ...]:
    """Axes whose rows are named by the value chosen on the full data (argmax, choose)."""
    out: list[str] = []

    def walk(n):
        if n.get("reduce") in ("argmax", "argmin") or "choose" in n:
            out.append(n["over"])
        for child in _children(n):
            walk(child)

    walk(node)
    return tuple(dict.fromkeys(out))


def expression_text(node: dict) -> str:
    """One spelling of a tree, whatever the source's layout: the label of an inline
    expression, and the ``expr`` of a derived metric's ``params`` in metrics.parquet."""
    text = _text(node)
    return text[1:-1] if "op" in node else text


def _text(node: dict) -> str:
    """A node's text; an operation in parentheses."""
    from .registry import arg_text

    if "metric" in node:
        return arg_text(node["metric"]) if isinstance(node["metric"], dict) else str(node["metric"])
    if "number" in node:
        return arg_text(node["number"])
    if "op" in node:
        return f"({_text(node['left'])} {node['op']} {_text(node['right'])})"
    if "reduce" in node:
        where = f", where={_filter_text(node['where'])}" if node.get("where") else ""
        return f"{node['reduce']}({_text(node['of'])}, over={node['over']}{where})"
    if "select" in node:
        return f"at({_text(node['of'])}, {', '.join(f'{k}={v}' for k, v in node['select'].items())})"
    if "corr" in node:
        return f"{node['corr']}({_text(node['x'])}, {_text(node['y'])}, across={node['across']})"
    if "choose" in node:
        s = node["split"]
        return f"choose({_text(node['of'])}, over={node['over']}, {s['axis']}={s['a']}-{s['b']}, pick={node['choose']})"
    if "fit" in node:
        hold = f", holdout={node['holdout']}" if node.get("holdout") is not None else ""
        return f"fit({_text(node['of'])}, across={node['across']}, form={node['fit']}{hold})"
    raise ValueError(f"not a derived-metric node: {node!r}")  # pragma: no cover


def _filter_text(w: dict) -> str:
    if "cmp" in w:
        return f"{w['axis']}{w['cmp']}{w['value']}"
    if "in" in w:
        return f"{w['in']} in [{', '.join(w['values'])}]"
    if "not" in w:
        return f"not {_filter_text(w['not'])}"
    op = "and" if "and" in w else "or"
    return "(" + f" {op} ".join(_filter_text(p) for p in w[op]) + ")"


# ---- values of a node within one group -------------------------------------------------------


@dataclass
class Table:
    """A node's value in one group: ``data[:, j]`` (one row per replicate) at ``coords[j]``
    (one value per axis of ``axes``).  ``named``: per column, the axis values an argmax or
    a selection chose (on the data it was evaluated on)."""

    axes: tuple[str, ...]
    coords: list[tuple]
    data: "np.ndarray"
    named: list[dict] = field(default_factory=list)
    const: float | None = None
    """A constant (``data`` is None): it meets every column of the other operand."""

    def __post_init__(self):
        if not self.named:
            self.named = [{} for _ in self.coords]

    def col(self, axis: str, j: int):
        return self.coords[j][self.axes.index(axis)]


def evaluate(node: dict, leaf_table) -> Table:
    """The value of ``node``; ``leaf_table(ref) -> Table`` gives a leaf's rates."""
    if "metric" in node:
        return leaf_table(node["metric"])
    if "number" in node:
        return Table((), [()], None, const=float(node["number"]))
    if "op" in node:
        return _binary(node["op"], evaluate(node["left"], leaf_table), evaluate(node["right"], leaf_table))
    if "select" in node:
        t = evaluate(node["of"], leaf_table)
        want = node["select"]
        missing = [a for a in want if a not in t.axes]
        if missing:
            raise ValueError(f"cannot select {missing[0]} = {want[missing[0]]}: the value does not vary along {missing[0]}")
        keep = [j for j in range(len(t.coords)) if all(str(t.col(a, j)) == str(v) for a, v in want.items())]
        axes = tuple(a for a in t.axes if a not in want)
        return Table(axes, [tuple(t.coords[j][t.axes.index(a)] for a in axes) for j in keep], t.data[:, keep], [t.named[j] for j in keep])
    if "reduce" in node:
        return _reduce(node, evaluate(node["of"], leaf_table))
    if "choose" in node:
        return _choose(node, evaluate(node["of"], leaf_table))
    if "corr" in node:
        return _corr(node, evaluate(node["x"], leaf_table), evaluate(node["y"], leaf_table))
    if "fit" in node:
        return _fit(node, evaluate(node["of"], leaf_table))
    raise ValueError(f"not a derived-metric node: {node!r}")


def _binary(op: str, left: Table, right: Table) -> Table:
    if left.data is None and right.data is None:
        raise ValueError("an expression of numbers alone is not a metric")
    R = next(t.data.shape[0] for t in (left, right) if t.data is not None)
    shared = [a for a in left.axes if a in right.axes]
    axes = left.axes + tuple(a for a in right.axes if a not in left.axes)
    pairs = []
    for i, lc in enumerate(left.coords):
        for j, rc in enumerate(right.coords):
            if all(lc[left.axes.index(a)] == rc[right.axes.index(a)] for a in shared):
                extra = tuple(rc[right.axes.index(a)] for a in right.axes if a not in left.axes)
                pairs.append((i, j, lc + extra))
    I = np.array([p[0] for p in pairs], dtype=np.int64)
    J = np.array([p[1] for p in pairs], dtype=np.int64)
    a = np.full((R, len(pairs)), left.const) if left.data is None else left.data[:, I]
    b = np.full((R, len(pairs)), right.const) if right.data is None else right.data[:, J]
    if op == "+":
        data = a + b
    elif op == "-":
        data = a - b
    elif op == "*":
        data = a * b
    elif op == "/":
        data = np.where(b != 0, a / np.where(b != 0, b, 1.0), np.nan)
    else:  # pragma: no cover - the checker writes only these
        raise ValueError(f"unknown operator {op!r}")
    named = [{**left.named[i], **right.named[j]} for i, j, _ in pairs]
    return Table(axes, [p[2] for p in pairs], data, named)


def _passes(w: dict | None, values: dict) -> bool:
    if not w:
        return True
    if "cmp" in w:
        same = str(values.get(w["axis"])) == str(w["value"])
        return same if w["cmp"] == "==" else not same
    if "in" in w:
        return str(values.get(w["in"])) in {str(v) for v in w["values"]}
    if "not" in w:
        return not _passes(w["not"], values)
    if "and" in w:
        return all(_passes(p, values) for p in w["and"])
    return any(_passes(p, values) for p in w["or"])


def _groups(t: Table, drop: set[str], keep_cols: list[int]):
    """Columns of ``t`` (among ``keep_cols``) grouped by their coordinates less ``drop``."""
    axes = tuple(a for a in t.axes if a not in drop)
    groups: dict[tuple, list[int]] = {}
    for j in keep_cols:
        groups.setdefault(tuple(t.col(a, j) for a in axes), []).append(j)
    return axes, groups


def nan_reduce(how: str, X):
    """``how`` over the columns of ``X`` (R, k), NaN left out; NaN where a row has no value
    (and for std / var, where it has fewer than one).  No numpy warning is raised."""
    ok = ~np.isnan(X)
    cnt = ok.sum(1)
    out = np.full(X.shape[0], np.nan)
    has = cnt > 0
    if how == "count":
        return cnt.astype(float)
    if not has.any():
        return out
    Xh, okh = X[has], ok[has]
    if how in ("sum", "mean", "std", "var"):
        s = np.where(okh, Xh, 0.0).sum(1)
        if how == "sum":
            out[has] = s
            return out
        mean = s / cnt[has]
        if how == "mean":
            out[has] = mean
            return out
        var = np.where(okh, (Xh - mean[:, None]) ** 2, 0.0).sum(1) / cnt[has]
        out[has] = var if how == "var" else np.sqrt(var)
        return out
    if how in ("max", "argmax"):
        out[has] = np.where(okh, Xh, -np.inf).max(1)
    elif how in ("min", "argmin"):
        out[has] = np.where(okh, Xh, np.inf).min(1)
    elif how == "median":
        out[has] = np.nanmedian(Xh, axis=1)  # every row here has a value: no warning
    else:  # pragma: no cover
        raise ValueError(f"unknown reduction {how!r}")
    return out


def _reduce(node: dict, t: Table) -> Table:
    over, how = node["over"], node["reduce"]
    if over not in t.axes:
        raise ValueError(f"{how} over {over}: the value does not vary along {over}")
    keep = [j for j in range(len(t.coords)) if _passes(node.get("where"), dict(zip(t.axes, t.coords[j])))]
    axes, groups = _groups(t, {over}, keep)
    coords, cols, named = [], [], []
    for coord, js in groups.items():
        X = t.data[:, js]
        cols.append(nan_reduce(how, X))
        coords.append(coord)
        name = {}
        if how in ("argmax", "argmin") and X.shape[0] >= 1:
            # the value of the axis where the first row (the full data) reaches the extreme
            row = X[0]
            if not np.all(np.isnan(row)):
                pick = js[int(np.nanargmax(row) if how == "argmax" else np.nanargmin(row))]
                name = {**t.named[pick], over: t.col(over, pick)}
        named.append(name)
    data = np.stack(cols, axis=1) if cols else np.zeros((t.data.shape[0], 0))
    return Table(axes, coords, data, named)


def _choose(node: dict, t: Table) -> Table:
    over, split = node["over"], node["split"]
    axis = split["axis"]
    for a in (over, axis):
        if a not in t.axes:
            raise ValueError(f"the value does not vary along {a}")
    train = [j for j in range(len(t.coords)) if str(t.col(axis, j)) == str(split["a"])]
    test = {tuple(t.coords[j][k] for k, a in enumerate(t.axes) if a != axis): j for j in range(len(t.coords)) if str(t.col(axis, j)) == str(split["b"])}
    axes, groups = _groups(t, {over, axis}, train)
    R = t.data.shape[0]
    coords, cols, named = [], [], []
    for coord, js in groups.items():
        # the test column of every train column (the same coordinates less the split axis)
        pos = [test.get(tuple(t.coords[j][k] for k, a in enumerate(t.axes) if a != axis)) for j in js]
        X = t.data[:, js]
        Y = np.stack([t.data[:, p] if p is not None else np.full(R, np.nan) for p in pos], axis=1)
        Xm = np.where(np.isnan(X), -np.inf if node["choose"] == "max" else np.inf, X)
        pick = Xm.argmax(1) if node["choose"] == "max" else Xm.argmin(1)
        value = Y[np.arange(R), pick]
        value[np.all(np.isnan(X), axis=1)] = np.nan
        cols.append(value)
        coords.append(coord)
        named.append({over: t.col(over, js[int(pick[0])])} if not np.all(np.isnan(X[0])) else {})
    data = np.stack(cols, axis=1) if cols else np.zeros((R, 0))
    return Table(axes, coords, data, named)


def _pair_up(node: dict, x: Table, y: Table):
    """Per group of the other axes: the (R, k) values of x and y at the same ``across``."""
    across = node["across"]
    for t in (x, y):
        if across not in t.axes:
            raise ValueError(f"{node.get('corr') or node.get('fit')} across {across}: the value does not vary along {across}")
    shared = [a for a in x.axes if a in y.axes]
    axes = tuple(a for a in (x.axes + tuple(a for a in y.axes if a not in x.axes)) if a != across)
    groups: dict[tuple, list[tuple[int, int]]] = {}
    for i, xc in enumerate(x.coords):
        for j, yc in enumerate(y.coords):
            if all(xc[x.axes.index(a)] == yc[y.axes.index(a)] for a in shared):
                full = dict(zip(x.axes, xc)) | dict(zip(y.axes, yc))
                groups.setdefault(tuple(full[a] for a in axes), []).append((i, j))
    return axes, groups


def pearson_rows(X, Y):
    """Pearson's r per row of (R, k) arrays, pairs with a NaN left out; NaN with fewer than
    three pairs or a constant side."""
    ok = ~(np.isnan(X) | np.isnan(Y))
    n = ok.sum(1)
    Xz, Yz = np.where(ok, X, 0.0), np.where(ok, Y, 0.0)
    safe_n = np.where(n > 0, n, 1)
    mx, my = Xz.sum(1) / safe_n, Yz.sum(1) / safe_n
    dx, dy = np.where(ok, X - mx[:, None], 0.0), np.where(ok, Y - my[:, None], 0.0)
    sxy, sxx, syy = (dx * dy).sum(1), (dx * dx).sum(1), (dy * dy).sum(1)
    den = np.sqrt(sxx * syy)
    good = (n >= 3) & (den > 1e-15)
    return np.where(good, sxy / np.where(good, den, 1.0), np.nan)


def _corr_rows(how: str, X, Y):
    from scipy import stats  # a maintained implementation of each coefficient

    if how == "pearson":
        return pearson_rows(X, Y)
    ok = ~(np.isnan(X) | np.isnan(Y))
    if how == "spearman":
        # ranks among the pairs present (average ranks for ties), then Pearson on the ranks
        # (rows with every pair present in one vectorised call; the others row by row)
        Xr, Yr = np.full(X.shape, np.nan), np.full(Y.shape, np.nan)
        complete = ok.all(1)
        if complete.any():
            Xr[complete] = stats.rankdata(X[complete], axis=1)
            Yr[complete] = stats.rankdata(Y[complete], axis=1)
        for r in np.flatnonzero(~complete):
            m = ok[r]
            Xr[r, m], Yr[r, m] = stats.rankdata(X[r, m]), stats.rankdata(Y[r, m])
        return pearson_rows(Xr, Yr)
    return kendall_rows(X, Y)


def kendall_rows(X, Y, minimum: int = 3):
    """Kendall's tau-b per row of (R, k) arrays, pairs with a NaN left out; NaN with fewer
    than ``minimum`` pairs or a constant side.  The vectorised tau-b of ``rank_stability``
    (equal to ``scipy.stats.kendalltau``, which the tests check): scipy's per-row call
    costs seconds per thousand bootstrap replicates."""
    from .defs.rank_stability import kendall_tau_b

    tau, _ = kendall_tau_b(X, Y)
    n = (~(np.isnan(X) | np.isnan(Y))).sum(1)
    return np.where(n >= minimum, tau, np.nan)


def _corr(node: dict, x: Table, y: Table) -> Table:
    axes, groups = _pair_up(node, x, y)
    R = max(x.data.shape[0], y.data.shape[0])
    coords, cols = [], []
    for coord, ij in groups.items():
        X = x.data[:, [i for i, _ in ij]]
        Y = y.data[:, [j for _, j in ij]]
        cols.append(_corr_rows(node["corr"], X, Y))
        coords.append(coord)
    data = np.stack(cols, axis=1) if cols else np.zeros((R, 0))
    return Table(axes, coords, data)


def fit_rows(form: str, x, Y, x_hold=None, y_hold=None):
    """Least squares of each row of ``Y`` (R, k) on ``x`` (k,): (a, b, r2, residual) arrays.
    linear: y = a + b x; power: y = a x^b, fitted as log y = log a + b log x over the
    points with x > 0 and y > 0.  NaN points are left out; NaN with fewer than two."""
    x = np.asarray(x, dtype=float)
    Y = np.asarray(Y, dtype=float)
    if form == "power":
        with np.errstate(divide="ignore", invalid="ignore"):
            ok = ~np.isnan(Y) & (Y > 0) & (x > 0)[None, :]
            u = np.log(np.where(x > 0, x, 1.0))[None, :].repeat(len(Y), 0)
            v = np.log(np.where(ok, Y, 1.0))
    else:
        ok = ~np.isnan(Y)
        u = np.broadcast_to(x[None, :], Y.shape)
        v = np.where(ok, Y, 0.0)
    n = ok.sum(1)
    safe = np.where(n > 0, n, 1)
    mu = np.where(ok, u, 0.0).sum(1) / safe
    mv = np.where(ok, v, 0.0).sum(1) / safe
    du, dv = np.where(ok, u - mu[:, None], 0.0), np.where(ok, v - mv[:, None], 0.0)
    suu, suv, svv = (du * du).sum(1), (du * dv).sum(1), (dv * dv).sum(1)
    good = (n >= 2) & (suu > 0)
    b = np.where(good, suv / np.where(good, suu, 1.0), np.nan)
    a0 = mv - b * mu
    resid_ss = np.where(ok, (v - (a0[:, None] + b[:, None] * u)) ** 2, 0.0).sum(1)
    r2 = np.where(good & (svv > 0), 1 - resid_ss / np.where(svv > 0, svv, 1.0), np.nan)
    a = np.exp(a0) if form == "power" else a0
    residual = np.full(len(Y), np.nan)
    if x_hold is not None and y_hold is not None:
        pred = a * float(x_hold) ** b if form == "power" else a + b * float(x_hold)
        residual = y_hold - pred
    return a, b, r2, residual


def _fit(node: dict, t: Table) -> Table:
    across = node["across"]
    if across not in t.axes:
        raise ValueError(f"fit across {across}: the value does not vary along {across}")
    xs = {str(k): float(v) for k, v in node["x"].items()}
    hold = node.get("holdout")
    axes, groups = _groups(t, {across}, list(range(len(t.coords))))
    R = t.data.shape[0]
    coords, cols = [], []
    for coord, js in groups.items():
        fit_js = [j for j in js if str(t.col(across, j)) in xs and str(t.col(across, j)) != str(hold)]
        x = np.array([xs[str(t.col(across, j))] for j in fit_js])
        hold_j = next((j for j in js if hold is not None and str(t.col(across, j)) == str(hold)), None)
        a, b, r2, res = fit_rows(
            node["fit"],
            x,
            t.data[:, fit_js],
            xs.get(str(hold)) if hold_j is not None else None,
            t.data[:, hold_j] if hold_j is not None else None,
        )
        outs = {"a": a, "b": b, "r2": r2, "residual": res}
        for name in FIT_OUTPUTS:
            if name == "residual" and hold is None:
                continue
            cols.append(outs[name])
            coords.append(coord + (name,))
    data = np.stack(cols, axis=1) if cols else np.zeros((R, 0))
    return Table(axes + (STAT,), coords, data)
