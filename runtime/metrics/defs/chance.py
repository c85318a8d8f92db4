"""chance and above_chance: what a random guess scores, and whether a model does better.

- ``chance``: per answer that chooses an option, 1 / the number of the item's options
  (``n_options``; from the option probabilities where the column is missing), so a group's
  value is the accuracy a uniform random guess expects on its items.  ``accuracy - chance``
  is a derived metric with its interval.
- ``above_chance(metric = accuracy)``: the p-value of a one-sided test of "no better than
  chance".  Where each item of the group has one answer, k right answers of n against the
  group's chance level, an exact binomial test (``scipy.stats.binomtest``, alternative
  ``greater``; with items of different option counts the level is their mean).  Where
  items answer more than once in the group (pooled over languages, framings or samples),
  those answers are not independent trials: the test is then a one-sided t-test over
  items of each item's share right minus its chance level (``scipy.stats.ttest_1samp``;
  where every item is the same distance from chance, the sign test's ``0.5 ** n``).
  No interval."""

from __future__ import annotations

from xlspec.lazy import lazy

from ..registry import Computation, MetricInfo, Param

np = lazy("numpy")
pd = lazy("pandas")


def _option_counts(cols):
    """Per row, the item's number of options: ``n_options``, else the number of option
    probabilities, else what another row of the same item says (an item's generated answer
    beside its options answer)."""

    def make():
        out = cols.numeric("n_options").copy()
        probs = cols.col("option_probs")
        for i in np.flatnonzero(np.isnan(out)):
            p = probs[i]
            if p is not None and len(p) > 0:
                out[i] = len(p)
        if np.isnan(out).any() and not np.isnan(out).all():
            keys = [k for k in ("dataset", "item_id") if k in cols.df.columns]
            filled = pd.Series(out).groupby([cols.df[k].astype(str) for k in keys]).transform("max")
            out = np.where(np.isnan(out), filled.to_numpy(float), out)
        return out

    return cols.cached(("n_options",), make)


def _scores(cols, args):
    rows, rank = cols.eligible("choice")
    n = _option_counts(cols)[rows]
    ok = n > 0
    s = np.where(ok, 1.0 / np.where(ok, n, 1.0), 0.0)
    return rows, s, ok.astype(float), rank


def _above_jobs(cols, spec, keys):
    from scipy import stats as st

    from ..aggregate import fixed_job, item_stats

    chance_spec = _chance_spec()
    acc = item_stats(cols, spec.inner, keys)
    base = item_stats(cols, chance_spec, keys)
    merged = acc.merge(base, on=[*keys, "item_id"], suffixes=("", "_chance"))
    out = []
    for key, pos in cols.split(merged, keys):
        m = merged.iloc[pos]
        m = m[(m["C"] > 0) & (m["C_chance"] > 0)]
        p = _above_p(st, m["S"].to_numpy(float), m["C"].to_numpy(float), m["S_chance"].to_numpy(float) / m["C_chance"].to_numpy(float))
        out.append(fixed_job(spec, keys, key, len(m), p))
    return out


def _above_p(st, S, C, level) -> float:
    """One group's p-value: per item, ``S`` right answers of ``C``, at chance ``level``."""
    if len(S) == 0:
        return float("nan")
    if np.all(C == 1):
        k, n, p0 = int(round(S.sum())), len(S), float(level.mean())
        return float(st.binomtest(k, n, p0, alternative="greater").pvalue) if 0 < p0 < 1 else float("nan")
    d = S / C - level
    if len(d) < 2:
        return float("nan")
    if np.all(d == d[0]):
        # no spread for a t-test: the sign test's p (every item on the same side of chance)
        return float(0.5 ** len(d)) if d[0] > 0 else 1.0
    return float(st.ttest_1samp(d, 0.0, alternative="greater").pvalue)


def _chance_spec():
    from ..spec import make_spec

    return make_spec({"name": "chance"})


CHANCE = MetricInfo(
    name="chance",
    summary="the accuracy of a uniform random guess among the item's options",
    needs=frozenset({"choice"}),
    per_item=True,
    share=True,
    compute=Computation(scores=_scores),
).register()

ABOVE_CHANCE = MetricInfo(
    name="above_chance",
    summary="p-value of a one-sided binomial test of no better than chance",
    params=(Param("metric", "metric", default="accuracy", summary="the per-item metric (0 or 1 per answer) compared with chance"),),
    positional=("metric",),
    needs=frozenset({"choice", "targets"}),
    compute=Computation(jobs=_above_jobs),
).register()
