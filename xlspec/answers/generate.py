"""``generate(parser = ...)``: the model writes text; a parser reads the answer from it."""

from .base import AnswerKind, Param

GENERATE = AnswerKind(
    name="generate",
    summary="the model generates text (the mode's max_tokens, temperature, top_p); `parser` reads the answer from it",
    provides={"choice": 0, "text": 0, "parsed": 0},
    params=(Param("parser", "parser", "how the answer is read from the text (default: the option parser matching the labels, or text)"),),
    engine_order=2,
    sampled=True,
).register()
