"""position_bias: of a pairwise judge's verdicts that pick a candidate (not a tie, not
unreadable), the share that pick the one shown first.  0.5 is no bias; a judge that always
answers A scores 1.  (The preference itself is ``mean(preference)``: 1 for ``a``, 0 for
``b``, ties and unreadable verdicts as the answer says.)"""

from __future__ import annotations

from xlspec.lazy import lazy

from ..registry import Computation, MetricInfo

np = lazy("numpy")


def _scores(cols, args):
    order, decided = cols.col("candidate_order"), cols.col("verdict")
    rows = np.array([i for i in range(cols.N) if decided[i] in ("a", "b") and order[i] in ("ab", "ba")], dtype=np.int64)
    first = np.array([(decided[i] == "a") == (order[i] == "ab") for i in rows], dtype=float)
    return rows, first, np.ones(len(rows)), np.zeros(len(rows), dtype=int)


POSITION_BIAS = MetricInfo(
    name="position_bias",
    summary="share of a pairwise judge's picks that go to the candidate shown first (0.5: no bias)",
    needs=frozenset({"pairwise"}),
    per_item=True,
    share=True,
    compute=Computation(scores=_scores),
).register()
