"""logit_leakage(threshold): among refused generated answers, the share whose top option
probability (``option_probs`` of the options/loglik row of the same unit, any sample:
probabilities are read once per item and cell) is >= threshold.  A group without refusals
(or without probabilities for them) has no value: NaN, n = 0."""

from __future__ import annotations

from xlspec.lazy import lazy

from ..registry import Computation, MetricInfo, Param

np = lazy("numpy")


def _scores(cols, args):
    threshold = float(args.get("threshold", 0.5))
    rows, rank = cols.eligible("parsed")
    # option probabilities are read once per item and cell (sample 0), whatever the
    # number of generated samples: match on every axis but the sample
    units = cols.unit_codes(("sample",))
    prows, prank = cols.eligible("probs")
    top = cols.maps.top("option_probs")
    by_unit = np.full(units.max() + 1 if len(units) else 0, np.nan)
    # the preferred kind last, so it overwrites
    order = np.argsort(-prank, kind="stable")
    pr = prows[order]
    ok = ~np.isnan(top[pr])
    by_unit[units[pr[ok]]] = top[pr[ok]]
    t = by_unit[units[rows]] if len(rows) else np.zeros(0)
    c = (cols.refused()[rows] & ~np.isnan(t)).astype(float)
    s = np.where(c > 0, t >= threshold, False).astype(float)
    return rows, s, c, rank


LOGIT_LEAKAGE = MetricInfo(
    name="logit_leakage",
    summary="among refused answers, the share whose top option probability >= threshold",
    params=(Param("threshold", "number", default=0.5, summary="the top option probability that counts as leaked"),),
    needs=frozenset({"parsed", "probs"}),
    positional=("threshold",),
    per_item=True,
    share=True,
    compute=Computation(scores=_scores),
).register()
