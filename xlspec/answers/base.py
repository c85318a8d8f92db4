"""What an answer kind is: the arguments it takes in a spec, what it provides to metrics,
how many engine requests an item costs, and how an engine's answer becomes a result row.

Metrics name what they need (``choice``, ``text``, ``parsed``, ``probs``); a kind lists what
it provides with a preference rank (0 = preferred), so where one item has answers of several
kinds the metric reads the preferred one (a chosen option from ``generate`` before
``options`` before ``loglik``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..registry import Registry

ANSWER_KINDS: Registry["AnswerKind"] = Registry("answer kind", "xlspec.answers")

PROVIDES = {
    "choice": "a chosen option per answer",
    "text": "generated text",
    "parsed": "an answer parser that can refuse",
    "probs": "option probabilities",
}
"""What answer kinds can provide to metrics (the dataset provides ``scale``, ``human`` and
``targets``)."""


@dataclass(frozen=True)
class Param:
    name: str
    kind: str
    """``parser`` (an answer parser, ``option_letter`` or ``regex("...")``), ``bool``,
    ``field`` (a field the dataset maps), ``number``, ``model`` (a model the spec
    declares), ``choice`` (one of ``choices``, written as a name) or ``text`` (a string)."""
    summary: str
    default: Any = None
    choices: tuple[str, ...] = ()
    """``choice``: the names it takes."""
    optional: bool = False
    """A ``field`` or ``model`` that may be left out (else one without a default is
    required)."""


@dataclass(frozen=True)
class AnswerKind:
    name: str
    summary: str
    provides: dict[str, int]
    """need -> preference rank among the kinds providing it (0 first)."""
    params: tuple[Param, ...] = ()
    needs_options: bool = False
    """The dataset must map ``options``."""
    engine_order: int = 0
    """Requests are sent to engines sorted by prompt, then by this, so an engine that can
    serve several kinds from one prefill (the hf engine: ``options`` off the first step of a
    generation) finds them side by side."""
    sampled: bool = False
    """Runs once per sample, with the mode's sampling settings (else once per item)."""
    output_tokens: int = 0
    """Output tokens per request for estimates, where not sampled (sampled kinds use the
    mode's ``max_tokens``)."""
    request_options: str = "labels"
    """What the engine request carries as options: ``labels`` (A, B, ...), ``texts`` (the
    option texts) or ``candidates`` (the texts of the fields the answer's ``a`` and ``b``
    name: responses a reward model scores)."""
    identity_args: tuple[str, ...] = field(default=())
    """Arguments that change what the engine computes, so they go into the request id."""
    request_rule: int = 0
    """The version of how engines compute this kind's answer, in its request ids where not 0:
    raised when that changes, so answers stored under the older rule are not reused."""
    engine_kind: str | None = None
    """The kind of request an engine serves for it, where that is another kind's
    (``pairwise`` is a ``generate`` request whose prompt shows two candidates)."""
    score_names: tuple[str, ...] = ()
    """Scores each answer of this kind has in the results' ``scores`` (``pairwise``:
    ``preference``), which metrics can name like a rubric parser's."""
    scores_of: Callable[[dict], tuple[str, ...]] | None = None
    """Where the scores depend on the arguments (``reward``: one response, or two
    candidates), the scores for an answer's ``args``."""
    head: str = "lm"
    """The model head it needs (:class:`xlspec.spec.ModelSpec`'s ``head``): ``lm`` (a causal
    language model) or ``classifier`` (a sequence-classification head)."""

    @property
    def engine(self) -> str:
        """The request kind an engine serves for this answer kind."""
        return self.engine_kind or self.name

    def scores(self, args: dict | None) -> tuple[str, ...]:
        """The scores an answer of this kind with these arguments has."""
        return self.scores_of(args or {}) if self.scores_of else self.score_names

    def register(self) -> "AnswerKind":
        return ANSWER_KINDS.register(self.name, self)


def kinds_providing(need: str) -> dict[str, int]:
    """Answer kind -> preference rank, for the kinds that provide ``need``."""
    return {name: k.provides[need] for name, k in ANSWER_KINDS.items() if need in k.provides}
