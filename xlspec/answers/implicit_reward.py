"""``implicit_reward(a = chosen, b = rejected, reference = sft)``: a DPO model's implicit
reward, ``beta * (log p_policy(response) - log p_reference(response))``.

The study's model is the policy; ``reference`` names another model of the spec (the one the
policy was trained from).  Each candidate is scored as the assistant's answer to the
study's prompt, through each model's own chat template (a model with ``chat = false`` reads
the prompt as is); the log-probability is the sum over the candidate's tokens.  Both models
run in the policy's engine.  The scores are those of :mod:`~xlspec.answers.reward`
(``reward``; or ``reward_a``, ``reward_b``, ``margin`` and ``preference`` for a pair), so
``mean(preference)`` is the DPO model's preference accuracy.  ``beta`` scales the rewards
and leaves the preference as is; it is applied to the stored log-probabilities, so changing
it re-runs nothing.
"""

from .base import AnswerKind, Param
from .reward import CANDIDATE_PARAMS, scores_of

IMPLICIT_REWARD = AnswerKind(
    name="implicit_reward",
    summary="a DPO model's implicit reward: beta * (log p_policy - log p_reference) of the response `a`, or of the candidates `a` and `b`",
    provides={},
    params=(
        *CANDIDATE_PARAMS,
        Param("reference", "model", "the reference model (a model of the spec, on the same engine)"),
        Param("beta", "number", "the DPO beta the rewards are scaled by", default=1.0),
    ),
    engine_order=5,
    request_options="candidates",
    scores_of=scores_of,
).register()


def rewards(answer: dict, logprobs: dict[str, float] | None) -> dict[str, float | None]:
    """Each candidate's implicit reward from the engine's log-probabilities (``a`` and
    ``a@reference``, ``b`` and ``b@reference``)."""
    beta = float((answer.get("args") or {}).get("beta", 1.0))
    logprobs = logprobs or {}
    out: dict[str, float | None] = {}
    for c in ("a", "b"):
        policy, reference = logprobs.get(c), logprobs.get(f"{c}@reference")
        out[c] = None if policy is None or reference is None else beta * (policy - reference)
    return out
