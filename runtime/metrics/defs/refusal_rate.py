"""refusal_rate: share of generated answers (answer kinds that can refuse) with ``refused``
true: the parser found no answer and the response declines (a refusal phrase of its
language or of English, :mod:`xlspec.refusals`); an answer the parser cannot read that is
not a refusal is ``unparsable_rate``'s.  A missing ``refused`` (results of another tool) is
read as "no parsed answer" (:func:`~xlspec.runtime.metrics.columns.refused`)."""

from __future__ import annotations

from xlspec.lazy import lazy

from ..registry import Computation, MetricInfo

np = lazy("numpy")


def _scores(cols, args):
    rows, rank = cols.eligible("parsed")
    return rows, cols.refused()[rows].astype(float), np.ones(len(rows)), rank


REFUSAL_RATE = MetricInfo(
    name="refusal_rate",
    summary="share of answers that decline to answer (no answer found, and a refusal phrase)",
    needs=frozenset({"parsed"}),
    per_item=True,
    share=True,
    compute=Computation(scores=_scores),
).register()
