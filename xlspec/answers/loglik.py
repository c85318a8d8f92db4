"""``loglik(normalize = ...)``: each option text scored as a continuation of the prompt."""

from .base import AnswerKind, Param

LOGLIK = AnswerKind(
    name="loglik",
    summary="the log-likelihood of each option text as a continuation of the prompt",
    provides={"choice": 2, "probs": 1},
    params=(Param("normalize", "bool", "compare options by mean per-token log-likelihood", default=False),),
    needs_options=True,
    engine_order=1,
    request_options="texts",
    identity_args=("normalize",),
).register()
