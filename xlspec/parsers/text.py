"""Free-text parsers: the answer is the text itself.  They never refuse."""

from __future__ import annotations

from .base import Parser


def _text():
    return lambda text, labels: text.strip() or None


def _first_line():
    def parse(text: str, labels: list[str]) -> str | None:
        line = text.strip().split("\n", 1)[0].strip()
        return line or None

    return parse


Parser("text", "the whole generated text, stripped", _text, can_refuse=False).register()
Parser("first_line", "the first non-empty line of the text", _first_line, can_refuse=False).register()
