"""``loglik(normalize = ..., separator = ...)``: each option text scored as a continuation
of the prompt, as lm-evaluation-harness scores a multiple-choice task.

The engine computes, once per item, the summed log-probability of each continuation
(``separator`` + option text) and its number of tokens; the results keep both
(``option_logprobs``, ``option_tokens``).  The chosen option is the argmax of

- ``none``: the sum (lm-eval's ``acc``);
- ``chars``: the sum divided by the option text's length in characters (lm-eval's
  ``acc_norm``);
- ``bytes``: divided by its length in UTF-8 bytes (lm-eval's ``acc_bytes``);
- ``tokens``: divided by its number of tokens (the mean per-token log-likelihood).

The lengths are the option text's, without the separator, as lm-eval counts them.  The
normalisation is not part of the request: ``loglik(normalize = none) + loglik(normalize =
chars)`` computes each item once and reads it two ways, and each result row names its
normalisation in the ``normalize`` column, which metrics group by.
"""

from __future__ import annotations

import math

from .base import AnswerKind, Param

NORMALIZATIONS = ("none", "chars", "bytes", "tokens")
DEFAULT_SEPARATOR = " "
"""lm-eval's ``target_delimiter``."""


def normalized(sums: list[float], tokens: list[float], texts: list[str], how: str) -> list[float]:
    """Each option's score under ``how`` (one of :data:`NORMALIZATIONS`): the sum, or the sum
    per character, byte or token of the option.  A length of 0 leaves the sum as it is."""
    if how == "none":
        return list(sums)
    if how == "tokens":
        lengths = [float(n) for n in tokens]
    elif how == "chars":
        lengths = [float(len(t)) for t in texts]
    elif how == "bytes":
        lengths = [float(len(t.encode("utf-8"))) for t in texts]
    else:
        raise ValueError(f"unknown normalisation {how!r}; one of {', '.join(NORMALIZATIONS)}")
    return [s / n if n > 0 else s for s, n in zip(sums, lengths)]


def choose(scores: list[float]) -> int:
    """The index of the highest score; the first of a tie (as ``numpy.argmax``)."""
    best = 0
    for i, v in enumerate(scores):
        if v > scores[best]:
            best = i
    return best


def softmax(scores: list[float]) -> list[float]:
    top = max(scores)
    if top == -math.inf:
        return [1.0 / len(scores)] * len(scores)
    exps = [math.exp(v - top) for v in scores]
    total = sum(exps)
    return [e / total for e in exps]


LOGLIK = AnswerKind(
    name="loglik",
    summary="the log-likelihood of each option text as a continuation of the prompt (as lm-evaluation-harness scores multiple choice)",
    provides={"choice": 2, "probs": 1},
    params=(
        Param("normalize", "choice", "how options are compared: none (the summed log-likelihood, lm-eval's acc), chars (per character, lm-eval's acc_norm), bytes (per UTF-8 byte, acc_bytes) or tokens (per token)", default="none", choices=NORMALIZATIONS),
        Param("separator", "text", "the text between the prompt and each option (lm-eval's target_delimiter)", default=DEFAULT_SEPARATOR),
    ),
    needs_options=True,
    engine_order=1,
    request_options="texts",
    # 2: the continuation is tokenized as lm-eval does (the prompt's trailing whitespace moves
    # into it, and it is split off the whole text's tokens), and the separator is part of it.
    request_rule=2,
).register()
