"""The metric library: every entry of ``xlspec.metric_catalog.CATALOG``, with bootstrap CIs.

``compute_metrics(results, metrics, group_by, seed=0, n_boot=1000)`` takes the results table
(one row per request, ``runtime/schema.py``) and returns one row per metric and group:
``metric, <axes...>, value, ci_low, ci_high, n``.

How values are built
--------------------
Every per-item metric gives each eligible row (or, for ``consistency`` and paired
``agreement``, each *unit*: one item under one combination of every other axis) a score
``s`` and a weight ``c`` (1 where the score is defined, 0 where it is not).  These are summed
per item: ``S_i``, ``C_i``.  A group's value is ``sum(S_i) / sum(C_i)`` over its items, i.e.
the mean over every defined answer (with one answer per item, the mean over items).  Items
are ``item_id`` values; all rows of one item (several countries, samples, ... pooled into a
group) stay together when resampling.

Rows that carry an engine ``error`` are missing data: they are left out of every metric.

Answer kinds.  A metric reads the kinds that provide what it needs: the chosen answer
(``accuracy``, ``agreement(answer)``, ``consistency``) from ``generate`` (the parsed option;
a refusal has no answer), else from ``options``/``loglik`` (``parsed_answer`` where the
runtime filled it, which maps a loglik option text to its label, else the argmax of
``option_probs``; a tie goes to the label seen first in the column, i.e. the first in option
order); probabilities (``kl``, ``js``, ``agreement(expected)``) from ``options`` else
``loglik``; text (``exact_match``, ``token_f1``, ``chrf``, ``refusal_rate``,
``language_fidelity``) from ``generate``.  Where one item has rows of several eligible
kinds in a group (``answer = options + generate`` and ``answer_kind`` not a group axis), the
preferred kind in that order is used for that item.

Formulas (DESIGN.md "Metrics", STUDIES.md)
------------------------------------------
- accuracy: chosen answer == gold (labels compared after NFKC, ASCII digits, strip,
  casefold; without ``gold`` any of ``targets``).  A refusal counts as wrong.
- exact_match: max over targets of normalised answer == normalised target (the language's
  normaliser, ``normalize.py``); the answer is ``parsed_answer`` or else ``response``.
- token_f1: max over targets of the SQuAD token F1 on ``tokenize`` (per character for
  scripts written without spaces); both empty -> 1, one empty -> 0.
- chrf: sacrebleu ``CHRF()`` sentence score of the raw (stripped) answer against all targets
  (sacrebleu keeps the best reference), per answer, then the mean.  Scale 0-100 as sacrebleu
  and the published tables report it.
- agreement (NVAS): ``1 - |a - b| / (scale_max - scale_min)``.  ``a = answer``: the chosen
  option label read as a number; ``a = expected``: ``sum_k k p(k)`` over ``option_probs``
  (renormalised).  ``b = human.mean``: ``sum_k k h(k)`` over ``human`` (renormalised).  With
  ``pair = {axis, a, b}`` the two sides are the model's answers under ``axis = a`` and
  ``axis = b`` on the same unit (item and every other axis equal); ``b`` then defaults to
  the source of ``a``.  Labels that are not numbers give no value.  Not clipped.
- kl: ``KL(P || Q) = sum_k P(k) ln(P(k) / Q'(k))``, natural log, P the human distribution,
  Q the model's, both renormalised over the union of their options;
  ``Q' = (Q + EPS) / (1 + K * EPS)`` with ``EPS = 1e-6`` and K the number of options, so an
  option the model gives probability 0 costs at most ``ln(1/EPS) ~ 13.8`` nats instead of
  infinity.  js: ``JS = KL(P||M)/2 + KL(Q||M)/2``, ``M = (P + Q)/2``, natural log, no
  smoothing needed (bounded by ln 2).
- refusal_rate: share of generate answers with ``refused`` true (a missing ``refused`` is
  read as "no parsed answer").
- logit_leakage(threshold): among refused generate answers, the share whose top option
  probability (``option_probs`` of the options/loglik row of the same unit, any sample:
  probabilities are read once per item and cell) is >= threshold.
  A group without refusals (or without probabilities for them) has no value: NaN, n = 0.
- consistency(over=axis): per unit (an item under one combination of every axis except
  ``axis``), 1 if the chosen answer is identical under every value of ``axis`` the unit has,
  else 0; a refusal is an answer of its own ("refused" everywhere is consistent); units seen
  under fewer than two values are left out.  Grouped by the group axes minus ``axis``.
- parity_gap / parity_std: the inner metric per language (each over its own items) within
  the group axes minus ``language``; gap = max - min, std = population standard deviation
  (ddof = 0) across the languages with a value; NaN with fewer than two such languages.
- pivot_delta(metric, pivot): metric in L minus metric in the pivot, each over its own items,
  one row per language L != pivot (the ``language`` column says which).  A group without the
  pivot gives NaN rows (n = 0).
- delta(metric, pair): metric under ``a`` minus under ``b`` over the items defined under
  both (paired by item); the pair axis is dropped from the grouping.  Where the two
  conditions share no item at all (subsets or partitions split the items), each side is
  taken over its own items, and the bootstrap resamples both sides' items together.  ``a``/``b`` may be a
  value or a list of values of the axis.
- rank_stability(metric, pair): the models' values under ``a`` and ``b`` (grouping minus
  ``model`` and the pair axis); ``.tau`` is Kendall's tau-b (ties handled as in tau-b, as
  ``scipy.stats.kendalltau`` does by default; NaN when either ranking is all ties or fewer
  than two models have both values) and ``.inversions`` the number of discordant model
  pairs (a pair tied on either side is not an inversion).
- language_fidelity: share of generate responses whose language, identified by lingua
  (detector built once, lazily, from the requested languages present plus English), is the
  requested language (primary subtag of ``language``).  Responses lingua cannot place
  (empty, digits only) or in a language lingua does not know are left out.

Bootstrap
---------
95% percentile intervals over ``n_boot`` resamples of the group's items with replacement.
Every metric draws, per group, a multiplicity vector over the group's items and applies it
to all sides at once, so metrics that compare conditions (delta, pivot_delta,
rank_stability, parity_*, consistency, paired agreement) resample the same items on every
side.  The generator is ``numpy.random.default_rng`` seeded with a blake2b digest of
(``seed``, metric label, group values): reproducible across runs and machines, and adding a
group does not move another group's interval (indices come from the generator's 32-bit
stream by multiply-shift, see ``_draw``).  Resamples in which a side has no defined item
are ignored (``nanpercentile``).  Where every item of a one-sided group is a success or a
failure of equal weight (accuracy, refusal rate, consistency, ...), the number of successes
in a resample is drawn from Binomial(n, successes / n), which is exactly the distribution
of drawing n items with replacement, at O(1) cost per resample instead of O(n).  Groups are
bootstrapped on a small thread pool (numpy releases the GIL); each group has its own
generator, so results do not depend on scheduling.

- n = number of distinct items with a defined value behind the row.
- A group with one item: the value, and ci_low = ci_high = value (every resample is that
  item).
- A group (language, ...) that has rows but no defined value: a row with NaN value and CIs,
  n = 0.  A group with no rows at all (a language with no items) gives no row.
- ``n_boot = 0``: no intervals (NaN).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import chain

import numpy as np
import pandas as pd

from xlspec.metric_catalog import CATALOG, ITEM_METRICS

from .normalize import base_language, normalize_answer, normalize_label, tokenize

__all__ = ["compute_metrics", "EPS", "AXES"]

EPS = 1e-6
"""Smoothing of the model distribution in ``kl`` (see the module docstring)."""

AXES = (
    "experiment",
    "model",
    "dataset",
    "item_id",
    "language",
    "country",
    "framing",
    "mode",
    "partition",
    "subset",
    "shots",
    "seed",
    "sample",
    "answer_kind",
)
"""Columns that identify what a row measured; a unit is an item under one value of each."""

ITEM = "item_id"
SIDE = "_side"
OUT_COLUMNS = ("value", "ci_low", "ci_high", "n")

CHOICE_KINDS = {"generate": 0, "options": 1, "loglik": 2}
PROB_KINDS = {"options": 0, "loglik": 1}
TEXT_KINDS = {"generate": 0}
REFUSED = "\x00refused"


# --------------------------------------------------------------------------- small helpers


def _missing(x) -> bool:
    if x is None:
        return True
    if isinstance(x, float) and math.isnan(x):
        return True
    return x is pd.NA or x is pd.NaT


def _as_list(x) -> list[str]:
    if _missing(x):
        return []
    if isinstance(x, str):
        return [x]
    try:
        return [str(t) for t in x if not _missing(t)]
    except TypeError:
        return [str(x)]


@lru_cache(maxsize=65536)
def _number(label: str | None) -> float:
    if label is None:
        return math.nan
    try:
        v = float(normalize_label(label))
    except (TypeError, ValueError):
        return math.nan
    return v if math.isfinite(v) else math.nan


def _str_codes(values) -> tuple[np.ndarray, list[str]]:
    """Codes of a column's values as strings (-1 for missing) and the strings themselves."""
    codes, uniques = pd.factorize(np.asarray(values, dtype=object))
    names = [str(u) for u in uniques]
    # distinct values may print alike (1 and "1"): merge them
    merged, names_u = pd.factorize(np.array(names + ["\x00"], dtype=object))
    return np.where(codes >= 0, merged[codes], -1), [str(x) for x in names_u[:-1]] if len(names_u) else []


