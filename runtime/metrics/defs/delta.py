"""delta(metric, pair): metric under ``a`` minus under ``b`` over the items defined under
both (paired by item); the pair axis is dropped from the grouping.  Where the two
conditions share no item at all (subsets or partitions split the items), each side is taken
over its own items, and the bootstrap resamples both sides' items together.  ``a``/``b``
may be a value or a list of values of the axis."""

from __future__ import annotations

from ..registry import Computation, MetricInfo, Param
from ..spec import contrast_axis


def _delta_fn(R):
    return (R[:, 0] - R[:, 1])[:, None]


def _jobs(cols, spec, keys):
    from ..aggregate import Job, emitter, paired_groups

    jobs = []
    for key, S, C, ok in paired_groups(cols, spec, keys):
        if not ok.any():
            ok = (C[:, 0] > 0) | (C[:, 1] > 0)  # disjoint conditions: unpaired
        jobs.append(Job(spec.label, key, S[ok], C[ok], _delta_fn, emitter(spec.label, keys, key, int(ok.sum()))))
    return jobs


DELTA = MetricInfo(
    name="delta",
    summary="a metric under condition a minus condition b, paired by item",
    params=(
        Param("metric", "metric", required=True, summary="the per-item metric compared"),
        Param("pair", "contrast", required=True, summary="the two conditions, axis = a - b"),
    ),
    positional=("metric",),
    compares=True,
    folds=contrast_axis,
    compute=Computation(jobs=_jobs),
).register()
