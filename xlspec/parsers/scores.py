r"""Rubric parsers: several named scores from one response, each a column metrics can name
(``mean(grammaticality)``).

- ``json_scores(fields = [grammaticality, fluency], min = 0, max = 4)``: the named numeric
  fields of the first JSON object in the text (``a.b`` for nested ones);
- ``regex_scores("Grammar: (?P<grammaticality>\\d)", min = 0, max = 4)``: the named groups
  of the first match of a regular expression (case-insensitive, ``.`` matches newlines).

A score that is missing, not a number, or outside ``[min, max]`` is an invalid verdict: it is
left out of the score columns and counted (``invalid_rate``), never averaged.  A response
with nothing to read (no JSON object, no match) is a refusal, and every score is invalid.
"""

from __future__ import annotations

import json
import math
import re

from ..normalize import normalize_label
from .base import Parser, ParserArgError, ParserParam


def _number(value, lo: float | None, hi: float | None) -> float | None:
    """A score as a float, or None where it is not a valid one."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        text = normalize_label(value.strip()) or ""
        try:
            value = float(text)
        except (ValueError, OverflowError):
            return None
    if not isinstance(value, (int, float)):
        return None
    try:
        value = float(value)
    except OverflowError:  # an integer too large for a float
        return None
    if math.isnan(value) or math.isinf(value):
        return None
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        return None
    return value


_DECODER = json.JSONDecoder()


def first_json_object(text: str) -> dict | None:
    """The first JSON object in ``text`` (a brace that does not start one is skipped)."""
    at = text.find("{")
    while at >= 0:
        try:
            obj, _end = _DECODER.raw_decode(text, at)
        except (ValueError, RecursionError):  # not JSON here (or numbers too long to read)
            obj = None
        if isinstance(obj, dict):
            return obj
        at = text.find("{", at + 1)
    return None


def _check_range(lo: float | None, hi: float | None) -> None:
    if lo is not None and hi is not None and lo > hi:
        raise ParserArgError(f"min ({lo:g}) is above max ({hi:g})")


def _json_names(fields: list[str], min: float | None = None, max: float | None = None) -> list[str]:  # noqa: A002
    return list(fields)


def _json_make(fields: list[str], min: float | None = None, max: float | None = None):  # noqa: A002
    if not fields:
        raise ParserArgError("name at least one field: json_scores(fields = [fluency, coherence])")
    if len(set(fields)) != len(fields):
        raise ParserArgError("a field is named twice")
    _check_range(min, max)
    paths = [(name, name.split(".")) for name in fields]

    def parse(text: str, labels: list[str]) -> dict | None:
        obj = first_json_object(text)
        if obj is None:
            return None
        out = {}
        for name, path in paths:
            value = obj
            for part in path:
                value = value.get(part) if isinstance(value, dict) else None
            out[name] = _number(value, min, max)
        return out

    return parse


def _compile(pattern: str) -> re.Pattern:
    try:
        compiled = re.compile(pattern, re.IGNORECASE | re.DOTALL)
    except re.error as e:
        raise ParserArgError(f"the pattern does not compile: {e}") from None
    if not compiled.groupindex:
        raise ParserArgError("the pattern names no group: each score is a named group, (?P<fluency>\\d)")
    return compiled


def _regex_names(pattern: str, min: float | None = None, max: float | None = None) -> list[str]:  # noqa: A002
    return list(_compile(pattern).groupindex)


def _regex_make(pattern: str, min: float | None = None, max: float | None = None):  # noqa: A002
    compiled = _compile(pattern)
    _check_range(min, max)
    names = list(compiled.groupindex)

    def parse(text: str, labels: list[str]) -> dict | None:
        m = compiled.search(text)
        if m is None:
            return None
        return {name: _number(m.group(name), min, max) for name in names}

    return parse


_RANGE = (
    ParserParam("min", "number", "the lowest valid score (a lower one is an invalid verdict)"),
    ParserParam("max", "number", "the highest valid score (a higher one is an invalid verdict)"),
)

Parser(
    "json_scores",
    "several named scores from the JSON object in the text: json_scores(fields = [fluency, coherence], min = 0, max = 4)",
    _json_make,
    can_refuse=True,
    params=(ParserParam("fields", "names", "the score fields (a name or a list of names; a.b for nested ones)", required=True), *_RANGE),
    score_names=_json_names,
).register()

Parser(
    "regex_scores",
    "several named scores from the named groups of a regular expression: regex_scores(\"Fluency: (?P<fluency>\\\\d)\", min = 0, max = 4)",
    _regex_make,
    can_refuse=True,
    params=(ParserParam("pattern", "string", "a Python regular expression (case-insensitive); each named group is a score", required=True), *_RANGE),
    score_names=_regex_names,
).register()