def _in(values, wanted) -> np.ndarray:
    """Boolean mask: the value, as a string, is one of ``wanted``."""
    codes, names = _str_codes(values)
    hit = np.array([n in set(wanted) for n in names] + [False], dtype=bool)
    return hit[codes]


def _norm_labels(values: np.ndarray) -> np.ndarray:
    """normalize_label over an object array, computed once per distinct value."""
    codes, uniques = pd.factorize(values)
    table = np.array([normalize_label(u) for u in uniques] + [None], dtype=object)
    return table[codes]  # code -1 (missing) -> the trailing None


def _numbers(labels: np.ndarray) -> np.ndarray:
    codes, uniques = pd.factorize(labels)
    table = np.array([_number(u) for u in uniques] + [math.nan], dtype=float)
    return table[codes]


def _entries(col) -> tuple[np.ndarray, list, np.ndarray]:
    """A map column (dicts, lists of pairs, Arrow maps) as flat (row, key, value) entries."""
    try:
        import pyarrow as pa

        if isinstance(getattr(col, "dtype", None), pd.ArrowDtype) and pa.types.is_map(col.dtype.pyarrow_dtype):
            arr = pa.chunked_array(col.array._pa_array).combine_chunks()
            offsets = arr.offsets.to_numpy()
            counts = np.diff(offsets)
            keys = arr.keys.to_pylist()
            vals = arr.items.to_numpy(zero_copy_only=False).astype(float)
            start = offsets[0]
            return np.repeat(np.arange(len(counts)), counts), keys[: offsets[-1] - start], vals[: offsets[-1] - start]
    except ImportError:  # pragma: no cover
        pass
    values = col.to_numpy(dtype=object) if hasattr(col, "to_numpy") else np.asarray(col, dtype=object)
    present = np.flatnonzero(~pd.isna(values).astype(bool)) if len(values) else np.zeros(0, np.int64)
    cells = values[present].tolist()
    if all(type(x) is dict for x in cells):  # the common case, iterated in C
        counts = np.fromiter(map(len, cells), dtype=np.int64, count=len(cells))
        keys = list(chain.from_iterable(cells))
        vals = np.fromiter(chain.from_iterable(map(dict.values, cells)), dtype=float, count=len(keys))
        return np.repeat(present, counts), keys, vals
    counts = np.zeros(len(cells), dtype=np.int64)
    keys: list = []
    vals_l: list = []
    for j, x in enumerate(cells):
        if isinstance(x, dict):
            pairs = list(x.items())
        else:
            try:
                pairs = [(k, v) for k, v in x]  # Arrow maps arrive as lists of (key, value)
            except (TypeError, ValueError):
                continue
        keys.extend(k for k, _ in pairs)
        vals_l.extend(v for _, v in pairs)
        counts[j] = len(pairs)
    return np.repeat(present, counts), keys, np.array(vals_l, dtype=float)


def _has_pairs(col: pd.Series) -> bool:
    """Whether a map column holds lists of pairs (Arrow maps may repeat a key) rather than
    dicts (whose keys are distinct)."""
    first = col.dropna().head(1).tolist() if col.dtype == object else [None]
    return not (first and isinstance(first[0], dict))


