"""refusal_rate: share of generated answers (answer kinds that can refuse) with ``refused``
true; a missing ``refused`` is read as "no parsed answer"
(:func:`~xlspec.runtime.metrics.columns.refused`)."""

from __future__ import annotations

from xlspec.lazy import lazy

from ..registry import Computation, MetricInfo

np = lazy("numpy")


def _scores(cols, args):
    rows, rank = cols.eligible("parsed")
    return rows, cols.refused()[rows].astype(float), np.ones(len(rows)), rank


REFUSAL_RATE = MetricInfo(
    name="refusal_rate",
    summary="share of answers the parser could not read (no valid option, no match, no field)",
    needs=frozenset({"parsed"}),
    per_item=True,
    share=True,
    compute=Computation(scores=_scores),
).register()
