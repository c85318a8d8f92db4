"""consistency(over=axis): per unit (an item under one combination of every axis except
``axis``), 1 if the chosen answer is identical under every value of ``axis`` the unit has,
else 0; a refusal is an answer of its own ("refused" everywhere is consistent); units seen
under fewer than two values are left out.  Grouped by the group axes minus ``axis``."""

from __future__ import annotations

from xlspec.lazy import lazy

from ..registry import Computation, MetricInfo, Param

np = lazy("numpy")
pd = lazy("pandas")

REFUSED = "\x00refused"
"""The answer a refusal counts as."""


def _item_stats(cols, spec, keys, side):
    from ..aggregate import best_kind
    from ..columns import ITEM

    over = spec.args["over"]
    if over not in cols.df.columns:
        raise ValueError(f"consistency: no axis {over!r} in the results")
    rows, rank = cols.eligible("choice")
    if side is not None:
        keep = side[rows] >= 0
        rows, rank = rows[keep], rank[keep]
    choice = cols.choice()[rows]
    frame = cols.frame(keys + [ITEM, over], rows, side)
    frame["_answer"] = pd.factorize(np.where(pd.isna(choice).astype(bool), REFUSED, choice))[0]
    frame["_unit"] = cols.unit_codes((over,))[rows]
    frame["_rank"] = rank
    frame = best_kind(frame, keys + [ITEM])
    per_unit = frame.groupby("_unit", sort=False).agg(n_over=(over, "nunique"), n_ans=("_answer", "nunique"))
    first = frame.drop_duplicates("_unit").set_index("_unit")[keys + [ITEM]]
    per_unit = per_unit.join(first)
    per_unit["C"] = (per_unit["n_over"] >= 2).astype(float)
    per_unit["S"] = ((per_unit["n_ans"] == 1) & (per_unit["C"] > 0)).astype(float)
    return per_unit.groupby(keys + [ITEM], sort=True, as_index=False)[["S", "C"]].sum()


CONSISTENCY = MetricInfo(
    name="consistency",
    summary="share of items whose answer is the same across an axis",
    params=(Param("over", "axis", required=True, summary="the axis the answer should not depend on"),),
    needs=frozenset({"choice"}),
    positional=("over",),
    share=True,
    folds=lambda args: (args["over"],) if args.get("over") else (),
    compute=Computation(item_stats=_item_stats),
).register()