class _Maps:
    """The option maps of the table (``option_probs``, ``human``) as flat entries over one
    label vocabulary (labels compared after ``normalize_label``)."""

    def __init__(self, columns: dict[str, object], n_rows: int):
        self.N = n_rows
        raw = {name: _entries(col) for name, col in columns.items()}
        all_keys = np.array([k for _, keys, _ in raw.values() for k in keys], dtype=object)
        raw_codes, raw_vocab = pd.factorize(all_keys)
        norm_codes, vocab = pd.factorize(np.array([normalize_label(k) for k in raw_vocab] + [None], dtype=object))
        # distinct keys of one map can only collide if normalisation merges two of them
        merge = len(vocab) < len(raw_vocab)
        codes = norm_codes[raw_codes]  # raw code -1 (missing key) -> the trailing None -> -1
        self.labels = np.asarray(vocab, dtype=object)
        self.K = max(len(self.labels), 1)
        self.num = np.array([_number(x) for x in self.labels], dtype=float)
        self.data: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        at = 0
        for name, (rows, keys, vals) in raw.items():
            c = codes[at : at + len(keys)]
            at += len(keys)
            ok = (c >= 0) & ~np.isnan(vals)
            rows, c, vals = rows[ok].astype(np.int64), c[ok].astype(np.int64), vals[ok]
            if merge or not isinstance(columns[name], pd.Series) or _has_pairs(columns[name]):
                combined = rows * self.K + c
                uniq, inv = np.unique(combined, return_inverse=True)
                vals = np.bincount(inv.ravel(), weights=vals, minlength=len(uniq)) if len(uniq) else vals[:0]
                rows, c = uniq // self.K, uniq % self.K
            self.data[name] = (rows, c, vals)
        self._norm: dict = {}

    def normalised(self, name: str):
        """(row, code, p) with p renormalised per row over its non-negative values; rows
        whose values sum to <= 0 are dropped."""
        if name not in self._norm:
            rows, codes, vals = self.data[name]
            v = np.maximum(vals, 0.0)
            tot = np.bincount(rows, weights=v, minlength=self.N)
            ok = tot[rows] > 0
            self._norm[name] = (rows[ok], codes[ok], v[ok] / tot[rows[ok]])
        return self._norm[name]

    def has(self, name: str) -> np.ndarray:
        rows, _, _ = self.normalised(name)
        out = np.zeros(self.N, dtype=bool)
        out[rows] = True
        return out

    def argmax(self, name: str) -> np.ndarray:
        """Per row the code of the most probable label (ties: the first label in the
        vocabulary, i.e. in option order), -1 where the row has no distribution."""
        rows, codes, p = self.normalised(name)
        out = np.full(self.N, -1, dtype=np.int64)
        if len(rows) == 0:
            return out
        rowmax = np.full(self.N, -np.inf)
        np.maximum.at(rowmax, rows, p)
        best = p >= rowmax[rows]
        # among the maxima of a row, the smallest code
        order = np.lexsort((codes[best], rows[best]))
        r, c = rows[best][order], codes[best][order]
        first = np.r_[True, r[1:] != r[:-1]]
        out[r[first]] = c[first]
        return out

    def top(self, name: str) -> np.ndarray:
        rows, _, p = self.normalised(name)
        out = np.full(self.N, -np.inf)
        np.maximum.at(out, rows, p)
        return np.where(np.isfinite(out), out, np.nan)

    def mean(self, name: str) -> np.ndarray:
        """sum_k k p(k) per row; NaN where a label is not a number or there is no map."""
        rows, codes, p = self.normalised(name)
        num = self.num[codes]
        bad = np.bincount(rows, weights=np.isnan(num).astype(float), minlength=self.N) > 0
        acc = np.bincount(rows, weights=np.where(np.isnan(num), 0.0, num) * p, minlength=self.N)
        return np.where(self.has(name) & ~bad, acc, np.nan)

    def divergences(self, p_name: str, q_name: str, eps: float) -> tuple[np.ndarray, np.ndarray]:
        """KL(P || Q') and JS(P, Q) per row (NaN where either map is missing)."""
        pr, pc, pv = self.normalised(p_name)
        qr, qc, qv = self.normalised(q_name)
        both = self.has(p_name) & self.has(q_name)
        kp, kq = pr * self.K + pc, qr * self.K + qc
        keep_p, keep_q = both[pr], both[qr]
        kp, pv, kq, qv = kp[keep_p], pv[keep_p], kq[keep_q], qv[keep_q]
        uniq, inv = np.unique(np.concatenate([kp, kq]), return_inverse=True)
        inv = inv.ravel()
        P = np.zeros(len(uniq))
        Q = np.zeros(len(uniq))
        P[inv[: len(kp)]] = pv
        Q[inv[len(kp) :]] = qv
        row = uniq // self.K
        k_row = np.bincount(row, minlength=self.N)
        Qs = (Q + eps) / (1.0 + k_row[row] * eps)
        M = (P + Q) / 2
        with np.errstate(divide="ignore", invalid="ignore"):
            kl_t = np.where(P > 0, P * np.log(P / Qs), 0.0)
            js_t = 0.5 * np.where(P > 0, P * np.log(P / M), 0.0) + 0.5 * np.where(Q > 0, Q * np.log(Q / M), 0.0)
        kl = np.bincount(row, weights=kl_t, minlength=self.N)
        js = np.bincount(row, weights=js_t, minlength=self.N)
        return np.where(both, kl, np.nan), np.where(both, js, np.nan)


def kl_divergence(p: dict, q: dict, eps: float = EPS) -> float:
    """KL(P || Q) in nats for two option maps, Q smoothed with ``eps`` (module docstring)."""
    m = _Maps({"p": pd.Series([p], dtype=object), "q": pd.Series([q], dtype=object)}, 1)
    return float(m.divergences("p", "q", eps)[0][0])


def js_divergence(p: dict, q: dict) -> float:
    """Jensen-Shannon divergence in nats, M = (P + Q) / 2."""
    m = _Maps({"p": pd.Series([p], dtype=object), "q": pd.Series([q], dtype=object)}, 1)
    return float(m.divergences("p", "q", 0.0)[1][0])


def token_f1(pred: list[str], gold: list[str]) -> float:
    """SQuAD token F1 between two token lists (both empty: 1; one empty: 0)."""
    if not pred and not gold:
        return 1.0
    if not pred or not gold:
        return 0.0
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


_CHRF = None


@lru_cache(maxsize=200_000)
def _chrf(hyp: str, refs: tuple[str, ...]) -> float:
    global _CHRF
    if _CHRF is None:
        from sacrebleu.metrics import CHRF

        _CHRF = CHRF()
    return float(_CHRF.sentence_score(hyp, list(refs)).score)


def kendall_tau_b(x, y) -> tuple[np.ndarray, np.ndarray]:
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


# ----------------------------------------------------------------------- language fidelity

_DETECTORS: dict[frozenset, object] = {}


def _lingua_language(code: str):
    from lingua import IsoCode639_1, IsoCode639_3, Language

    code = base_language(code)
    try:
        if code and len(code) == 2:
            return Language.from_iso_code_639_1(IsoCode639_1.from_str(code))
        if code and len(code) == 3:
            return Language.from_iso_code_639_3(IsoCode639_3.from_str(code))
    except (ValueError, AttributeError, KeyError):
        return None
    return None


def _detector(languages: frozenset):
    """One lingua detector per set of requested languages (plus English), built on first use."""
    if languages not in _DETECTORS:
        from lingua import Language, LanguageDetectorBuilder

        langs = set(languages) | {Language.ENGLISH}
        if len(langs) < 2:
            langs.add(Language.FRENCH)
        _DETECTORS[languages] = LanguageDetectorBuilder.from_languages(*sorted(langs, key=str)).build()
    return _DETECTORS[languages]


# ----------------------------------------------------------------------------- metric specs


