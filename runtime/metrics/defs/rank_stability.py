"""rank_stability(metric, pair, rank): the values of each model (or of each value of the
``rank`` axis: ``rank = generator`` ranks the generators a judge stage scored) under ``a``
and ``b`` (grouping minus the ranked axis and the pair axis); ``.tau`` is Kendall's tau-b (ties handled as in tau-b, as
``scipy.stats.kendalltau`` does by default; NaN when either ranking is all ties or fewer
than two models have both values) and ``.inversions`` the number of discordant model pairs
(a pair tied on either side is not an inversion)."""

from __future__ import annotations

from xlspec.lazy import lazy

from ..registry import Computation, MetricInfo, Param
from ..spec import contrast_axis

np = lazy("numpy")


def kendall_tau_b(x, y):
    """Kendall tau-b and the number of discordant pairs, vectorised over leading axes.

    ``x``, ``y``: (..., m) values of m models under two conditions.  A pair with a NaN on
    either side is left out.  tau-b = (C - D) / sqrt((n0 - Tx) (n0 - Ty)) with n0 the pairs,
    Tx / Ty the pairs tied in x / in y (as ``scipy.stats.kendalltau``'s default); NaN when
    the denominator is 0.  Tied pairs are not inversions."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    i, j = np.triu_indices(x.shape[-1], k=1)
    dx = np.sign(x[..., i] - x[..., j])
    dy = np.sign(y[..., i] - y[..., j])
    valid = ~(np.isnan(dx) | np.isnan(dy))
    dx = np.where(valid, dx, 0.0)
    dy = np.where(valid, dy, 0.0)
    prod = dx * dy
    concordant = (prod > 0).sum(-1)
    discordant = (prod < 0).sum(-1)
    n0 = valid.sum(-1)
    tie_x = (valid & (dx == 0)).sum(-1)
    tie_y = (valid & (dy == 0)).sum(-1)
    denom = np.sqrt((n0 - tie_x).astype(float) * (n0 - tie_y).astype(float))
    safe = np.where(denom > 0, denom, 1.0)
    tau = np.where(denom > 0, (concordant - discordant) / safe, np.nan)
    return tau, np.where(n0 > 0, discordant, np.nan).astype(float)


def _jobs(cols, spec, keys):
    from ..aggregate import SIDE, Job, contrast_stats, emitter

    ranked = ranked_axis(spec.args)
    if ranked not in cols.df.columns:
        raise ValueError(f"rank_stability: no {ranked} column in the results")
    stats, st = contrast_stats(cols, spec, keys + [ranked])
    model = stats[ranked].to_numpy()
    side = stats[SIDE].to_numpy()
    labels = [f"{spec.label}.{o}" for o in spec.info.outputs]
    jobs = []
    for key, pos in cols.split(stats, keys):
        models, local = np.unique(model[pos], return_inverse=True)
        S, C = st.pivot(pos, local.ravel() * 2 + side[pos], 2 * len(models))
        tot = C.sum(0).reshape(-1, 2)
        both = np.flatnonzero((tot[:, 0] > 0) & (tot[:, 1] > 0))
        if len(both) < 2:
            S, C = S[:0, :0], C[:0, :0]

            def fn(R):
                return np.full((len(R), 2), np.nan)
        else:
            cols_ab = np.concatenate([both * 2, both * 2 + 1])
            S, C = S[:, cols_ab], C[:, cols_ab]
            used = (C > 0).any(1)
            S, C = S[used], C[used]
            m = len(both)

            def fn(R, m=m):
                tau, inv = kendall_tau_b(R[:, :m], R[:, m:])
                return np.stack([tau, inv], axis=1)

        jobs.append(Job(spec.label, key, S, C, fn, emitter(labels, keys, key, [len(S), len(S)])))
    return jobs


def ranked_axis(args: dict) -> str:
    return args.get("rank") or "model"


RANK_STABILITY = MetricInfo(
    name="rank_stability",
    summary="Kendall tau and inversion count between the rankings of the models (or of another axis's values) under two conditions",
    params=(
        Param("metric", "metric", required=True, summary="the per-item metric the models are ranked by"),
        Param("pair", "contrast", required=True, summary="the two conditions, axis = a - b"),
        Param("rank", "axis", summary="the axis whose values are ranked (default: model; a judge stage's generator axis ranks the generators)"),
    ),
    outputs=("tau", "inversions"),
    positional=("metric",),
    compares=True,
    folds=lambda args: (ranked_axis(args), *contrast_axis(args)),
    compute=Computation(jobs=_jobs),
).register()
