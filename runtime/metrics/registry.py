"""What a metric is: its name, arguments, what it needs from a study, which axes it folds,
and how it is computed.  Every metric registers a :class:`MetricInfo` in :data:`METRICS`
from its own module in ``runtime/metrics/defs/``; the checker (which rejects a metric a
study cannot compute), the language reference and the report read this registry.

Importing this module (and the metric modules) imports neither numpy nor pandas, so the
compiler can load the catalog quickly.

Argument kinds:
  metric    another metric's name (``accuracy``), the per-item metric to aggregate or compare
  axis      an axis name (``language``, ``framing``, ...)
  contrast  ``axis = a - b`` (two values of one axis, paired by item)
  number    a number
  language  a language code
  source    ``answer`` | ``expected`` (the model side) or ``human.mean`` (the human side)
  field     a field of the results (a parsed numeric answer: ``parsed_answer``)

Needs (what the study's answer kinds and dataset must provide):
  choice    a chosen option per answer: generate (parsed), options or loglik (argmax)
  text      generated text: generate
  parsed    a parser that can fail (refusals): generate
  probs     option probabilities: options or loglik
  scale     an ordinal scale on the dataset (``scale = ordinal(1, 4)``)
  human     a human distribution on the dataset (``human = ...``)
  targets   gold answers: ``gold`` or ``targets`` on the dataset
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from xlspec.registry import Registry

if TYPE_CHECKING:
    from .columns import Columns

METRICS: Registry["MetricInfo"] = Registry("metric", "xlspec.runtime.metrics.defs")

NEEDS = {
    "choice": "a chosen answer (answer = options, loglik or generate)",
    "text": "generated text (answer = generate)",
    "parsed": "an answer parser that can refuse (answer = generate with an option, json or regex parser)",
    "probs": "option probabilities (answer = options or loglik)",
    "scale": "an ordinal scale on the dataset (scale = ordinal(1, 4))",
    "human": "a human distribution on the dataset (human = field, field[country] or a list of fields)",
    "targets": "gold answers on the dataset (gold = field or targets = field)",
    "scores": "a rubric parser (answer = generate(parser = json_scores(...) or regex_scores(...))) or pairwise answers",
    "pairwise": "pairwise verdicts (answer = pairwise(a = ..., b = ...))",
}
"""What each need means, in the words of a diagnostic."""


@dataclass(frozen=True)
class Param:
    name: str
    kind: str
    required: bool = False
    default: object = None
    summary: str = ""
    choices: tuple[str, ...] = ()
    """The values the argument may take, where they are a fixed list (``mean``'s ``field``);
    empty: any value of its kind."""
    scores: bool = False
    """The argument may also name a score a rubric parser of the study reads
    (``mean(grammaticality)``)."""


@dataclass(frozen=True)
class Computation:
    """How a metric is computed, in one of three forms (``runtime/metrics/aggregate.py``
    turns each into bootstrap jobs, one per group):

    ``scores(cols, args) -> (rows, s, c, rank)``
        A per-row metric: for the eligible rows of the results (:class:`~.columns.Columns`,
        ``cols.eligible(need)``), a score ``s``, a weight ``c`` (1 where the score is
        defined, else 0) and the answer kind's preference ``rank``.  Summed per item; a
        group's value is ``sum(S_i) / sum(C_i)`` over its items.
    ``item_stats(cols, spec, keys, side) -> DataFrame``
        A metric that scores units (an item under one combination of other axes) itself:
        per item sums ``S``, ``C`` with the code columns ``keys`` + ``item_id``
        (``consistency``, paired ``agreement``); see ``aggregate.row_item_stats``.
    ``jobs(cols, spec, keys) -> list[Job]``
        A metric that aggregates or compares another per-item metric (``spec.inner``):
        its bootstrap jobs per group of ``keys`` (the grouping less what it folds).

    The first two give the plain ratio per group and can be aggregated by the third.
    Functions are called with the numpy/pandas-backed :class:`~.columns.Columns`; a
    metric module imports those libraries lazily (:mod:`xlspec.lazy`)."""

    scores: Callable[["Columns", dict], tuple] | None = None
    item_stats: Callable[..., Any] | None = None
    jobs: Callable[..., list] | None = None


@dataclass(frozen=True)
class MetricInfo:
    name: str
    summary: str
    params: tuple[Param, ...] = ()
    needs: frozenset[str] = frozenset()
    outputs: tuple[str, ...] = ("value",)
    """Names of the values one group yields; a metric with several writes one row each,
    named ``<metric>.<output>`` (``rank_stability.tau``)."""
    compares: bool = False
    """True where the metric compares conditions (bootstrap resamples items paired)."""
    positional: tuple[str, ...] = field(default=())
    """Parameter names that may be given positionally, in order."""
    per_item: bool = False
    """A per-item metric: gives each answer a score, so other metrics can aggregate it
    (``parity_gap(accuracy)``)."""
    share: bool = False
    """Values are shares in [0, 1] (charts use a fixed 0-1 scale)."""
    headline_rank: int | None = None
    """Where a report looks first for its headline number (lower first); None: never."""
    folds: Callable[[dict], tuple[str, ...]] = field(default=lambda args: ())
    """The axes the metric folds, given its arguments (defaults filled in): dropped from its
    grouping and left empty in its rows (``consistency(over = language)`` folds
    ``language``).  The one statement of the rule: ``compute_metrics`` groups by it and the
    report reads it (:func:`folded_axes`)."""
    fills: "tuple[str, ...] | Callable[[dict], tuple[str, ...]]" = ()
    """Axes the metric fills in its rows although it folds them (``pivot_delta`` names the
    language each row compares with the pivot), or a function of its arguments giving them
    (a derived metric's); ``compute_metrics`` adds them to its output columns."""
    listed: bool = True
    """Named in the catalog a spec writes from (False: a form the checker writes itself,
    such as a derived metric's ``derived``)."""
    compute: "Computation | None" = None
    """How it is computed (:class:`Computation`), called by ``compute_metrics``
    (``runtime/metrics/compute.py``)."""

    def register(self) -> "MetricInfo":
        return METRICS.register(self.name, self)

    def filled(self, args: dict) -> tuple[str, ...]:
        """The axes its rows fill (:attr:`fills`) for these arguments."""
        return tuple(self.fills(args)) if callable(self.fills) else tuple(self.fills)


def per_item_metrics() -> list[str]:
    return [name for name, m in METRICS.items() if m.per_item]


def listed_metrics() -> list[str]:
    """The metrics a spec may name (sorted)."""
    return [name for name, m in METRICS.items() if m.listed]


def folded_axes(name: str, args: dict | None = None) -> tuple[str, ...]:
    """The axes whose column the rows of metric ``name`` with arguments ``args`` (as in the
    plan: defaults filled in) leave empty: those it folds less those it fills
    (``consistency(over = language)``: ``language``; ``pivot_delta``: none).  () for an
    unknown metric."""
    info = METRICS.get(name)
    if info is None:
        return ()
    args = dict(args or {})
    filled = info.filled(args)
    return tuple(a for a in info.folds(args) if a not in filled)


def metric_label(name: str, args: dict, by: list[str] | None = None) -> str:
    """The label a metric's rows carry: ``name`` without arguments, else
    ``name(k=v, axis=a-b, by=x+y)`` in argument order.  The one spelling of a label, used by
    the checker (which writes it into the plan) and by the runtime."""
    parts = []
    for k, v in args.items():
        if isinstance(v, dict) and {"axis", "a", "b"} <= set(v):
            parts.append(f"{v['axis']}={side_text(v['a'])}-{side_text(v['b'])}")
        else:
            parts.append(f"{k}={arg_text(v)}")
    if by:
        parts.append("by=" + "+".join(by))
    return f"{name}({', '.join(parts)})" if parts else name


def arg_text(v: Any) -> str:
    """One argument's value as a label spells it: a per-item metric with its arguments
    (``mean(fluency)``), or the value (integral floats without ``.0``)."""
    if isinstance(v, dict) and "name" in v:
        return metric_label(v["name"], v.get("args") or {})
    return _number(v)


def side_text(v: Any) -> str:
    """A contrast side as a label spells it (the values of a set joined with ``+``; a mean
    of values as ``mean(fr+de)``)."""
    if isinstance(v, dict) and "mean" in v:
        return f"mean({side_text(v['mean'])})"
    return "+".join(str(x) for x in v) if isinstance(v, (list, tuple)) else str(v)


def _number(v: Any) -> str:
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)
