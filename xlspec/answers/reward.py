"""``reward(a = chosen, b = rejected)``: a reward model scores responses.

A reward model is a sequence-classification head with one output (``head = classifier`` on
the model).  It reads the study's prompt as the user turn and a candidate as the assistant's
answer (through the model's chat template; a model with ``chat = false`` reads them as a
text pair), and its output is the candidate's reward.  With one candidate (``a``, by default
the field ``response`` a judge stage reads) the row's score is ``reward``; with two, the
scores are ``reward_a``, ``reward_b``, ``margin`` (a - b) and ``preference``: 1 where ``a``
scores above ``b``, 0 below, ``tie`` on equal scores, so ``mean(preference)`` is the
preference accuracy when ``a`` is the chosen answer.  The row's ``verdict`` names the
candidate preferred (``a``, ``b`` or ``tie``), as a pairwise judge's does.

The candidate scores of :mod:`~xlspec.answers.implicit_reward` go through the same
:func:`candidate_scores`, so a reward model, a DPO model and a generative judge report the
same score names and can sit in one table.
"""

from __future__ import annotations

import math

from .base import AnswerKind, Param

SINGLE = ("reward",)
PAIR = ("reward_a", "reward_b", "margin", "preference")


def scores_of(args: dict) -> tuple[str, ...]:
    return PAIR if args.get("b") else SINGLE


def candidate_fields(answer: dict) -> tuple[str, ...]:
    """The fields holding the candidates, in order (``a``, then ``b`` where given)."""
    args = answer.get("args") or {}
    return tuple(args[k] for k in ("a", "b") if args.get(k))


def candidate_scores(answer: dict, rewards: dict[str, float | None]) -> tuple[dict[str, float], list[str], str | None]:
    """The row's scores, the scores that could not be computed, and the verdict, from each
    candidate's reward (``rewards``: ``a`` and, for a pair, ``b``; None where the engine
    gave none)."""
    args = answer.get("args") or {}
    # A reward that is not a finite number (a head that overflowed) is no reward.
    rewards = {k: (v if v is not None and math.isfinite(v) else None) for k, v in rewards.items()}
    a = rewards.get("a")
    if not args.get("b"):
        return ({"reward": a} if a is not None else {}), ([] if a is not None else ["reward"]), None
    b = rewards.get("b")
    if a is None or b is None:
        scores = {k: v for k, v in (("reward_a", a), ("reward_b", b)) if v is not None}
        return scores, [k for k in PAIR if k not in scores], None
    decided = "a" if a > b else "b" if b > a else "tie"
    preference = {"a": 1.0, "b": 0.0}.get(decided, float(args.get("tie", 0.5)))
    return {"reward_a": a, "reward_b": b, "margin": a - b, "preference": preference}, [], decided


CANDIDATE_PARAMS = (
    Param("a", "field", "the response scored (default: `response`, the field a judge stage reads)", default="response"),
    Param("b", "field", "a second candidate (`rejected`): then `preference` is 1 where `a` scores higher", optional=True),
    Param("tie", "number", "the preference of two equal scores", default=0.5),
)

REWARD = AnswerKind(
    name="reward",
    summary="a reward model (a classifier head with one output) scores the response `a`, or the candidates `a` and `b`",
    provides={},
    params=CANDIDATE_PARAMS,
    engine_order=4,
    request_options="candidates",
    scores_of=scores_of,
    head="classifier",
).register()
