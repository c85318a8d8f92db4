"""``options``: the probability of each option label at the answer position."""

from .base import AnswerKind

OPTIONS = AnswerKind(
    name="options",
    summary="the probability of each option label (A, B, ... or 1, 2, ...) at the answer position; one forward pass",
    provides={"choice": 1, "probs": 0},
    needs_options=True,
    engine_order=0,
    output_tokens=1,
).register()
