"""accuracy: chosen answer == gold (labels compared after NFKC, ASCII digits, strip,
casefold; without ``gold`` any of ``targets``).  A refusal counts as wrong."""

from __future__ import annotations

from xlspec.lazy import lazy

from ..registry import Computation, MetricInfo

np = lazy("numpy")


def _scores(cols, args):
    from xlspec.normalize import normalize_label

    from ..columns import as_list, norm_labels

    rows, rank = cols.eligible("choice")
    choice = cols.choice()[rows]
    gold = norm_labels(cols.col("gold"))[rows]
    has_gold = np.array([g is not None for g in gold], dtype=bool)
    answered = np.array([c is not None for c in choice], dtype=bool)
    s = np.where(has_gold & answered, choice == gold, False).astype(float)
    c = has_gold.astype(float)
    targets = cols.col("targets")
    for j in np.flatnonzero(~has_gold):
        golds = {normalize_label(t) for t in as_list(targets[rows[j]])}
        if golds:
            c[j] = 1.0
            s[j] = float(choice[j] is not None and choice[j] in golds)
    return rows, s, c, rank


def correctness(cols) -> list[bool | None]:
    """Per row of ``cols``: whether its answer is right as :func:`_scores` counts it (None
    where the row does not count: no gold answer, or a kind that chooses no option).  The
    results table's ``correct`` column."""
    out: list[bool | None] = [None] * cols.N
    rows, s, c, _ = _scores(cols, {})
    for i, score, counted in zip(rows, s, c):
        if counted:
            out[int(i)] = bool(score)
    return out


ACCURACY = MetricInfo(
    name="accuracy",
    summary="share of answers equal to the gold answer",
    needs=frozenset({"choice", "targets"}),
    per_item=True,
    share=True,
    headline_rank=0,
    compute=Computation(scores=_scores),
).register()
