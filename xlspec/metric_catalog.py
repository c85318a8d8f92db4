"""What each metric is called, what arguments it takes and what it needs from a study.

Pure data, shared by the checker (which rejects a metric a study cannot compute) and by the
runtime's metric library (which implements every entry).  Formulas are in DESIGN.md.

Argument kinds:
  metric    another metric's name (``accuracy``), the metric to aggregate or compare
  axis      an axis name (``language``, ``framing``, ...)
  contrast  ``axis = a - b`` (two values of one axis, paired by item)
  number    a number
  language  a language code
  source    ``answer`` | ``expected`` (the model side) or ``human.mean`` (the human side)

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

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Param:
    name: str
    kind: str
    required: bool = False
    default: object = None


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


def _m(name, summary, params=(), needs=(), outputs=("value",), compares=False, positional=()):
    return MetricInfo(name, summary, tuple(params), frozenset(needs), tuple(outputs), compares, tuple(positional))


CATALOG: dict[str, MetricInfo] = {
    m.name: m
    for m in [
        _m("accuracy", "share of answers equal to the gold answer", needs={"choice", "targets"}),
        _m("exact_match", "normalised generated text equals any target (per-language normaliser)", needs={"text", "targets"}),
        _m("token_f1", "token-level F1 against the best target", needs={"text", "targets"}),
        _m("chrf", "chrF against the targets (sacrebleu)", needs={"text", "targets"}),
        _m(
            "agreement",
            "1 - |a - b| / (max - min) on the ordinal scale",
            params=[Param("a", "source", default="answer"), Param("b", "source", default="human.mean"), Param("pair", "contrast")],
            needs={"choice", "scale"},
            positional=("a", "b"),
        ),
        _m("kl", "KL(P_human || Q_model) over the options", params=[Param("p", "source", default="human"), Param("q", "source", default="option_probs")], needs={"probs", "human"}, positional=("p", "q")),
        _m("js", "Jensen-Shannon divergence between human and model option distributions", params=[Param("p", "source", default="human"), Param("q", "source", default="option_probs")], needs={"probs", "human"}, positional=("p", "q")),
        _m("refusal_rate", "share of answers with no valid option parsed", needs={"parsed"}),
        _m(
            "logit_leakage",
            "among refused answers, the share whose top option probability >= threshold",
            params=[Param("threshold", "number", default=0.5)],
            needs={"parsed", "probs"},
            positional=("threshold",),
        ),
        _m("consistency", "share of items whose answer is the same across an axis", params=[Param("over", "axis", required=True)], needs={"choice"}, positional=("over",)),
        _m("parity_gap", "largest minus smallest value of a metric across languages (max - min)", params=[Param("metric", "metric", required=True)], positional=("metric",)),
        _m("parity_std", "standard deviation of a metric across languages", params=[Param("metric", "metric", required=True)], positional=("metric",)),
        _m(
            "pivot_delta",
            "a metric in each language minus the same metric in a pivot language",
            params=[Param("metric", "metric", required=True), Param("pivot", "language", default="en")],
            positional=("metric", "pivot"),
            compares=True,
        ),
        _m(
            "delta",
            "a metric under condition a minus condition b, paired by item",
            params=[Param("metric", "metric", required=True), Param("pair", "contrast", required=True)],
            positional=("metric",),
            compares=True,
        ),
        _m(
            "rank_stability",
            "Kendall tau and inversion count between model rankings under two conditions",
            params=[Param("metric", "metric", required=True), Param("pair", "contrast", required=True)],
            outputs=("tau", "inversions"),
            positional=("metric",),
            compares=True,
        ),
        _m("language_fidelity", "share of generated answers in the requested language", needs={"text"}),
    ]
}

# Metrics whose argument names another metric: that metric must be a per-item metric.
ITEM_METRICS = frozenset({"accuracy", "exact_match", "token_f1", "chrf", "agreement", "kl", "js", "refusal_rate", "logit_leakage", "language_fidelity"})

# What each answer kind provides.
ANSWER_PROVIDES: dict[str, frozenset[str]] = {
    "generate": frozenset({"choice", "text", "parsed"}),
    "options": frozenset({"choice", "probs"}),
    "loglik": frozenset({"choice", "probs"}),
}
