"""Last-match option parsers: the last option label the text names.  Reasoning text mentions
options while it weighs them ("A is wrong because ..."); the final answer comes last."""

from __future__ import annotations

from .base import Parser
from .option import option_letters, option_numbers


def _last(find):
    def make():
        def parse(text: str, labels: list[str]) -> str | None:
            found = find(text, labels)
            return found[-1] if found else None

        return parse

    return make


Parser("last_option_number", "the last number in the text that is an option label", _last(option_numbers), can_refuse=True).register()
Parser("last_option_letter", "the last standalone option letter in the text", _last(option_letters), can_refuse=True).register()
