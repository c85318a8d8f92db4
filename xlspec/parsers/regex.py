r"""``regex(pattern)``: the first capture group of the first match (the whole match where the
pattern has no group).  For answers in a fixed shape, such as ``\boxed{...}``, written in a
spec (whose strings take ``\\`` for one backslash):
``generate(parser = regex("\\\\boxed\\{([^}]*)\\}"))``.  No match is a refusal."""

from __future__ import annotations

import re

from .base import Parser, ParserArgError, ParserParam


def _make(pattern: str):
    try:
        compiled = re.compile(pattern)
    except re.error as e:
        raise ParserArgError(f"the pattern does not compile: {e}") from None

    def parse(text: str, labels: list[str]) -> str | None:
        m = compiled.search(text)
        if m is None:
            return None
        value = m.group(1) if compiled.groups else m.group(0)
        value = None if value is None else value.strip()
        return value or None

    return parse


Parser(
    "regex",
    "the first capture group of the first match of a regular expression (Python syntax)",
    _make,
    can_refuse=True,
    params=(ParserParam("pattern", "string", "a Python regular expression; its first group is the answer", required=True),),
).register()
