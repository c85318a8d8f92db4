"""The results table (one row per request, ``runtime/schema.py``) read once, as arrays.

:class:`Columns` is what every metric reads: the rows without an engine error, axis
columns as integer codes (grouping on small integers instead of strings), and the derived
per-row values several metrics share (the chosen answer, refusals, the answer text, the
option maps, references, languages, the scale range, units), each computed on first use and
cached for the rest of the ``compute_metrics`` call.

Rows that carry an engine ``error`` are missing data: they are left out of every metric.

Answer kinds.  A metric reads the kinds that provide what it needs
(:func:`xlspec.answers.kinds_providing`): the chosen answer (``accuracy``,
``agreement(answer)``, ``consistency``, ``mean``) from ``generate`` (the parsed option; a
refusal has no answer), else from ``options``/``loglik`` (``parsed_answer`` where the
runtime filled it, which maps a loglik option text to its label, else the argmax of
``option_probs``; a tie goes to the label seen first in the column, i.e. the first in option
order); probabilities (``kl``, ``js``, ``agreement(expected)``) from ``options`` else
``loglik``; text (``exact_match``, ``token_f1``, ``chrf``, ``language_fidelity``) and
refusals (``refusal_rate``, ``logit_leakage``) from ``generate``.  Where one item has rows
of several eligible kinds in a group (``answer = options + generate`` and ``answer_kind``
not a group axis), the preferred kind in that order is used for that item
(:func:`~.aggregate.best_kind`).

The report's API
----------------
The report reads the same per-row values with these functions, so a table of flipped
answers or refusals agrees with the metrics (each takes a results DataFrame and returns one
value per row of it, in its order; none drops error rows but :func:`answered_rows`):

- :func:`answered_rows` ``(df) -> DataFrame``: the rows without an engine error.
- :func:`answer_kinds` ``(df) -> ndarray[object]``: each row's answer kind (normalised;
  ``generate`` where missing).
- :func:`kind_rank` ``(df, need) -> ndarray[int]``: each row's preference rank among the
  kinds providing ``need`` (0 first), -1 where its kind does not provide it.
- :func:`chosen_answers` ``(df) -> ndarray[object]``: the normalised chosen option label,
  None for a refusal or a row without an answer.
- :func:`refused` ``(df) -> ndarray[bool]``: a refused answer of a kind that can refuse.
- :func:`top_option` ``(df, column="option_probs") -> (labels, probs)``: each row's most
  probable option and its probability.
"""

from __future__ import annotations

import math
from functools import lru_cache
from itertools import chain

import numpy as np
import pandas as pd

from xlspec.axes import RESULT_AXES
from xlspec.normalize import base_language, normalize_label

__all__ = [
    "Columns",
    "answered_rows",
    "answer_kinds",
    "kind_rank",
    "chosen_answers",
    "refused",
    "top_option",
]

ITEM = "item_id"
SIDE = "_side"
"""A code column of a contrast: 0 = the rows under ``a``, 1 = under ``b``."""
MAP_COLUMNS = ("option_probs", "human")
DEFAULT_KIND = "generate"
"""The answer kind of a row whose ``answer_kind`` is missing."""


# --------------------------------------------------------------------------- small helpers


def missing(x) -> bool:
    if x is None:
        return True
    if isinstance(x, float) and math.isnan(x):
        return True
    return x is pd.NA or x is pd.NaT


def as_list(x) -> list[str]:
    if missing(x):
        return []
    if isinstance(x, str):
        return [x]
    try:
        return [str(t) for t in x if not missing(t)]
    except TypeError:
        return [str(x)]


@lru_cache(maxsize=65536)
def number(label: str | None) -> float:
    """A label read as a number (after :func:`normalize_label`: digits of any script, NFKC,
    stripped); NaN where it is not a finite number."""
    if label is None:
        return math.nan
    try:
        v = float(normalize_label(label))
    except (TypeError, ValueError):
        return math.nan
    return v if math.isfinite(v) else math.nan


