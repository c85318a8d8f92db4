"""``json(field)``: a field of the first JSON object in the text (``a.b`` for nested ones)."""

from __future__ import annotations

import json

from .base import Parser, ParserParam


def _make(field: str):
    path = field.split(".")

    def parse(text: str, labels: list[str]) -> str | None:
        start, end = text.find("{"), text.rfind("}")
        if start < 0 or end <= start:
            return None
        try:
            value = json.loads(text[start : end + 1])
        except (json.JSONDecodeError, RecursionError):
            return None
        for part in path:
            if not isinstance(value, dict) or part not in value:
                return None
            value = value[part]
        return None if value is None else str(value)

    return parse


Parser(
    "json",
    "a field of the JSON object in the text: json(answer), json(verdict.score)",
    _make,
    can_refuse=True,
    params=(ParserParam("field", "field", "the field's name, or a dotted path into nested objects", required=True),),
).register()
