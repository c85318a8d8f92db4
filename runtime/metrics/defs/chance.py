"""chance and above_chance: what a random guess scores, and whether a model does better.

- ``chance``: per answer that chooses an option, 1 / the number of the item's options
  (``n_options``; from the option probabilities where the column is missing), so a group's
  value is the accuracy a uniform random guess expects on its items.  ``accuracy - chance``
  is a derived metric with its interval.
- ``above_chance(metric = accuracy)``: the p-value of a one-sided exact binomial test of
  "no better than chance": k right answers out of n (per item, summed over its samples)
  against the group's chance level (``scipy.stats.binomtest``, alternative ``greater``).
  With items of different option counts the level is their mean (a slightly conservative
  test when the counts differ).  No interval."""

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

    from ..aggregate import Job, emitter, item_stats

    chance_spec = _chance_spec()
    acc = item_stats(cols, spec.inner, keys)
    base = item_stats(cols, chance_spec, keys)
    merged = acc.merge(base, on=[*keys, "item_id"], suffixes=("", "_chance"))
    out = []
    for key, pos in cols.split(merged, keys):
        m = merged.iloc[pos]
        m = m[(m["C"] > 0) & (m["C_chance"] > 0)]
        k, n = int(round(m["S"].sum())), int(round(m["C"].sum()))
        level = float(m["S_chance"].sum() / m["C_chance"].sum()) if len(m) else float("nan")
        p = float(st.binomtest(k, n, level, alternative="greater").pvalue) if n > 0 and 0 < level < 1 else float("nan")
        out.append(Job(spec.label, key, np.zeros((0, 1)), np.zeros((0, 1)), None, emitter(spec.label, keys, key, len(m)), fixed=np.array([p])))
    return out


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