def str_codes(values) -> tuple[np.ndarray, list[str]]:
    """Codes of a column's values as strings (-1 for missing) and the strings themselves."""
    codes, uniques = pd.factorize(np.asarray(values, dtype=object))
    names = [str(u) for u in uniques]
    # distinct values may print alike (1 and "1"): merge them
    merged, names_u = pd.factorize(np.array(names + ["\x00"], dtype=object))
    return np.where(codes >= 0, merged[codes], -1), [str(x) for x in names_u[:-1]] if len(names_u) else []


def isin(values, wanted) -> np.ndarray:
    """Boolean mask: the value, as a string, is one of ``wanted``."""
    codes, names = str_codes(values)
    hit = np.array([n in set(wanted) for n in names] + [False], dtype=bool)
    return hit[codes]


def norm_labels(values: np.ndarray) -> np.ndarray:
    """normalize_label over an object array, computed once per distinct value."""
    codes, uniques = pd.factorize(values)
    table = np.array([normalize_label(u) for u in uniques] + [None], dtype=object)
    return table[codes]  # code -1 (missing) -> the trailing None


def numbers(labels: np.ndarray) -> np.ndarray:
    """:func:`number` over an object array, computed once per distinct value."""
    codes, uniques = pd.factorize(labels)
    table = np.array([number(u) for u in uniques] + [math.nan], dtype=float)
    return table[codes]


# ------------------------------------------------------------------------------ option maps


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


class Maps:
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
        self._raw_vocab, self._raw_to_label = raw_vocab, norm_codes[:-1]
        self.labels = np.asarray(vocab, dtype=object)
        self.K = max(len(self.labels), 1)
        self.num = np.array([number(x) for x in self.labels], dtype=float)
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

    def spelled(self) -> np.ndarray:
        """Each label as first written in the maps (``labels`` holds the normalised form)."""
        out = np.empty(len(self.labels), dtype=object)
        seen, first = np.unique(self._raw_to_label, return_index=True)
        ok = seen >= 0
        out[seen[ok]] = [str(self._raw_vocab[j]) for j in first[ok]]
        return out

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
        """Per row the largest (renormalised) probability; NaN without a distribution."""
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


# ------------------------------------------------------------------------------ the table


def _kept(df: pd.DataFrame) -> np.ndarray:
    """Per row: no engine error (``error`` missing or blank)."""
    if "error" not in df.columns:
        return np.ones(len(df), dtype=bool)
    err = df["error"].to_numpy(dtype=object)
    keep = pd.isna(err).astype(bool)
    keep[~keep] = [str(e).strip() == "" for e in err[~keep]]
    return keep


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


