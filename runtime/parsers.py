"""Answer parsers for generated text.  A parser returns the answer or None (a refusal or an
invalid answer, which metrics count as refused)."""

from __future__ import annotations

import json
import re
import unicodedata

_DIGITS = re.compile(r"\d+")


def _ascii_digits(text: str) -> str:
    """Digits of any script as ASCII (Arabic-Indic ٣ -> 3), so option numbers parse."""
    return "".join(str(unicodedata.decimal(c)) if c.isdecimal() and not c.isascii() else c for c in text)


def option_number(text: str, labels: list[str]) -> str | None:
    """The first number in the text that is a valid option label."""
    for m in _DIGITS.finditer(_ascii_digits(text)):
        if m.group() in labels:
            return m.group()
    return None


def option_letter(text: str, labels: list[str]) -> str | None:
    """The first standalone option letter: "B", "(B)", "B.", "Answer: B"; not the "A" that
    starts a sentence such as "A cat ..."."""
    allowed = "".join(re.escape(label) for label in labels)
    if not allowed:
        return None
    pattern = re.compile(rf"(?<![A-Za-z])([{allowed}])(?![A-Za-z])")
    for m in pattern.finditer(text):
        after = text[m.end() : m.end() + 2]
        # "A " followed by a lowercase word is an article, not an answer.
        if m.group(1) == "A" and re.match(r" [a-z]", after):
            continue
        return m.group(1)
    return None


def first_line(text: str, labels: list[str]) -> str | None:
    line = text.strip().split("\n", 1)[0].strip()
    return line or None


def json_field(field: str):
    def parse(text: str, labels: list[str]) -> str | None:
        start, end = text.find("{"), text.rfind("}")
        if start < 0 or end <= start:
            return None
        try:
            value = json.loads(text[start : end + 1])
        except json.JSONDecodeError:
            return None
        for part in field.split("."):
            if not isinstance(value, dict) or part not in value:
                return None
            value = value[part]
        return None if value is None else str(value)

    return parse


def get(name: str | None):
    if name is None or name in ("text", "first_line"):
        return first_line if name == "first_line" else (lambda text, labels: text.strip() or None)
    if name == "option_number":
        return option_number
    if name == "option_letter":
        return option_letter
    if name.startswith("json:"):
        return json_field(name[5:])
    raise ValueError(f"unknown parser {name!r}")


def can_refuse(name: str | None) -> bool:
    """Whether a parse failure means the model gave no valid option (a refusal)."""
    return bool(name) and (name.startswith("option") or name.startswith("json"))
