r"""What an answer parser is.

A parser reads the answer from a generated text: ``parse(text, labels) -> str | None``, where
``labels`` are the item's option labels (empty without options).  ``None`` means no answer;
for a parser that ``can_refuse`` (one that looks for an option or a structured field), that
is a refusal or an invalid answer, which ``refusal_rate`` counts.  Parsers of free text
(``text``, ``first_line``) never refuse.

In a spec a parser is a name (``option_letter``) or a call with its arguments
(``regex("\\\\boxed\\{(.+?)\\}")``, ``json(answer)``); the plan records the name and the
arguments, and the runtime builds the parse function from them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..registry import Registry

PARSERS: Registry["Parser"] = Registry("answer parser", "xlspec.parsers")

ParseFn = Callable[[str, list[str]], "str | None"]


@dataclass(frozen=True)
class ParserParam:
    name: str
    kind: str
    """``string`` (a string literal), ``field`` (a name or dotted path, or a string),
    ``names`` (a name or a list of names), ``number`` or ``bool``."""
    summary: str
    required: bool = False
    default: Any = None


class ParserArgError(ValueError):
    """Arguments a parser cannot use (a regex that does not compile); the message says why."""


@dataclass(frozen=True)
class Parser:
    name: str
    summary: str
    make: Callable[..., ParseFn]
    """``make(**args)`` -> the parse function."""
    can_refuse: bool
    params: tuple[ParserParam, ...] = ()
    score_names: Callable[..., list[str]] | None = None
    """A rubric parser: ``score_names(**args)`` -> the scores it reads, and its parse
    function returns a map from each to a number, or to None where the response gives no
    valid value for it (an invalid verdict), or None where it gives nothing to read."""

    def register(self) -> "Parser":
        return PARSERS.register(self.name, self)

    def validate(self, args: dict) -> None:
        """Raise :class:`ParserArgError` when the arguments cannot work."""
        self.make(**args)


def build(name: str | None, args: dict | None = None) -> ParseFn:
    """The parse function a plan's answer entry names (``None``: the text, stripped)."""
    return PARSERS[name or "text"].make(**(args or {}))


def score_names(name: str | None, args: dict | None = None) -> list[str]:
    """The scores a plan's answer entry reads (a rubric parser), else []."""
    info = PARSERS.get(name) if name else None
    if info is None or info.score_names is None:
        return []
    try:
        return list(info.score_names(**(args or {})))
    except (TypeError, ParserArgError):  # arguments the checker refuses (reported there)
        return []


def can_refuse(name: str | None) -> bool:
    """The parser can find no answer (a refusal): it looks for an option or a structure.
    No parser, or an unknown one (the checker reports it), counts as free text."""
    info = PARSERS.get(name) if name else None
    return info is not None and info.can_refuse