class Columns:
    """The results of one ``compute_metrics`` call, read once (see the module docstring).

    ``drop_errors``: leave out the rows with an engine error (the metrics do); the report's
    functions below read every row they are given."""

    def __init__(self, results: pd.DataFrame, drop_errors: bool = True):
        df = results[_kept(results)] if drop_errors and "error" in results.columns else results
        df = df.reset_index(drop=True)
        self.df = df
        self.N = len(df)
        self.axes = [a for a in RESULT_AXES if a in df.columns]
        if "answer_kind" in df.columns:
            kinds = norm_labels(df["answer_kind"].to_numpy(dtype=object))
            self.kind = np.array([k if k is not None else DEFAULT_KIND for k in kinds], dtype=object)
        else:
            self.kind = np.full(self.N, DEFAULT_KIND, dtype=object)
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

    def score(self, name: str) -> np.ndarray:
        """A rubric score per row (the ``scores`` map): NaN where the row has no valid value."""

        def make():
            out = np.full(self.N, np.nan)
            for i, m in enumerate(self.col("scores")):
                if missing(m) if not isinstance(m, (list, tuple, dict, np.ndarray)) else False:
                    continue
                for k, v in (m.items() if isinstance(m, dict) else m):
                    if k == name and not missing(v):
                        out[i] = float(v)
            return out

        return self.cached(("score", name), make)

    def rubric_rows(self) -> np.ndarray:
        """The rows of a rubric parser's answers (``invalid_scores`` is a list there)."""

        def make():
            col = self.col("invalid_scores")
            return np.array([i for i, v in enumerate(col) if isinstance(v, (list, tuple, np.ndarray))], dtype=np.int64)

        return self.cached(("rubric_rows",), make)

    def invalid_scores(self, name: str | None = None) -> np.ndarray:
        """Per row: the rubric verdict is invalid (any score, or the score ``name``)."""

        def make():
            col = self.col("invalid_scores")
            out = np.zeros(self.N, dtype=bool)
            for i, v in enumerate(col):
                if isinstance(v, (list, tuple, np.ndarray)) and len(v):
                    out[i] = name is None or name in list(v)
            return out

        return self.cached(("invalid_scores", name), make)

    def numeric(self, name: str) -> np.ndarray:
        """A column as floats: NaN where missing or not a number."""
        return self.cached(("numeric", name), lambda: pd.to_numeric(pd.Series(self.col(name)), errors="coerce").to_numpy(float))

    @property
    def maps(self) -> Maps:
        def make():
            cols = {}
            for name in MAP_COLUMNS:
                cols[name] = self.df[name] if name in self.df.columns else pd.Series([None] * self.N, dtype=object)
            return Maps(cols, self.N)

        return self.cached(("maps",), make)

    def kind_rank(self, need: str) -> np.ndarray:
        """Per row the preference rank of its answer kind among those providing ``need``
        (0 first), -1 where the kind does not provide it."""

        def make():
            from xlspec.answers import kinds_providing

            kinds = kinds_providing(need)
            codes, uniques = pd.factorize(self.kind)
            table = np.array([kinds.get(k, -1) for k in uniques] + [-1], dtype=int)
            return table[codes]

        return self.cached(("rank", need), make)

    def eligible(self, need: str) -> tuple[np.ndarray, np.ndarray]:
        """(rows, rank): the rows whose answer kind provides ``need`` and its rank there."""

        def make():
            rank = self.kind_rank(need)
            rows = np.flatnonzero(rank >= 0)
            return rows, rank[rows]

        return self.cached(("eligible", need), make)

    def refused(self) -> np.ndarray:
        """Per row: a refused answer (``refused`` true; where it is missing, no parsed
        answer) of a kind that can refuse (one providing ``parsed``)."""

        def make():
            ref = self.col("refused")
            miss = self.isna("refused")
            out = np.where(miss, self.isna("parsed_answer"), False)
            out[~miss] = ref[~miss].astype(bool)
            return out.astype(bool) & (self.kind_rank("parsed") >= 0)

        return self.cached(("refused",), make)

    def parsed_labels(self) -> np.ndarray:
        return self.cached(("parsed_labels",), lambda: norm_labels(self.col("parsed_answer")))

    def choice(self) -> np.ndarray:
        """The chosen option label per row (normalised); None for a refusal / no answer."""

        def make():
            out = self.parsed_labels().copy()
            out[self.refused()] = None
            probs = self.kind_rank("probs") >= 0
            am = self.maps.argmax("option_probs")
            use = probs & (am >= 0) & self.isna("parsed_answer")
            out[use] = self.maps.labels[am[use]]
            return out

        return self.cached(("choice",), make)

    def choice_numbers(self) -> np.ndarray:
        """The chosen label read as a number per row (NaN: none, or not a number)."""
        return self.cached(("choice_num",), lambda: numbers(self.choice()))

    def text(self) -> np.ndarray:
        """The answer text per row: ``parsed_answer``, else ``response``; None without."""

        def make():
            parsed, resp = self.col("parsed_answer"), self.col("response")
            out = np.where(self.isna("parsed_answer"), resp, parsed)
            out[pd.isna(out).astype(bool)] = None
            return out

        return self.cached(("text",), make)

    def references(self, rows: np.ndarray) -> list[list[str]]:
        """The reference answers of ``rows``: ``targets``, else ``[gold]``."""
        targets, gold, gmiss = self.col("targets"), self.col("gold"), self.isna("gold")
        out = []
        for i in rows:
            refs = as_list(targets[i])
            if not refs and not gmiss[i]:
                refs = [str(gold[i])]
            out.append(refs)
        return out

    def languages(self) -> np.ndarray:
        """The primary language subtag per row (``pt-BR`` -> ``pt``)."""

        def make():
            codes, uniques = pd.factorize(self.col("language"))
            table = np.array([base_language(str(u)) for u in uniques] + [None], dtype=object)
            return table[codes]

        return self.cached(("lang",), make)

    def scale_range(self) -> np.ndarray:
        """``scale_max - scale_min`` per row; NaN where missing or not positive."""

        def make():
            rng = self.numeric("scale_max") - self.numeric("scale_min")
            return np.where(rng > 0, rng, np.nan)

        return self.cached(("scale",), make)

    def unit_codes(self, exclude: tuple[str, ...]) -> np.ndarray:
        """One code per unit: rows equal on every axis but ``exclude``, the answer kind and a
        loglik answer's normalisation (an item's answers of several kinds are one unit)."""
        cols = [a for a in self.axes if a not in exclude and a not in ("answer_kind", "normalize")]

        def make():
            if not cols:
                return np.zeros(self.N, dtype=np.int64)
            f = self.frame(cols, np.arange(self.N))
            return f.groupby(cols, sort=False).ngroup().to_numpy()

        return self.cached(("unit", tuple(cols)), make)


