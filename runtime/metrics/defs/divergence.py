"""Divergences between the human and the model option distributions, per answer of a kind
that provides probabilities, then the mean.  Both maps are renormalised over their
non-negative values; a row missing either has no value.

- kl: ``KL(P || Q) = sum_k P(k) ln(P(k) / Q'(k))``, natural log, P the human distribution,
  Q the model's, both renormalised over the union of their options;
  ``Q' = (Q + EPS) / (1 + K * EPS)`` with ``EPS = 1e-6`` and K the number of options, so an
  option the model gives probability 0 costs at most ``ln(1/EPS) ~ 13.8`` nats instead of
  infinity.
- js: ``JS = KL(P||M)/2 + KL(Q||M)/2``, ``M = (P + Q)/2``, natural log, no smoothing needed
  (bounded by ln 2).
"""

from __future__ import annotations

from xlspec.lazy import lazy

from ..registry import Computation, MetricInfo, Param

np = lazy("numpy")
pd = lazy("pandas")

EPS = 1e-6
"""Smoothing of the model distribution in ``kl``."""

SOURCES = ("human", "option_probs")


def divergences(maps, p_name: str, q_name: str, eps: float):
    """KL(P || Q') and JS(P, Q) per row of ``maps`` (:class:`~..columns.Maps`), NaN where
    either map is missing."""
    from scipy.special import rel_entr

    pr, pc, pv = maps.normalised(p_name)
    qr, qc, qv = maps.normalised(q_name)
    both = maps.has(p_name) & maps.has(q_name)
    kp, kq = pr * maps.K + pc, qr * maps.K + qc
    keep_p, keep_q = both[pr], both[qr]
    kp, pv, kq, qv = kp[keep_p], pv[keep_p], kq[keep_q], qv[keep_q]
    uniq, inv = np.unique(np.concatenate([kp, kq]), return_inverse=True)
    inv = inv.ravel()
    P = np.zeros(len(uniq))
    Q = np.zeros(len(uniq))
    P[inv[: len(kp)]] = pv
    Q[inv[len(kp) :]] = qv
    row = uniq // maps.K
    k_row = np.bincount(row, minlength=maps.N)
    Qs = (Q + eps) / (1.0 + k_row[row] * eps)
    M = (P + Q) / 2
    # scipy's elementwise relative entropy x ln(x / y), 0 where x = 0 (Qs and M are > 0
    # wherever their P or Q term is)
    kl_t = rel_entr(P, Qs)
    js_t = 0.5 * rel_entr(P, M) + 0.5 * rel_entr(Q, M)
    kl = np.bincount(row, weights=kl_t, minlength=maps.N)
    js = np.bincount(row, weights=js_t, minlength=maps.N)
    return np.where(both, kl, np.nan), np.where(both, js, np.nan)


def _two_maps(p: dict, q: dict):
    from ..columns import Maps

    return Maps({"p": pd.Series([p], dtype=object), "q": pd.Series([q], dtype=object)}, 1)


def kl_divergence(p: dict, q: dict, eps: float = EPS) -> float:
    """KL(P || Q) in nats for two option maps, Q smoothed with ``eps`` (module docstring)."""
    return float(divergences(_two_maps(p, q), "p", "q", eps)[0][0])


def js_divergence(p: dict, q: dict) -> float:
    """Jensen-Shannon divergence in nats, M = (P + Q) / 2."""
    return float(divergences(_two_maps(p, q), "p", "q", 0.0)[1][0])


def _register(name: str, summary: str, which: int, headline_rank: int) -> MetricInfo:
    """A divergence metric: ``which`` 0 is KL, 1 is JS (of :func:`divergences`)."""

    def scores(cols, args):
        p_src, q_src = args.get("p", "human"), args.get("q", "option_probs")
        rows, rank = cols.eligible("probs")
        val = cols.cached(("div", p_src, q_src), lambda: divergences(cols.maps, p_src, q_src, EPS))[which][rows]
        ok = ~np.isnan(val)
        return rows, np.where(ok, val, 0.0), ok.astype(float), rank

    return MetricInfo(
        name=name,
        summary=summary,
        params=(
            Param("p", "source", default="human", summary="the reference distribution", choices=SOURCES),
            Param("q", "source", default="option_probs", summary="the compared distribution", choices=SOURCES),
        ),
        needs=frozenset({"probs", "human"}),
        positional=("p", "q"),
        per_item=True,
        headline_rank=headline_rank,
        compute=Computation(scores=scores),
    ).register()


KL = _register("kl", "KL(P_human || Q_model) over the options", 0, 6)
JS = _register("js", "Jensen-Shannon divergence between human and model option distributions", 1, 7)
