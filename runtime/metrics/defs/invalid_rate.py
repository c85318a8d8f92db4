"""invalid_rate: share of a rubric parser's verdicts that are invalid (``json_scores``,
``regex_scores``): a score missing, not a number or out of its range, or nothing to read at
all.  ``invalid_rate(fluency)`` counts one score's invalid values.  An invalid score is left
out of ``mean``; this is where it is counted."""

from __future__ import annotations

from xlspec.lazy import lazy

from ..registry import Computation, MetricInfo, Param

np = lazy("numpy")


def _scores(cols, args):
    rows = cols.rubric_rows()
    bad = cols.invalid_scores(args.get("field"))[rows].astype(float)
    return rows, bad, np.ones(len(rows)), np.zeros(len(rows), dtype=int)


INVALID_RATE = MetricInfo(
    name="invalid_rate",
    summary="share of a rubric's verdicts with an invalid score (missing, not a number, out of range)",
    params=(Param("field", "field", summary="one score of the rubric (default: any of them)", scores=True),),
    needs=frozenset({"scores"}),
    positional=("field",),
    per_item=True,
    share=True,
    compute=Computation(scores=_scores),
).register()
