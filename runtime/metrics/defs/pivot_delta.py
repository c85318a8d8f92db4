"""pivot_delta(metric, pivot): metric in L minus metric in the pivot, each over its own
items, one row per language L != pivot (the ``language`` column says which: the metric
folds ``language`` from its grouping and fills it).  A group without the pivot gives NaN
rows (n = 0)."""

from __future__ import annotations

from xlspec.lazy import lazy

from ..registry import Computation, MetricInfo, Param

np = lazy("numpy")


def _jobs(cols, spec, keys):
    from ..aggregate import Job, by_language, emitter

    pivot = str(spec.args.get("pivot", "en"))
    jobs = []
    for key, langs, S, C in by_language(cols, spec, keys):
        others = [x for x in langs if x != pivot]
        if not others:
            continue
        extra = [{"language": x} for x in others]
        if pivot not in langs:
            S = np.concatenate([S, np.zeros((len(S), 1))], axis=1)
            C = np.concatenate([C, np.zeros((len(C), 1))], axis=1)
            p = S.shape[1] - 1
        else:
            p = langs.index(pivot)
        idx = [langs.index(x) for x in others]
        n = [int(((C[:, i] > 0) | (C[:, p] > 0)).sum()) for i in idx]
        fn = lambda R, idx=idx, p=p: R[:, idx] - R[:, [p]]  # noqa: E731
        jobs.append(Job(spec.label, key, S, C, fn, emitter(spec.label, keys, key, n, extra)))
    return jobs


PIVOT_DELTA = MetricInfo(
    name="pivot_delta",
    summary="a metric in each language minus the same metric in a pivot language",
    params=(
        Param("metric", "metric", required=True, summary="the per-item metric compared"),
        Param("pivot", "language", default="en", summary="the language every other is compared with"),
    ),
    positional=("metric", "pivot"),
    compares=True,
    folds=lambda args: ("language",),
    fills=("language",),
    compute=Computation(jobs=_jobs),
).register()