# ---------------------------------------------------------------------- the report's API


def answered_rows(df: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``df`` without an engine error (``error`` missing or blank), index kept.
    Every metric leaves the others out."""
    return df[_kept(df)] if "error" in df.columns else df


def answer_kinds(df: pd.DataFrame) -> np.ndarray:
    """Per row of ``df``: its answer kind, normalised (``generate`` where missing)."""
    return Columns(df, drop_errors=False).kind


def kind_rank(df: pd.DataFrame, need: str) -> np.ndarray:
    """Per row of ``df``: the preference rank of its answer kind among the kinds providing
    ``need`` (``choice``, ``probs``, ``text``, ``parsed``; 0 first), -1 where it does not
    provide it.  Where one item has rows of several kinds, the metrics read the lowest rank."""
    return Columns(df, drop_errors=False).kind_rank(need)


def chosen_answers(df: pd.DataFrame) -> np.ndarray:
    """Per row of ``df``: the chosen option label, normalised (``normalize_label``: NFKC,
    ASCII digits, stripped, case-folded), as ``accuracy`` and ``consistency`` compare it.

    ``parsed_answer`` where set (the runtime maps a loglik option text to its label); for a
    row of a kind providing probabilities without one, the argmax of ``option_probs`` (a tie
    goes to the label seen first in the column); None for a refusal (:func:`refused`) or a
    row without an answer."""
    return Columns(df, drop_errors=False).choice()


def refused(df: pd.DataFrame) -> np.ndarray:
    """Per row of ``df``: True for a refused answer, as ``refusal_rate`` counts it: a row of
    a kind that can refuse (``generate``) whose ``refused`` is true or, where ``refused`` is
    missing, whose ``parsed_answer`` is missing."""
    return Columns(df, drop_errors=False).refused()


def top_option(df: pd.DataFrame, column: str = "option_probs") -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``df``: the most probable option of the map ``column`` and its probability
    (renormalised over the row's non-negative values), as ``logit_leakage`` reads it.

    Labels are spelled as first written in the frame's maps (labels equal after
    ``normalize_label`` are one option); a tie goes to the label seen first in the frame.
    (None, NaN) where the row has no distribution."""
    if column not in MAP_COLUMNS:
        raise ValueError(f"{column!r} is not an option map column ({', '.join(MAP_COLUMNS)})")
    maps = Columns(df, drop_errors=False).maps
    best = maps.argmax(column)
    labels = np.full(len(best), None, dtype=object)
    labels[best >= 0] = maps.spelled()[best[best >= 0]]
    return labels, maps.top(column)