@dataclass
class Spec:
    name: str
    args: dict
    by: list[str] | None
    label: str
    info: object = field(repr=False, default=None)

    def key(self) -> str:
        return json.dumps([self.name, self.args], sort_keys=True, default=str)


@dataclass(frozen=True)
class Pair:
    axis: str
    a: tuple[str, ...]
    b: tuple[str, ...]


def _parse_pair(p) -> Pair:
    if isinstance(p, Pair):
        return p
    if isinstance(p, str):
        m = re.fullmatch(r"\s*([\w-]+)\s*=\s*([\w.-]+)\s+-\s+([\w.-]+)\s*", p)
        if not m:
            raise ValueError(f"cannot read contrast {p!r}: expected 'axis = a - b'")
        return Pair(m.group(1), (m.group(2),), (m.group(3),))
    if isinstance(p, dict) and {"axis", "a", "b"} <= set(p):
        a = tuple(str(v) for v in (p["a"] if isinstance(p["a"], (list, tuple)) else [p["a"]]))
        b = tuple(str(v) for v in (p["b"] if isinstance(p["b"], (list, tuple)) else [p["b"]]))
        if set(a) & set(b):
            raise ValueError(f"contrast {p!r}: a and b share values")
        return Pair(str(p["axis"]), a, b)
    raise ValueError(f"cannot read contrast {p!r}: expected {{'axis': ..., 'a': ..., 'b': ...}}")


def _default_label(name: str, args: dict) -> str:
    if not args:
        return name
    parts = []
    for k, v in args.items():
        if isinstance(v, dict) and {"axis", "a", "b"} <= set(v):
            v = f"{v['axis']}={v['a']}-{v['b']}"
        parts.append(f"{k}={v}")
    return f"{name}({', '.join(parts)})"


def _make_spec(raw) -> Spec:
    if isinstance(raw, str):
        raw = {"name": raw}
    name = raw["name"]
    if name not in CATALOG:
        raise ValueError(f"unknown metric {name!r}; known: {', '.join(sorted(CATALOG))}")
    info = CATALOG[name]
    given = dict(raw.get("args") or {})
    unknown = set(given) - {p.name for p in info.params}
    if unknown:
        raise ValueError(f"metric {name!r}: unknown argument(s) {sorted(unknown)}")
    args = {}
    for p in info.params:
        if p.name in given and given[p.name] is not None:
            args[p.name] = given[p.name]
        elif p.required:
            raise ValueError(f"metric {name!r}: argument {p.name!r} is required")
        elif p.default is not None:
            args[p.name] = p.default
    label = raw.get("label") or _default_label(name, given)
    by = raw.get("by")
    return Spec(name, args, list(by) if by is not None else None, label, info)


# ---------------------------------------------------------------------------- bootstrap


def _derive_seed(seed: int, label: str, key: tuple) -> int:
    text = json.dumps([str(seed), label, [None if _missing(v) else str(v) for v in key]])
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


