"""From per-row scores to per-item sums to bootstrap jobs: what every metric shares.

How values are built
--------------------
Every per-item metric gives each eligible row (or, for ``consistency`` and paired
``agreement``, each *unit*: one item under one combination of every other axis) a score
``s`` and a weight ``c`` (1 where the score is defined, 0 where it is not).  These are summed
per item: ``S_i``, ``C_i``.  A group's value is ``sum(S_i) / sum(C_i)`` over its items, i.e.
the mean over every defined answer (with one answer per item, the mean over items).  Items
are ``item_id`` values; all rows of one item (several countries, samples, ... pooled into a
group) stay together when resampling.

- n = number of distinct items with a defined value behind the row.
- A group (language, ...) that has rows but no defined value: a row with NaN value and CIs,
  n = 0.  A group with no rows at all (a language with no items) gives no row.

Metrics that aggregate or compare a per-item metric (``parity_*``, ``pivot_delta``,
``delta``, ``rank_stability``) pivot its per-item sums into items by columns (languages,
the two sides of a contrast, models x sides) so one resample of the items serves every
column (:class:`Stats`, :func:`by_language`, :func:`contrast_stats`).
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .bootstrap import Job
from .columns import ITEM, SIDE, Columns, isin
from .spec import Pair, Spec, parse_pair

__all__ = ["Job", "SIDE", "best_kind", "item_stats", "row_item_stats", "Stats", "emitter", "metric_jobs", "plain_jobs", "sides", "contrast_stats", "paired_groups", "fixed_job", "by_language", "by_axis"]


def best_kind(frame: pd.DataFrame, group: list[str]) -> pd.DataFrame:
    """Keep, per group, the rows of the most preferred answer kind (lowest ``_rank``)."""
    if len(frame) == 0 or frame["_rank"].nunique() <= 1:
        return frame
    best = frame.groupby(group, sort=False)["_rank"].transform("min")
    return frame[frame["_rank"].to_numpy() == best.to_numpy()]


def item_stats(cols: Columns, spec: Spec, keys: list[str], side: np.ndarray | None = None) -> pd.DataFrame:
    """Per item sums S, C of a metric with the code columns ``keys`` (less the axes the
    metric folds) + item_id; ``side`` (0 = a, 1 = b, -1 = neither, per row) restricts to
    the rows of a contrast and provides the ``SIDE`` column."""
    keys = [k for k in keys if k not in spec.folds]
    comp = spec.info.compute
    if comp is not None and comp.item_stats is not None:
        return comp.item_stats(cols, spec, keys, side)
    if comp is None or comp.scores is None:
        raise ValueError(f"metric {spec.name!r} cannot be used per item")
    return row_item_stats(cols, spec, keys, side, comp.scores)


def row_item_stats(cols: Columns, spec: Spec, keys: list[str], side: np.ndarray | None, scores) -> pd.DataFrame:
    """:func:`item_stats` of a per-row metric: its ``scores(cols, args)`` (computed once per
    metric and arguments) summed per item, from the preferred answer kind of each item."""
    rows, s, c, rank = cols.cached(("rows", spec.key()), lambda: scores(cols, spec.args))
    if side is not None:
        keep = side[rows] >= 0
        rows, s, c, rank = rows[keep], s[keep], c[keep], rank[keep]
    frame = cols.frame(keys + [ITEM], rows, side).assign(S=s, C=c, _rank=rank)
    frame = best_kind(frame, keys + [ITEM])
    return frame.groupby(keys + [ITEM], sort=True, as_index=False)[["S", "C"]].sum()


class Stats:
    """Per-item sums (``item_stats``) as arrays, for cutting into groups."""

    def __init__(self, stats: pd.DataFrame):
        self.frame = stats
        self.items = pd.factorize(stats[ITEM].to_numpy(dtype=object))[0]
        self.S = stats["S"].to_numpy(float)
        self.C = stats["C"].to_numpy(float)

    def pivot(self, pos: np.ndarray, col_codes: np.ndarray, K: int):
        """(S (n, K), C (n, K)) of one group: its items by columns."""
        _, item_codes = np.unique(self.items[pos], return_inverse=True)
        item_codes = item_codes.ravel()
        n = int(item_codes.max()) + 1 if len(item_codes) else 0
        flat = item_codes * K + col_codes
        S = np.bincount(flat, weights=self.S[pos], minlength=n * K).reshape(n, K)
        C = np.bincount(flat, weights=self.C[pos], minlength=n * K).reshape(n, K)
        return S, C


def emitter(label: str | list[str], keys: list[str], key: tuple, n: int | list[int], extra: list[dict] | None = None):
    """The output rows of a job: one per statistic (``label`` and ``n`` per statistic where
    lists), with the group's ``keys`` and the ``extra`` columns a metric fills."""

    def emit(v, lo, hi):
        out = []
        for j in range(len(v)):
            labelj = label if isinstance(label, str) else label[j]
            nj = n if isinstance(n, (int, np.integer)) else n[j]
            row = {"metric": labelj, **dict(zip(keys, key))}
            if extra:
                row.update(extra[j])
            undefined = math.isnan(v[j])
            row.update(value=float(v[j]), ci_low=float(lo[j]), ci_high=float(hi[j]), n=0 if undefined else int(nj))
            out.append(row)
        return out

    return emit


