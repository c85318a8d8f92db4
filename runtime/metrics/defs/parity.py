"""parity_gap / parity_std: the inner metric per language (each over its own items) within
the group axes minus ``language``; gap = max - min, std = population standard deviation
(ddof = 0) across the languages with a value; NaN with fewer than two such languages."""

from __future__ import annotations

from xlspec.lazy import lazy

from ..registry import Computation, MetricInfo, Param

np = lazy("numpy")


def _register(name: str, summary: str, gap: bool) -> MetricInfo:
    """``gap``: max - min, else the population standard deviation."""

    def fn(R):
        out = np.full(len(R), np.nan)
        ok = (~np.isnan(R)).sum(1) >= 2  # a gap or a spread needs two languages
        if ok.any():
            Rk = R[ok]
            out[ok] = np.nanmax(Rk, 1) - np.nanmin(Rk, 1) if gap else np.nanstd(Rk, 1, ddof=0)
        return out[:, None]

    def jobs(cols, spec, keys):
        from ..aggregate import Job, by_language, emitter

        out = []
        for key, langs, S, C in by_language(cols, spec, keys):
            defined = C.sum(0) > 0
            S, C = S[:, defined], C[:, defined]
            used = C.sum(1) > 0
            out.append(Job(spec.label, key, S[used], C[used], fn, emitter(spec.label, keys, key, int(used.sum()))))
        return out

    return MetricInfo(
        name=name,
        summary=summary,
        params=(Param("metric", "metric", required=True, summary="the per-item metric compared across languages"),),
        positional=("metric",),
        folds=lambda args: ("language",),
        compute=Computation(jobs=jobs),
    ).register()


PARITY_GAP = _register("parity_gap", "largest minus smallest value of a metric across languages (max - min)", gap=True)
PARITY_STD = _register("parity_std", "standard deviation of a metric across languages", gap=False)
