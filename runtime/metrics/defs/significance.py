"""Tests of "no difference", paired by item, each reporting its p-value (no interval).

- ``permutation_test(metric, <axis> = a - b)``: per item, the metric's mean under ``a`` and
  under ``b`` (items defined under both); the statistic is the mean of the differences and
  the null distribution swaps each item's two values at random (``scipy.stats.
  permutation_test``, ``permutation_type = "samples"``, 1,999 resamples, exact when the
  items allow fewer than that), two-sided.
- ``sign_test(metric, <axis> = a - b)``: items where ``a`` scores higher against items
  where ``b`` does (ties left out), an exact two-sided binomial test at 1/2
  (``scipy.stats.binomtest``).
- ``axis_effect(metric, over = language)``: "no effect of the axis": per item, its values
  under every value of the axis (items defined under all of them); the statistic is the
  spread of the values' means (max - min, the parity gap) and the null distribution
  shuffles each item's values across the axis values, one-sided (a spread at least as
  large).  The parity gap itself is biased upward (the largest of several noisy means
  minus the smallest), so its bootstrap interval almost never covers 0; this test is what
  says whether the languages differ at all.

The generator of each test is seeded from the metric's label and group (not from the
bootstrap's ``seed``): the same results give the same p-values.  Permutations are drawn in
batches, so memory stays bounded however many items and languages there are.  NaN with fewer than two items (or, for the sign
test, no item that differs)."""

from __future__ import annotations

from xlspec.lazy import lazy

from ..registry import Computation, MetricInfo, Param
from ..spec import contrast_axis

np = lazy("numpy")

N_RESAMPLES = 1999
"""Permutations per test: p-values down to 1/2000, resolving "p < 0.001" at a fifth of the
cost of 9,999 (the summary runs one test per model)."""


def _rng(seed_label: str, key: tuple):
    from ..bootstrap import _derive_seed

    return np.random.default_rng(_derive_seed(0, seed_label, key))


def _batch(n: int, k: int) -> int:
    """Permutations per batch: scipy holds (batch, n, k) indices at once; about 32 MB of
    them (the p-value does not depend on the batch)."""
    return max(1, min(N_RESAMPLES, 2_000_000 // max(1, n * k)))


def _mean_diff(a, b, axis):
    return np.mean(a - b, axis=axis)


def _spread(*samples, axis):
    means = np.stack([np.mean(s, axis=axis) for s in samples])
    return means.max(0) - means.min(0)


def paired_permutation_p(a, b, rng) -> float:
    from scipy import stats

    if len(a) < 2 or np.all(a == b):
        return float("nan") if len(a) < 2 else 1.0
    res = stats.permutation_test((a, b), _mean_diff, permutation_type="samples", n_resamples=N_RESAMPLES, vectorized=True, rng=rng, batch=_batch(len(a), 2))
    return float(res.pvalue)


def spread_permutation_p(X, rng) -> float:
    """X: items by conditions, complete."""
    from scipy import stats

    if X.shape[0] < 2 or X.shape[1] < 2:
        return float("nan")
    if np.all(X == X[:, :1]):
        return 1.0
    res = stats.permutation_test(tuple(X.T), _spread, permutation_type="samples", n_resamples=N_RESAMPLES, vectorized=True, rng=rng, alternative="greater", batch=_batch(*X.shape))
    return float(res.pvalue)


def sign_test_p(a, b) -> float:
    from scipy import stats

    wins, losses = int(np.sum(a > b)), int(np.sum(a < b))
    if wins + losses == 0:
        return float("nan")
    return float(stats.binomtest(wins, wins + losses, 0.5).pvalue)


def _paired_jobs(test: str):
    def jobs(cols, spec, keys):
        from ..aggregate import fixed_job, paired_groups

        out = []
        for key, S, C, ok in paired_groups(cols, spec, keys):
            a, b = S[ok, 0] / C[ok, 0], S[ok, 1] / C[ok, 1]
            p = paired_permutation_p(a, b, _rng(spec.label, key)) if test == "permutation" else sign_test_p(a, b)
            out.append(fixed_job(spec, keys, key, int(ok.sum()), p))
        return out

    return jobs


def _effect_jobs(cols, spec, keys):
    from ..aggregate import by_axis, fixed_job

    out = []
    for key, _values, S, C in by_axis(cols, spec, keys, spec.args["over"]):
        complete = (C > 0).all(1)
        X = S[complete] / C[complete]
        out.append(fixed_job(spec, keys, key, int(complete.sum()), spread_permutation_p(X, _rng(spec.label, key))))
    return out


_METRIC = Param("metric", "metric", required=True, summary="the per-item metric compared")
_PAIR = Param("pair", "contrast", required=True, summary="the two conditions, axis = a - b")

PERMUTATION_TEST = MetricInfo(
    name="permutation_test",
    summary="p-value of a paired permutation test of no difference between two conditions",
    params=(_METRIC, _PAIR),
    positional=("metric",),
    compares=True,
    folds=contrast_axis,
    compute=Computation(jobs=_paired_jobs("permutation")),
).register()

SIGN_TEST = MetricInfo(
    name="sign_test",
    summary="p-value of a sign test: items better under a against items better under b",
    params=(_METRIC, _PAIR),
    positional=("metric",),
    compares=True,
    folds=contrast_axis,
    compute=Computation(jobs=_paired_jobs("sign")),
).register()

AXIS_EFFECT = MetricInfo(
    name="axis_effect",
    summary="p-value of a permutation test of no effect of an axis (languages by default) on a per-item metric",
    params=(_METRIC, Param("over", "axis", default="language", summary="the axis whose effect is tested")),
    positional=("metric",),
    compares=True,
    folds=lambda args: (args.get("over") or "language",),
    compute=Computation(jobs=_effect_jobs),
).register()
