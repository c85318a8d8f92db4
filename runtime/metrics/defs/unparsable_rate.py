"""unparsable_rate: share of generated answers (answer kinds that can refuse) in which the
parser found no answer and the model did not decline either (``unparsable`` true: it wrote
something the parser does not read, such as a repeated prompt); see
:mod:`xlspec.refusals` for how a refusal is told apart.  Rows without the ``unparsable``
column (results written before it existed) have no value."""

from __future__ import annotations

from xlspec.lazy import lazy

from ..registry import Computation, MetricInfo

np = lazy("numpy")


def _scores(cols, args):
    rows, rank = cols.eligible("parsed")
    known = ~cols.isna("unparsable")[rows]
    value = np.zeros(len(rows))
    value[known] = cols.col("unparsable")[rows][known].astype(bool)
    return rows, value, known.astype(float), rank


UNPARSABLE_RATE = MetricInfo(
    name="unparsable_rate",
    summary="share of answers the parser could not read that are not refusals (the model wrote something else)",
    needs=frozenset({"parsed"}),
    per_item=True,
    share=True,
    compute=Computation(scores=_scores),
).register()