def _first(R):
    return R[:, :1]


def plain_jobs(cols: Columns, spec: Spec, keys: list[str]) -> list[Job]:
    """One job per group of ``keys``: the ratio sum(S) / sum(C) over the group's items."""
    stats = item_stats(cols, spec, keys)
    S_all, C_all = stats["S"].to_numpy(float), stats["C"].to_numpy(float)
    jobs = []
    for key, pos in cols.split(stats, keys):
        S, C = S_all[pos], C_all[pos]
        ok = C > 0
        jobs.append(Job(spec.label, key, S[ok][:, None], C[ok][:, None], _first, emitter(spec.label, keys, key, int(ok.sum()))))
    return jobs


def metric_jobs(cols: Columns, spec: Spec, keys: list[str]) -> list[Job]:
    """The jobs of a metric grouped by ``keys`` (its grouping less the axes it folds)."""
    comp = spec.info.compute
    if comp is not None and comp.jobs is not None:
        return comp.jobs(cols, spec, keys)
    return plain_jobs(cols, spec, keys)


def sides(cols: Columns, pair: Pair) -> np.ndarray:
    """Per row: 0 under the contrast's a, 1 under b, -1 neither."""
    if pair.axis not in cols.df.columns:
        raise ValueError(f"no axis {pair.axis!r} in the results")
    vals = cols.col(pair.axis)
    in_a, in_b = isin(vals, pair.a), isin(vals, pair.b)
    return np.where(in_a, 0, np.where(in_b, 1, -1)).astype(np.int64)


def contrast_stats(cols: Columns, spec: Spec, keys: list[str]) -> tuple[pd.DataFrame, Stats]:
    """The per-item sums of ``spec.inner`` under the two sides of ``spec``'s ``pair``, with
    the code columns ``keys`` + ``SIDE``."""
    stats = item_stats(cols, spec.inner, keys + [SIDE], sides(cols, parse_pair(spec.args["pair"])))
    return stats, Stats(stats)


def paired_groups(cols: Columns, spec: Spec, keys: list[str]):
    """Per group of ``keys``: ``(key, S, C, both)``, the per-item sums of ``spec.inner``
    under the two sides of ``spec``'s contrast (items by sides a, b) and which items have a
    value under both."""
    stats, st = contrast_stats(cols, spec, keys)
    side = stats[SIDE].to_numpy()
    for key, pos in cols.split(stats, keys):
        S, C = st.pivot(pos, side[pos], 2)
        yield key, S, C, (C[:, 0] > 0) & (C[:, 1] > 0)


def fixed_job(spec: Spec, keys: list[str], key: tuple, n: int, value: float) -> Job:
    """A job of a value computed without a bootstrap (a test's p-value): no interval."""
    empty = np.zeros((0, 1))
    return Job(spec.label, key, empty, empty, None, emitter(spec.label, keys, key, n), fixed=np.array([value]))


def by_language(cols: Columns, spec: Spec, keys: list[str]):
    """Per group of ``keys``: ``(key, languages, S, C)``, the per-item sums of
    ``spec.inner`` by language (items by the group's languages, sorted)."""
    return by_axis(cols, spec, keys, "language")


def by_axis(cols: Columns, spec: Spec, keys: list[str], axis: str):
    """Per group of ``keys``: ``(key, values, S, C)``, the per-item sums of ``spec.inner``
    by the values of ``axis`` (items by the group's values, sorted)."""
    if axis not in cols.df.columns:
        raise ValueError(f"{spec.name}: no {axis} column in the results")
    stats = item_stats(cols, spec.inner, keys + [axis])
    st = Stats(stats)
    lang, names = stats[axis].to_numpy(), cols.values(axis)
    for key, pos in cols.split(stats, keys):
        pos = pos[lang[pos] >= 0]
        present = np.unique(lang[pos])
        langs = sorted(names[c] for c in present)
        local = np.full(len(names), -1, dtype=np.int64)
        local[[names.index(x) for x in langs]] = np.arange(len(langs))
        S, C = st.pivot(pos, local[lang[pos]], len(langs))
        yield key, langs, S, C
