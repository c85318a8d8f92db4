"""kappa and percent_agreement between two conditions' answers, item by item.

``kappa(<axis> = a - b)``: Cohen's kappa between the chosen answers under ``a`` and under
``b``.  The units are those of ``consistency``: an item under one combination of every other
axis, each with its answer under ``a`` and under ``b`` (a refusal is an answer of its own, and so is an
answer the parser could not read; a unit without both is left out).  Over a group's units,

    p_o = share of units with the same answer,
    p_e = sum over answers k of P_a(k) P_b(k)  (each side's share of units answering k),
    kappa = (p_o - p_e) / (1 - p_e),

NaN where ``p_e = 1`` (both sides give one and the same answer throughout).
``percent_agreement`` is ``p_o``.  Every term is a share of units, so the bootstrap
resamples items (with all their units) and recomputes kappa from the resampled shares.  With
several samples or answer kinds per unit, the first sample of the preferred kind is read."""

from __future__ import annotations

from xlspec.lazy import lazy

from ..registry import Computation, MetricInfo, Param
from ..spec import contrast_axis

np = lazy("numpy")
pd = lazy("pandas")

REFUSED = "\x00refused"
NO_ANSWER = "\x00none"


def _units(cols, spec, keys):
    """One row per unit with both answers: keys + item_id, ``_a``, ``_b``."""
    from ..aggregate import best_kind, sides
    from ..columns import ITEM
    from ..spec import parse_pair

    pair = parse_pair(spec.args["pair"])
    side = sides(cols, pair)
    rows, rank = cols.eligible("choice")
    keep = side[rows] >= 0
    rows, rank = rows[keep], rank[keep]
    choice = cols.choice()[rows]
    frame = cols.frame(keys + [ITEM], rows)
    frame["_unit"] = cols.unit_codes((pair.axis,))[rows]
    frame["_side"] = side[rows]
    none = pd.isna(choice).astype(bool)
    frame["_answer"] = np.where(none & cols.refused()[rows], REFUSED, np.where(none, NO_ANSWER, choice.astype(object)))
    frame["_rank"] = rank
    if "sample" in cols.df.columns:
        frame["_sample"] = cols.numeric("sample")[rows]
        frame = frame.sort_values("_sample", kind="stable")
    frame = best_kind(frame, ["_unit"])
    first = frame.drop_duplicates(["_unit", "_side"])
    a = first[first["_side"] == 0].set_index("_unit")
    b = first[first["_side"] == 1].set_index("_unit")["_answer"].rename("_b")
    both = a.join(b, how="inner")
    return both.rename(columns={"_answer": "_a"})[[*keys, ITEM, "_a", "_b"]]


def _make_jobs(which: str):
    def jobs(cols, spec, keys):
        from ..aggregate import Job, emitter
        from ..columns import ITEM

        units = _units(cols, spec, keys)
        out = []
        for key, pos in cols.split(units, keys):
            u = units.iloc[pos]
            cats, codes = np.unique(np.concatenate([u["_a"].to_numpy(dtype=object).astype(str), u["_b"].to_numpy(dtype=object).astype(str)]), return_inverse=True)
            K, n_units = len(cats), len(u)
            ca, cb = codes[:n_units], codes[n_units:]
            items, item_codes = np.unique(u[ITEM].to_numpy(dtype=object).astype(str), return_inverse=True)
            n = len(items)
            S = np.zeros((n, 1 + 2 * K))
            np.add.at(S, (item_codes, 0), (ca == cb).astype(float))
            np.add.at(S, (item_codes, 1 + ca), 1.0)
            np.add.at(S, (item_codes, 1 + K + cb), 1.0)
            per_item = np.bincount(item_codes, minlength=n).astype(float)
            C = np.repeat(per_item[:, None], 1 + 2 * K, axis=1)

            def fn(R, K=K):
                po = R[:, 0]
                if which == "percent":
                    return po[:, None]
                pe = (R[:, 1 : 1 + K] * R[:, 1 + K :]).sum(1)
                ok = pe < 1 - 1e-12
                return np.where(ok, (po - pe) / np.where(ok, 1 - pe, 1.0), np.nan)[:, None]

            out.append(Job(spec.label, key, S, C, fn, emitter(spec.label, keys, key, n)))
        return out

    return jobs


_PAIR = Param("pair", "contrast", required=True, summary="the two conditions, axis = a - b")

KAPPA = MetricInfo(
    name="kappa",
    summary="Cohen's kappa between the answers under two conditions, unit by unit",
    params=(_PAIR,),
    needs=frozenset({"choice"}),
    compares=True,
    folds=contrast_axis,
    compute=Computation(jobs=_make_jobs("kappa")),
).register()

PERCENT_AGREEMENT = MetricInfo(
    name="percent_agreement",
    summary="share of units answered the same under two conditions",
    params=(_PAIR,),
    needs=frozenset({"choice"}),
    share=True,
    compares=True,
    folds=contrast_axis,
    compute=Computation(jobs=_make_jobs("percent")),
).register()
