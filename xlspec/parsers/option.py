"""Option parsers: the first option label the text names."""

from __future__ import annotations

import re

from ..normalize import ascii_digits
from .base import Parser

_DIGITS = re.compile(r"\d+")


def option_numbers(text: str, labels: list[str]) -> list[str]:
    """Every number in the text that is a valid option label, in order (digits of any
    script count: Arabic-Indic ٣ is 3)."""
    return [m.group() for m in _DIGITS.finditer(ascii_digits(text)) if m.group() in labels]


def option_letters(text: str, labels: list[str]) -> list[str]:
    """Every standalone option letter, in order: "B", "(B)", "B.", "Answer: B"; not the "A"
    that starts a sentence such as "A cat ..."."""
    allowed = "".join(re.escape(label) for label in labels)
    if not allowed:
        return []
    pattern = re.compile(rf"(?<![A-Za-z])([{allowed}])(?![A-Za-z])")
    out = []
    for m in pattern.finditer(text):
        after = text[m.end() : m.end() + 2]
        # "A " followed by a lowercase word is an article, not an answer.
        if m.group(1) == "A" and re.match(r" [a-z]", after):
            continue
        out.append(m.group(1))
    return out


def _first(find):
    def make():
        def parse(text: str, labels: list[str]) -> str | None:
            found = find(text, labels)
            return found[0] if found else None

        return parse

    return make


Parser("option_number", "the first number in the text that is an option label (1, 2, ...)", _first(option_numbers), can_refuse=True).register()
Parser("option_letter", "the first standalone option letter (B, (B), B., Answer: B)", _first(option_letters), can_refuse=True).register()
