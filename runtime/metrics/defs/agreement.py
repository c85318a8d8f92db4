"""agreement (NVAS): ``1 - |a - b| / (scale_max - scale_min)``.

``a = answer``: the chosen option label read as a number; ``a = expected``:
``sum_k k p(k)`` over ``option_probs`` (renormalised).  ``b = human.mean``:
``sum_k k h(k)`` over ``human`` (renormalised).  With ``pair = {axis, a, b}`` the two sides
are the model's answers under ``axis = a`` and ``axis = b`` on the same unit (item and every
other axis equal); ``b`` then defaults to the source of ``a``, and the pair's axis is
folded.  Labels that are not numbers give no value.  Not clipped.
"""

from __future__ import annotations

from xlspec.lazy import lazy

from ..registry import Computation, MetricInfo, Param
from ..spec import contrast_axis, parse_pair

np = lazy("numpy")

MODEL_SOURCES = ("answer", "expected")
SOURCES = (*MODEL_SOURCES, "human.mean")


def _model_number(cols, source: str):
    """(rows, value, rank) of the model side of agreement."""
    if source == "answer":
        rows, rank = cols.eligible("choice")
        val = cols.choice_numbers()[rows]
    elif source == "expected":
        rows, rank = cols.eligible("probs")
        val = cols.cached(("expected",), lambda: cols.maps.mean("option_probs"))[rows]
    else:
        raise ValueError(f"agreement: {source!r} is not a model source (answer | expected)")
    return rows, val, rank


def _scores(cols, args):
    a, b = args.get("a", "answer"), args.get("b", "human.mean")
    if a == "human.mean":
        a, b = b, a
    if b != "human.mean":
        raise ValueError("agreement between two model sources needs pair = axis = a - b")
    rows, val, rank = _model_number(cols, a)
    hmean = cols.cached(("human_mean",), lambda: cols.maps.mean("human"))[rows]
    nvas = 1.0 - np.abs(val - hmean) / cols.scale_range()[rows]
    ok = ~np.isnan(nvas)
    return rows, np.where(ok, nvas, 0.0), ok.astype(float), rank


def _pair_stats(cols, spec, keys, side):
    """Per unit: the model's values under ``a`` and ``b`` of the pair, compared."""
    from ..aggregate import best_kind
    from ..columns import ITEM, isin

    pair = parse_pair(spec.args["pair"])
    if pair.axis not in cols.df.columns:
        raise ValueError(f"agreement: no axis {pair.axis!r} in the results")
    a_src = spec.args.get("a", "answer")
    b_src = spec.args.get("b", "human.mean")
    if b_src == "human.mean":
        b_src = a_src
    in_a, in_b = isin(cols.col(pair.axis), pair.a), isin(cols.col(pair.axis), pair.b)
    units = cols.unit_codes((pair.axis,))
    scale = cols.scale_range()
    sides = []
    for on_side, src in ((in_a, a_src), (in_b, b_src)):
        rows, val, rank = _model_number(cols, src)
        sel = on_side[rows]
        if side is not None:
            sel &= side[rows] >= 0
        rows, val, rank = rows[sel], val[sel], rank[sel]
        f = cols.frame(keys + [ITEM], rows, side)
        f = f.assign(_unit=units[rows], _val=val, _rank=rank, _scale=scale[rows])
        f = best_kind(f, keys + [ITEM]).dropna(subset=["_val"])
        sides.append(f.groupby("_unit", sort=False).agg(_val=("_val", "mean"), _scale=("_scale", "mean")))
    both = sides[0].add_suffix("_a").join(sides[1].add_suffix("_b"), how="inner")
    both["S"] = 1.0 - (both["_val_a"] - both["_val_b"]).abs() / both["_scale_a"]
    both["C"] = (~both["S"].isna()).astype(float)
    both["S"] = both["S"].fillna(0.0)
    # every unit of the compared rows, so groups without a defined pair show as NaN, n = 0
    sel = in_a | in_b
    if side is not None:
        sel &= side >= 0
    rows = np.flatnonzero(sel)
    base = cols.frame(keys + [ITEM], rows, side).assign(_unit=units[rows]).drop_duplicates("_unit")
    base = base.set_index("_unit").join(both[["S", "C"]]).fillna({"S": 0.0, "C": 0.0})
    return base.groupby(keys + [ITEM], sort=True, as_index=False)[["S", "C"]].sum()


def _item_stats(cols, spec, keys, side):
    if spec.args.get("pair") is not None:
        return _pair_stats(cols, spec, keys, side)
    from ..aggregate import row_item_stats

    return row_item_stats(cols, spec, keys, side, _scores)


AGREEMENT = MetricInfo(
    name="agreement",
    summary="1 - |a - b| / (max - min) on the ordinal scale",
    params=(
        Param("a", "source", default="answer", summary="the model side: answer (the chosen label) or expected (from option_probs)", choices=SOURCES),
        Param("b", "source", default="human.mean", summary="the other side: human.mean, or with a pair the model side under b", choices=SOURCES),
        Param("pair", "contrast", summary="compare the model's answers under axis = a - b on the same unit"),
    ),
    needs=frozenset({"choice", "scale"}),
    positional=("a", "b"),
    per_item=True,
    share=True,
    headline_rank=2,
    folds=contrast_axis,
    compute=Computation(item_stats=_item_stats),
).register()