def _draw(rng: np.random.Generator, B: int, n: int) -> np.ndarray:
    """(B, n) item indices drawn uniformly with replacement.

    32-bit draws of the generator's bit stream mapped to [0, n) by multiply-shift
    (``(u * n) >> 32``): a bias below n / 2**32, at half the cost of ``rng.integers``."""
    raw = rng.bit_generator.random_raw((B * n + 1) // 2)
    u = np.multiply(raw.view(np.uint32)[: B * n], np.uint64(n), dtype=np.uint64)
    u >>= np.uint64(32)
    return u.view(np.int64).reshape(B, n)


_BLOCK = 2_000_000
"""Most resampled indices held at once (per thread)."""


@dataclass
class _Job:
    label: str
    key: tuple
    S: np.ndarray  # (n_items, K)
    C: np.ndarray  # (n_items, K)
    fn: object  # (R, K) rates -> (R, m) statistics
    emit: object  # (value, lo, hi arrays) -> list of rows


def _run_job(job: _Job, seed: int, n_boot: int):
    S, C, fn = job.S, job.C, job.fn
    # np.errstate is thread-local (numpy >= 1.25); nothing below raises a Python warning
    # (all-NaN columns are kept away from the nan-functions)
    with np.errstate(invalid="ignore", divide="ignore"):
        full = np.asarray(fn((S.sum(0) / C.sum(0))[None, :])[0], dtype=float)
        n = S.shape[0]
        if n_boot <= 0 or n == 0 or np.all(np.isnan(full)):
            nan = np.full(full.shape, np.nan)
            return full, nan, nan
        rng = np.random.default_rng(_derive_seed(seed, job.label, job.key))
        K = S.shape[1]
        c0 = C[0, 0]
        if K == 1 and np.all(C[:, 0] == c0) and np.all((S[:, 0] == 0) | (S[:, 0] == c0)):
            # every item a success or a failure of equal weight (accuracy, refusal rate, ...):
            # the number of successes among n items drawn with replacement is exactly
            # Binomial(n, successes / n), so draw that instead of n indices per resample
            k = np.count_nonzero(S[:, 0])
            num = (rng.binomial(n, k / n, size=n_boot) * c0)[:, None]
            den = np.full((n_boot, 1), c0 * n)
        else:
            # resampled index blocks of at most ~2M entries, so large item sets stay in memory
            step = max(1, _BLOCK // n)
            nums, dens = [], []
            for start in range(0, n_boot, step):
                b = min(step, n_boot - start)
                idx = _draw(rng, b, n)
                if K <= 2:
                    nums.append(np.stack([np.take(S[:, k], idx).sum(1) for k in range(K)], axis=1))
                    dens.append(
                        np.stack(
                            [np.full(b, C[0, k] * n) if np.all(C[:, k] == C[0, k]) else np.take(C[:, k], idx).sum(1) for k in range(K)],
                            axis=1,
                        )
                    )
                else:
                    flat = idx + (np.arange(b, dtype=np.int64) * n)[:, None]
                    W = np.bincount(flat.ravel(), minlength=b * n).reshape(b, n).astype(float)
                    nums.append(W @ S)
                    dens.append(W @ C)
            num, den = np.concatenate(nums), np.concatenate(dens)
        vals = np.asarray(fn(num / den), dtype=float)
        lo, hi = np.full(full.shape, np.nan), np.full(full.shape, np.nan)
        const = np.zeros(full.shape, dtype=bool)
        has = ~np.all(np.isnan(vals), axis=0)
        if has.all() and not np.isnan(vals).any():
            lo, hi = np.percentile(vals, [2.5, 97.5], axis=0)
            const = vals.max(0) == vals.min(0)
        elif has.any():
            v = vals[:, has]
            lo[has], hi[has] = np.nanpercentile(v, [2.5, 97.5], axis=0)
            const[has] = np.nanmax(v, axis=0) == np.nanmin(v, axis=0)
        # a one-item group (or a constant statistic): the interval is the value itself
        lo = np.where(const & ~np.isnan(full), full, lo)
        hi = np.where(const & ~np.isnan(full), full, hi)
        return full, lo, hi


def _workers() -> int:
    try:
        return max(1, min(len(os.sched_getaffinity(0)), 8))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, min(os.cpu_count() or 1, 8))


def _run_jobs(jobs: list[_Job], seed: int, n_boot: int) -> list[dict]:
    """Every job's bootstrap (threads: numpy releases the GIL in the heavy parts; each
    group has its own generator, so the result does not depend on scheduling)."""
    workers = _workers()
    if workers > 1 and len(jobs) > 4 and n_boot > 0:
        size = max(1, len(jobs) // (workers * 8))
        chunks = [jobs[i : i + size] for i in range(0, len(jobs), size)]
        with ThreadPoolExecutor(workers) as pool:
            parts = pool.map(lambda chunk: [_run_job(j, seed, n_boot) for j in chunk], chunks)
            results = [r for part in parts for r in part]
    else:
        results = [_run_job(j, seed, n_boot) for j in jobs]
    rows: list[dict] = []
    for job, (v, lo, hi) in zip(jobs, results):
        rows.extend(job.emit(v, lo, hi))
    return rows


# ---------------------------------------------------------------------------- the engine


def _split(frame: pd.DataFrame, keys: list[str]) -> list[tuple[tuple, np.ndarray]]:
    """(key values, row positions) for each group of ``keys``, sorted by key."""
    if len(frame) == 0:
        return []
    if not keys:
        return [((), np.arange(len(frame)))]
    codes = frame.groupby(keys, sort=True).ngroup().to_numpy()
    order = np.argsort(codes, kind="stable")
    bounds = np.flatnonzero(np.diff(codes[order])) + 1
    values = frame[keys].to_numpy()
    return [(tuple(values[p[0]]), p) for p in np.split(order, bounds)]


def _best_kind(frame: pd.DataFrame, group: list[str]) -> pd.DataFrame:
    """Keep, per group, the rows of the most preferred answer kind (lowest ``_rank``)."""
    if len(frame) == 0 or frame["_rank"].nunique() <= 1:
        return frame
    best = frame.groupby(group, sort=False)["_rank"].transform("min")
    return frame[frame["_rank"].to_numpy() == best.to_numpy()]


class _Evaluator:
    def __init__(self, results: pd.DataFrame, specs: list[Spec], seed: int, n_boot: int):
        df = results
        if "error" in df.columns:
            err = df["error"].to_numpy(dtype=object)
            keep = pd.isna(err).astype(bool)
            keep[~keep] = [str(e).strip() == "" for e in err[~keep]]
            df = df[keep]
        df = df.reset_index(drop=True)
        if ITEM not in df.columns:
            raise ValueError("results have no item_id column")
        self.df = df
        self.N = len(df)
        self.specs = specs
        self.seed = seed
        self.n_boot = int(n_boot)
        self.axes = [a for a in AXES if a in df.columns]
        if "answer_kind" in df.columns:
            kinds = _norm_labels(df["answer_kind"].to_numpy(dtype=object))
            self.kind = np.array([k if k is not None else "generate" for k in kinds], dtype=object)
        else:
            self.kind = np.full(self.N, "generate", dtype=object)
        self._cache: dict = {}

    def cached(self, key, make):
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    # ---- grouping columns as integer codes (sorted values; -1 = missing)
    def code(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(codes, values) of a column: groupby on small integers instead of strings."""

        def make():
            col = self.df[name]
            try:
                codes, uniques = pd.factorize(col, sort=True)
            except TypeError:  # values that do not sort together
                codes, uniques = pd.factorize(col)
            values = np.empty(len(uniques), dtype=object)
            values[:] = list(np.asarray(uniques, dtype=object))
            return np.asarray(codes, dtype=np.int64), values

        return self.cached(("code", name), make)

    def frame(self, cols: list[str], rows: np.ndarray, side: np.ndarray | None = None) -> pd.DataFrame:
        """The code columns ``cols`` (``SIDE``: the contrast side, 0 = a, 1 = b) of ``rows``."""
        data = {}
        for c in dict.fromkeys(cols):
            data[c] = side[rows] if c == SIDE else self.code(c)[0][rows]
        return pd.DataFrame(data, index=pd.RangeIndex(len(rows)))

    def decode(self, keys: list[str], key: tuple) -> tuple:
        out = []
        for k, c in zip(keys, key):
            values = self.code(k)[1]
            out.append(None if c < 0 else values[c])
        return tuple(out)

    def values(self, name: str) -> list[str]:
        """The values of a column as strings, indexed by code."""
        return [str(v) for v in self.code(name)[1]]

    def split(self, frame: pd.DataFrame, keys: list[str]):
        """(decoded key values, row positions) per group of the code columns ``keys``."""
        return [(self.decode(keys, k), pos) for k, pos in _split(frame, keys)]

    # ---- columns, read once
    def col(self, name: str) -> np.ndarray:
        def make():
            if name in self.df.columns:
                return self.df[name].to_numpy(dtype=object)
            return np.full(self.N, None, dtype=object)

        return self.cached(("col", name), make)

    def isna(self, name: str) -> np.ndarray:
        return self.cached(("isna", name), lambda: pd.isna(self.col(name)).astype(bool))

    @property
    def maps(self) -> _Maps:
        def make():
            cols = {}
            for name in ("option_probs", "human"):
                cols[name] = self.df[name] if name in self.df.columns else pd.Series([None] * self.N, dtype=object)
            return _Maps(cols, self.N)

        return self.cached(("maps",), make)

    def refused(self) -> np.ndarray:
        def make():
            ref = self.col("refused")
            miss = self.isna("refused")
            out = np.where(miss, self.isna("parsed_answer"), False)
            out[~miss] = ref[~miss].astype(bool)
            return out.astype(bool)

        return self.cached(("refused",), make)

    def parsed_labels(self) -> np.ndarray:
        return self.cached(("parsed_labels",), lambda: _norm_labels(self.col("parsed_answer")))

    def choice(self) -> np.ndarray:
        """The chosen option label per row (normalised); None for a refusal / no answer."""

        def make():
            out = self.parsed_labels().copy()
            out[self.refused() & (self.kind == "generate")] = None
            probs = np.isin(self.kind, ("options", "loglik"))
            am = self.maps.argmax("option_probs")
            use = probs & (am >= 0) & self.isna("parsed_answer")
            out[use] = self.maps.labels[am[use]]
            return out

        return self.cached(("choice",), make)

    def text(self) -> np.ndarray:
        def make():
            parsed, resp = self.col("parsed_answer"), self.col("response")
            out = np.where(self.isna("parsed_answer"), resp, parsed)
            out[pd.isna(out).astype(bool)] = None
            return out

        return self.cached(("text",), make)

    def references(self, rows: np.ndarray) -> list[list[str]]:
        targets, gold, gmiss = self.col("targets"), self.col("gold"), self.isna("gold")
        out = []
        for i in rows:
            refs = _as_list(targets[i])
            if not refs and not gmiss[i]:
                refs = [str(gold[i])]
            out.append(refs)
        return out

    def languages(self) -> np.ndarray:
        def make():
            codes, uniques = pd.factorize(self.col("language"))
            table = np.array([base_language(str(u)) for u in uniques] + [None], dtype=object)
            return table[codes]

        return self.cached(("lang",), make)

    def scale_range(self) -> np.ndarray:
        def make():
            lo = pd.to_numeric(pd.Series(self.col("scale_min")), errors="coerce").to_numpy(float)
            hi = pd.to_numeric(pd.Series(self.col("scale_max")), errors="coerce").to_numpy(float)
            rng = hi - lo
            return np.where(rng > 0, rng, np.nan)

        return self.cached(("scale",), make)

    def unit_codes(self, exclude: tuple[str, ...]) -> np.ndarray:
        """One code per unit: rows equal on every axis but ``exclude`` and answer_kind."""
        cols = [a for a in self.axes if a not in exclude and a != "answer_kind"]

        def make():
            if not cols:
                return np.zeros(self.N, dtype=np.int64)
            f = self.frame(cols, np.arange(self.N))
            return f.groupby(cols, sort=False).ngroup().to_numpy()

        return self.cached(("unit", tuple(cols)), make)

    def eligible(self, kinds: dict):
        def make():
            codes, uniques = pd.factorize(self.kind)
            table = np.array([kinds.get(k, -1) for k in uniques] + [-1], dtype=int)
            rank = table[codes]
            rows = np.flatnonzero(rank >= 0)
            return rows, rank[rows]

        return self.cached(("eligible", tuple(sorted(kinds.items()))), make)

    # ---- per-row scores of the per-item metrics: (rows, s, c, rank)
    def row_scores(self, spec: Spec):
        fn = getattr(self, f"_rows_{spec.name}", None)
        if fn is None:
            raise ValueError(f"metric {spec.name!r} cannot be used per item")
        return self.cached(("rows", spec.key()), lambda: fn(spec.args))

    def _rows_accuracy(self, args):
        rows, rank = self.eligible(CHOICE_KINDS)
        choice = self.choice()[rows]
        gold = _norm_labels(self.col("gold"))[rows]
        has_gold = np.array([g is not None for g in gold], dtype=bool)
        answered = np.array([c is not None for c in choice], dtype=bool)
        s = np.where(has_gold & answered, choice == gold, False).astype(float)
        c = has_gold.astype(float)
        targets = self.col("targets")
        for j in np.flatnonzero(~has_gold):
            golds = {normalize_label(t) for t in _as_list(targets[rows[j]])}
            if golds:
                c[j] = 1.0
                s[j] = float(choice[j] is not None and choice[j] in golds)
        return rows, s, c, rank

    def _text_rows(self, score):
        rows, rank = self.eligible(TEXT_KINDS)
        text, langs = self.text(), self.languages()
        refs = self.references(rows)
        s = np.zeros(len(rows))
        c = np.zeros(len(rows))
        memo: dict = {}
        for j, i in enumerate(rows):
            if refs[j]:
                key = (text[i] or "", tuple(refs[j]), langs[i])
                if key not in memo:
                    memo[key] = score(*key)
                c[j] = 1.0
                s[j] = memo[key]
        return rows, s, c, rank

    def _rows_exact_match(self, args):
        def score(hyp, refs, lang):
            h = normalize_answer(hyp, lang)
            return float(any(h == normalize_answer(r, lang) for r in refs))

        return self._text_rows(score)

    def _rows_token_f1(self, args):
        def score(hyp, refs, lang):
            h = tokenize(hyp, lang)
            return max(token_f1(h, tokenize(r, lang)) for r in refs)

        return self._text_rows(score)

    def _rows_chrf(self, args):
        return self._text_rows(lambda hyp, refs, lang: _chrf(hyp.strip(), tuple(r.strip() for r in refs)))

    def model_number(self, source: str):
        """(rows, value, rank) of the model side of agreement."""
        if source == "answer":
            rows, rank = self.eligible(CHOICE_KINDS)
            val = self.cached(("choice_num",), lambda: _numbers(self.choice()))[rows]
        elif source == "expected":
            rows, rank = self.eligible(PROB_KINDS)
            val = self.cached(("expected",), lambda: self.maps.mean("option_probs"))[rows]
        else:
            raise ValueError(f"agreement: {source!r} is not a model source (answer | expected)")
        return rows, val, rank

    def _rows_agreement(self, args):
        a, b = args.get("a", "answer"), args.get("b", "human.mean")
        if a == "human.mean":
            a, b = b, a
        if b != "human.mean":
            raise ValueError("agreement between two model sources needs pair = axis = a - b")
        rows, val, rank = self.model_number(a)
        hmean = self.cached(("human_mean",), lambda: self.maps.mean("human"))[rows]
        nvas = 1.0 - np.abs(val - hmean) / self.scale_range()[rows]
        ok = ~np.isnan(nvas)
        return rows, np.where(ok, nvas, 0.0), ok.astype(float), rank

    def _divergence_rows(self, args, which: int):
        p_src, q_src = args.get("p", "human"), args.get("q", "option_probs")
        for s in (p_src, q_src):
            if s not in ("human", "option_probs"):
                raise ValueError(f"divergence source {s!r}: expected human or option_probs")
        rows, rank = self.eligible(PROB_KINDS)
        val = self.cached(("div", p_src, q_src), lambda: self.maps.divergences(p_src, q_src, EPS))[which][rows]
        ok = ~np.isnan(val)
        return rows, np.where(ok, val, 0.0), ok.astype(float), rank

    def _rows_kl(self, args):
        return self._divergence_rows(args, 0)

    def _rows_js(self, args):
        return self._divergence_rows(args, 1)

    def _rows_refusal_rate(self, args):
        rows, rank = self.eligible(TEXT_KINDS)
        return rows, self.refused()[rows].astype(float), np.ones(len(rows)), rank

    def _rows_logit_leakage(self, args):
        threshold = float(args.get("threshold", 0.5))
        rows, rank = self.eligible(TEXT_KINDS)
        # option probabilities are read once per item and cell (sample 0), whatever the
        # number of generated samples: match on every axis but the sample
        units = self.unit_codes(("sample",))
        prows, prank = self.eligible(PROB_KINDS)
        top = self.maps.top("option_probs")
        by_unit = np.full(units.max() + 1 if len(units) else 0, np.nan)
        # the preferred kind last, so it overwrites
        order = np.argsort(-prank, kind="stable")
        pr = prows[order]
        ok = ~np.isnan(top[pr])
        by_unit[units[pr[ok]]] = top[pr[ok]]
        t = by_unit[units[rows]] if len(rows) else np.zeros(0)
        c = (self.refused()[rows] & ~np.isnan(t)).astype(float)
        s = np.where(c > 0, t >= threshold, False).astype(float)
        return rows, s, c, rank

    def _rows_language_fidelity(self, args):
        rows, rank = self.eligible(TEXT_KINDS)
        resp, parsed = self.col("response"), self.col("parsed_answer")
        lang_codes, names = _str_codes(self.col("language")[rows])
        table = [_lingua_language(x) for x in names] + [None]
        present = frozenset(v for v in table if v is not None)
        want = [table[c] for c in lang_codes]
        texts = []
        for i in rows:
            t = resp[i] if not _missing(resp[i]) else parsed[i]
            texts.append("" if _missing(t) else str(t).strip())
        s = np.zeros(len(rows))
        c = np.zeros(len(rows))
        todo = sorted({t for t, w in zip(texts, want) if t and w is not None})
        if todo and present:
            detected = dict(zip(todo, _detector(present).detect_languages_in_parallel_of(todo)))
            for j in range(len(rows)):
                got = detected.get(texts[j])
                if want[j] is not None and got is not None:
                    c[j] = 1.0
                    s[j] = float(got == want[j])
        return rows, s, c, rank

    # ---- per-item sums: a frame with keys + item_id + S, C
    def item_stats(self, spec: Spec, keys: list[str], side: np.ndarray | None = None) -> pd.DataFrame:
        """Per item sums S, C with the code columns ``keys`` + item_id; ``side`` (0 = a,
        1 = b, -1 = neither, per row) restricts to the rows of a contrast and provides the
        ``SIDE`` column."""
        if spec.name == "consistency":
            return self._items_consistency(spec, keys, side)
        if spec.name == "agreement" and spec.args.get("pair") is not None:
            return self._items_agreement_pair(spec, keys, side)
        rows, s, c, rank = self.row_scores(spec)
        if side is not None:
            keep = side[rows] >= 0
            rows, s, c, rank = rows[keep], s[keep], c[keep], rank[keep]
        frame = self.frame(keys + [ITEM], rows, side).assign(S=s, C=c, _rank=rank)
        frame = _best_kind(frame, keys + [ITEM])
        return frame.groupby(keys + [ITEM], sort=True, as_index=False)[["S", "C"]].sum()

    def _items_consistency(self, spec, keys, side):
        over = spec.args["over"]
        if over not in self.df.columns:
            raise ValueError(f"consistency: no axis {over!r} in the results")
        keys = [k for k in keys if k != over]
        rows, rank = self.eligible(CHOICE_KINDS)
        if side is not None:
            keep = side[rows] >= 0
            rows, rank = rows[keep], rank[keep]
        choice = self.choice()[rows]
        frame = self.frame(keys + [ITEM, over], rows, side)
        frame["_answer"] = pd.factorize(np.where(pd.isna(choice).astype(bool), REFUSED, choice))[0]
        frame["_unit"] = self.unit_codes((over,))[rows]
        frame["_rank"] = rank
        frame = _best_kind(frame, keys + [ITEM])
        per_unit = frame.groupby("_unit", sort=False).agg(n_over=(over, "nunique"), n_ans=("_answer", "nunique"))
        first = frame.drop_duplicates("_unit").set_index("_unit")[keys + [ITEM]]
        per_unit = per_unit.join(first)
        per_unit["C"] = (per_unit["n_over"] >= 2).astype(float)
        per_unit["S"] = ((per_unit["n_ans"] == 1) & (per_unit["C"] > 0)).astype(float)
        return per_unit.groupby(keys + [ITEM], sort=True, as_index=False)[["S", "C"]].sum()

    def _items_agreement_pair(self, spec, keys, side):
        pair = _parse_pair(spec.args["pair"])
        if pair.axis not in self.df.columns:
            raise ValueError(f"agreement: no axis {pair.axis!r} in the results")
        keys = [k for k in keys if k != pair.axis]
        a_src = spec.args.get("a", "answer")
        b_src = spec.args.get("b", "human.mean")
        if b_src == "human.mean":
            b_src = a_src
        in_a, in_b = _in(self.col(pair.axis), pair.a), _in(self.col(pair.axis), pair.b)
        units = self.unit_codes((pair.axis,))
        scale = self.scale_range()
        sides = []
        for on_side, src in ((in_a, a_src), (in_b, b_src)):
            rows, val, rank = self.model_number(src)
            sel = on_side[rows]
            if side is not None:
                sel &= side[rows] >= 0
            rows, val, rank = rows[sel], val[sel], rank[sel]
            f = self.frame(keys + [ITEM], rows, side)
            f = f.assign(_unit=units[rows], _val=val, _rank=rank, _scale=scale[rows])
            f = _best_kind(f, keys + [ITEM]).dropna(subset=["_val"])
            sides.append(f.groupby("_unit", sort=False).agg(_val=("_val", "mean"), _scale=("_scale", "mean")))
        both = sides[0].add_suffix("_a").join(sides[1].add_suffix("_b"), how="inner")
        both["S"] = 1.0 - (both["_val_a"] - both["_val_b"]).abs() / both["_scale_a"]
        both["C"] = (~both["S"].isna()).astype(float)
        both["S"] = both["S"].fillna(0.0)
        # every unit of the compared rows, so groups without a defined pair show as NaN, n = 0
        sel = in_a | in_b
        if side is not None:
            sel &= side >= 0
        rows = np.flatnonzero(sel)
        base = self.frame(keys + [ITEM], rows, side).assign(_unit=units[rows]).drop_duplicates("_unit")
        base = base.set_index("_unit").join(both[["S", "C"]]).fillna({"S": 0.0, "C": 0.0})
        return base.groupby(keys + [ITEM], sort=True, as_index=False)[["S", "C"]].sum()


class _Stats:
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


# ------------------------------------------------------------------------ the metric kinds


def _resolve(ev: _Evaluator, ref) -> Spec:
    """The metric a metric-valued argument names: a label, else a name, in this request;
    else the catalog entry with its defaults."""
    if isinstance(ref, dict):
        inner = _make_spec(ref)
    else:
        ref = str(ref)
        inner = next((s for s in ev.specs if s.label == ref), None) or next((s for s in ev.specs if s.name == ref), None)
        if inner is None:
            inner = _make_spec({"name": ref})
    if inner.name not in ITEM_METRICS:
        raise ValueError(f"{inner.label!r} is not a per-item metric; it cannot be aggregated or compared")
    return inner


def _emitter(label: str, keys: list[str], key: tuple, n: int | list[int], extra: list[dict] | None = None):
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


def _plain(ev: _Evaluator, spec: Spec, by: list[str]) -> list[_Job]:
    keys = list(by)
    if spec.name == "consistency":
        keys = [k for k in keys if k != spec.args["over"]]
    if spec.name == "agreement" and spec.args.get("pair") is not None:
        keys = [k for k in keys if k != _parse_pair(spec.args["pair"]).axis]
    stats = ev.item_stats(spec, keys)
    S_all, C_all = stats["S"].to_numpy(float), stats["C"].to_numpy(float)
    jobs = []
    for key, pos in ev.split(stats, keys):
        S, C = S_all[pos], C_all[pos]
        ok = C > 0
        jobs.append(_Job(spec.label, key, S[ok][:, None], C[ok][:, None], _first, _emitter(spec.label, keys, key, int(ok.sum()))))
    return jobs


def _sides(ev: _Evaluator, pair: Pair) -> np.ndarray:
    """Per row: 0 under the contrast's a, 1 under b, -1 neither."""
    if pair.axis not in ev.df.columns:
        raise ValueError(f"no axis {pair.axis!r} in the results")
    vals = ev.col(pair.axis)
    in_a, in_b = _in(vals, pair.a), _in(vals, pair.b)
    return np.where(in_a, 0, np.where(in_b, 1, -1)).astype(np.int64)


def _delta_fn(R):
    return (R[:, 0] - R[:, 1])[:, None]


def _delta(ev: _Evaluator, spec: Spec, by: list[str]) -> list[_Job]:
    pair = _parse_pair(spec.args["pair"])
    inner = _resolve(ev, spec.args["metric"])
    keys = [k for k in by if k != pair.axis]
    stats = ev.item_stats(inner, keys + [SIDE], _sides(ev, pair))
    st = _Stats(stats)
    side = stats[SIDE].to_numpy()
    jobs = []
    for key, pos in ev.split(stats, keys):
        S, C = st.pivot(pos, side[pos], 2)
        ok = (C[:, 0] > 0) & (C[:, 1] > 0)
        if not ok.any():
            ok = (C[:, 0] > 0) | (C[:, 1] > 0)  # disjoint conditions: unpaired
        jobs.append(_Job(spec.label, key, S[ok], C[ok], _delta_fn, _emitter(spec.label, keys, key, int(ok.sum()))))
    return jobs


def _by_language(ev: _Evaluator, spec: Spec, by: list[str]):
    if "language" not in ev.df.columns:
        raise ValueError(f"{spec.name}: no language column in the results")
    inner = _resolve(ev, spec.args["metric"])
    keys = [k for k in by if k != "language"]
    stats = ev.item_stats(inner, keys + ["language"])
    st = _Stats(stats)
    lang, names = stats["language"].to_numpy(), ev.values("language")
    for key, pos in ev.split(stats, keys):
        pos = pos[lang[pos] >= 0]
        present = np.unique(lang[pos])
        langs = sorted(names[c] for c in present)
        local = np.full(len(names), -1, dtype=np.int64)
        local[[names.index(x) for x in langs]] = np.arange(len(langs))
        S, C = st.pivot(pos, local[lang[pos]], len(langs))
        yield keys, key, langs, S, C


def _parity(ev: _Evaluator, spec: Spec, by: list[str]) -> list[_Job]:
    gap = spec.name == "parity_gap"

    def fn(R):
        out = np.full(len(R), np.nan)
        ok = (~np.isnan(R)).sum(1) >= 2  # a gap or a spread needs two languages
        if ok.any():
            Rk = R[ok]
            out[ok] = np.nanmax(Rk, 1) - np.nanmin(Rk, 1) if gap else np.nanstd(Rk, 1, ddof=0)
        return out[:, None]

    jobs = []
    for keys, key, langs, S, C in _by_language(ev, spec, by):
        defined = C.sum(0) > 0
        S, C = S[:, defined], C[:, defined]
        used = C.sum(1) > 0
        jobs.append(_Job(spec.label, key, S[used], C[used], fn, _emitter(spec.label, keys, key, int(used.sum()))))
    return jobs


def _pivot_delta(ev: _Evaluator, spec: Spec, by: list[str]) -> list[_Job]:
    pivot = str(spec.args.get("pivot", "en"))
    jobs = []
    for keys, key, langs, S, C in _by_language(ev, spec, by):
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
        jobs.append(_Job(spec.label, key, S, C, fn, _emitter(spec.label, keys, key, n, extra)))
    return jobs


def _rank_stability(ev: _Evaluator, spec: Spec, by: list[str]) -> list[_Job]:
    pair = _parse_pair(spec.args["pair"])
    inner = _resolve(ev, spec.args["metric"])
    if "model" not in ev.df.columns:
        raise ValueError("rank_stability: no model column in the results")
    keys = [k for k in by if k not in ("model", pair.axis)]
    stats = ev.item_stats(inner, keys + ["model", SIDE], _sides(ev, pair))
    st = _Stats(stats)
    model = stats["model"].to_numpy()
    side = stats[SIDE].to_numpy()
    labels = [f"{spec.label}.{o}" for o in spec.info.outputs]
    jobs = []
    for key, pos in ev.split(stats, keys):
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

        jobs.append(_Job(spec.label, key, S, C, fn, _emitter(labels, keys, key, [len(S), len(S)])))
    return jobs


_KINDS = {
    "parity_gap": _parity,
    "parity_std": _parity,
    "pivot_delta": _pivot_delta,
    "delta": _delta,
    "rank_stability": _rank_stability,
}


def compute_metrics(
    results: pd.DataFrame,
    metrics: list[dict],
    group_by: list[str],
    seed: int = 0,
    n_boot: int = 1000,
) -> pd.DataFrame:
    """One row per metric and group: ``metric, <group axes>, value, ci_low, ci_high, n``.

    ``metrics``: dicts ``{"name", "args", "by", "label"}``; ``by`` (when not None) replaces
    ``group_by`` for that metric.  ``group_by``: result columns to group on.  Axes a metric
    folds (``consistency``'s ``over``, a contrast's axis, ``language`` for parity, ``model``
    and the contrast axis for rank stability) are left empty (None) in its rows;
    ``pivot_delta`` fills ``language``.  See the module docstring for every formula and
    edge case.
    """
    specs = [_make_spec(m) for m in metrics]
    ev = _Evaluator(results, specs, seed, n_boot)
    columns: list[str] = []
    for axes in [group_by] + [s.by for s in specs if s.by is not None]:
        for a in axes:
            if a not in ev.df.columns:
                raise ValueError(f"group axis {a!r} is not a column of the results")
            if a not in columns:
                columns.append(a)
    if any(s.name == "pivot_delta" for s in specs) and "language" not in columns:
        columns.append("language")
    jobs: list[_Job] = []
    for spec in specs:
        by = list(spec.by if spec.by is not None else group_by)
        jobs.extend(_KINDS.get(spec.name, _plain)(ev, spec, by))
    rows = _run_jobs(jobs, ev.seed, ev.n_boot)
    out = pd.DataFrame(rows, columns=["metric", *columns, *OUT_COLUMNS])
    for a in columns:
        out[a] = out[a].astype(object).where(out[a].notna(), None)
    out["n"] = out["n"].astype("int64")
    return out
