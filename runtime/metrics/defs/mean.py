"""mean(field): the mean of a numeric value per answer, e.g. a judge's 0-4 score read by a
parser (``answer = generate(parser = regex("Score: ([0-4])"))``, ``metrics =
[mean(parsed_answer)]``).

- ``parsed_answer`` (the default): the chosen answer read as a number, from the kinds that
  provide a chosen answer (the parsed answer of ``generate``, before ``options`` and
  ``loglik``, as for ``accuracy``).  Digits of any script count (``٣`` is 3, via
  ``normalize_label``'s ASCII digits) and decimals are allowed (``2.5``); a refusal or an
  answer that is not a number is left out, not counted as 0.
- ``output_tokens``, ``prompt_tokens``, ``latency_ms``: that column of every answer, of any
  kind; missing values are left out.
- a score a rubric parser of the study reads (``json_scores``, ``regex_scores``):
  ``mean(grammaticality)``, over the rubric's answers; an invalid verdict for the score is
  left out (``invalid_rate`` counts it).

Per item, the mean over its answers with a value (several samples, ...); a group's value is
the mean over every such answer; n = the items with a value.  A group none of whose answers
has a value: NaN, n = 0.
"""

from __future__ import annotations

from xlspec.lazy import lazy

from ..registry import Computation, MetricInfo, Param

np = lazy("numpy")

FIELDS = ("parsed_answer", "output_tokens", "prompt_tokens", "latency_ms")


def _scores(cols, args):
    field = args.get("field", "parsed_answer")
    if field == "parsed_answer":
        rows, rank = cols.eligible("choice")
        val = cols.choice_numbers()[rows]
    elif field not in FIELDS:  # a rubric score
        rows = cols.rubric_rows()
        rank = np.zeros(len(rows), dtype=int)
        val = cols.score(field)[rows]
    else:
        rows = np.arange(cols.N)
        rank = np.zeros(cols.N, dtype=int)
        val = cols.numeric(field)
    ok = ~np.isnan(val)
    return rows, np.where(ok, val, 0.0), ok.astype(float), rank


MEAN = MetricInfo(
    name="mean",
    summary="the mean of a numeric value per answer (a parsed score, tokens, latency)",
    params=(Param("field", "field", default="parsed_answer", summary="the value averaged: " + ", ".join(FIELDS) + ", or a score of the study's rubric parser", choices=FIELDS, scores=True),),
    needs=frozenset({"choice"}),
    positional=("field",),
    per_item=True,
    headline_rank=8,
    compute=Computation(scores=_scores),
).register()
