"""What every pass shares: the diagnostics sink and small helpers (did-you-mean, spans,
reading plain values out of the syntax tree).

Passes take a :class:`~xlspec.diagnostics.Diagnostics` and append to it; ``error()`` returns
nothing, so a pass reports every problem it finds and goes on.  The value readers here
report a located E014 and return None when the value has the wrong shape.
"""

from __future__ import annotations

import os
import typing
from collections.abc import Iterable
from typing import Any

from .. import ast
from ..diagnostics import Diagnostics, Span, suggest

__all__ = [
    "Diagnostics",
    "did_you_mean",
    "display",
    "expect_bool",
    "expect_choice",
    "expect_int",
    "expect_ints",
    "expect_number",
    "expect_str",
    "expect_strings",
    "items_of",
    "name_of",
    "span_of",
    "string_offset_span",
    "value_type",
    "where",
]


def did_you_mean(word: str, candidates: Iterable[str], fallback: str | None) -> str | None:
    close = suggest(word, candidates)
    return f"did you mean `{close}`?" if close else fallback


def where(span: Span | None) -> str:
    return f"{span.file}:{span.line}:{span.col}" if span else "?"


def span_of(node: Any) -> Span | None:
    return getattr(node, "span", None)


def display(path: str) -> str:
    """Paths in diagnostics: relative to the working directory when inside it."""
    rel = os.path.relpath(path)
    return rel if not rel.startswith("..") else path


def items_of(v: ast.Expr) -> list[ast.Expr]:
    """A list's items, or the value alone: settings take one value or a list of them."""
    return list(v.items) if isinstance(v, ast.ListExpr) else [v]


def name_of(v: ast.Expr) -> str | None:
    """The name a value is, where it is a plain name (``accuracy``, not ``a.b`` or ``a[x]``)."""
    return v.parts[0].text if isinstance(v, ast.Ref) and v.is_name else None


# ---- plain values ----------------------------------------------------------------------------


def value_type(annotation: Any) -> Any:
    """The type a setting's value must have, from its pydantic field's annotation: ``int``
    for ``int | None``; ``dict[str, str]`` stays as it is."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    return args[0] if len(args) == 1 and typing.get_origin(annotation) in (typing.Union, type(int | None)) else annotation


def _named(what: str | None, message: str) -> str:
    """"expected ..." as is, or "`top_p` is ..." when the setting is known."""
    return f"`{what}` is {message}" if what else f"expected {message}"


def expect_int(v: ast.Expr, minimum: int, diags: Diagnostics, what: str | None = None) -> int | None:
    if isinstance(v, ast.Num) and v.is_int and v.value >= minimum:
        return int(v.value)
    diags.error("E014", _named(what, f"a whole number >= {minimum}"), span_of(v))
    return None


def expect_ints(s: ast.Setting | None, minimum: int, diags: Diagnostics) -> list[int] | None:
    """A whole number or a list of them (the bad ones reported and left out)."""
    if s is None:
        return None
    out = [expect_int(i, minimum, diags, s.key.text) for i in items_of(s.value)]
    return [i for i in out if i is not None]


def expect_number(v: ast.Expr, lo: float, hi: float, diags: Diagnostics, what: str | None = None, *, above: bool = False) -> float | None:
    """A number in [lo, hi], or in (lo, hi] with ``above``."""
    if isinstance(v, ast.Num) and (lo < v.value if above else lo <= v.value) and v.value <= hi:
        return v.value
    shown = f"above {lo:g} and at most {hi:g}" if above else f"from {lo:g} to {hi:g}"
    diags.error("E014", _named(what, f"a number {shown}"), span_of(v))
    return None


def expect_bool(v: ast.Expr, diags: Diagnostics, what: str | None = None) -> bool | None:
    if isinstance(v, ast.Bool):
        return v.value
    diags.error("E014", _named(what, "true or false"), span_of(v))
    return None


def expect_str(v: ast.Expr, diags: Diagnostics, what: str | None = None) -> str | None:
    if isinstance(v, ast.Str):
        return v.value
    diags.error("E014", _named(what, "a string"), span_of(v))
    return None


def expect_choice(v: ast.Expr, choices: tuple[str, ...], diags: Diagnostics, what: str | None = None) -> str | None:
    """One of ``choices``, written as a string or a name."""
    text = v.value if isinstance(v, ast.Str) else v.parts[0].text if isinstance(v, ast.Ref) and v.is_name else None
    if text in choices:
        return text
    shown = ", ".join(choices)
    diags.error("E014", _named(what, f"one of {shown}"), span_of(v), hint=did_you_mean(text or "", choices, None) if text else None)
    return None


def expect_strings(s: ast.Setting | None, what: str, diags: Diagnostics) -> list[str] | None:
    """Names or strings, one or a list (``partition = [local, "human translated"]``)."""
    if s is None:
        return None
    out = []
    for i in items_of(s.value):
        if isinstance(i, ast.Ref) and i.is_name:
            out.append(i.parts[0].text)
        elif isinstance(i, ast.Str):
            out.append(i.value)
        else:
            diags.error("E014", f"expected {what} values (names or strings)", span_of(i))
    return out


# ---- spans -----------------------------------------------------------------------------------


def string_offset_span(node: ast.Expr, text: str, offset: int, width: int) -> Span | None:
    """The span of ``text[offset:offset+width]`` (decoded text) inside a one-line string
    literal, mapping escapes back to their source columns; otherwise the whole literal."""
    span = node.span
    if span is None or not isinstance(node, ast.Str):
        return span
    raw = node.raw
    if raw.startswith('"""') or span.line != span.end_line:
        return span
    cols: list[int] = []  # source column of each decoded character
    i, col = 1, span.col + 1
    while i < len(raw) - 1:
        step = 6 if raw.startswith("\\u", i) else 2 if raw[i] == "\\" else 1
        cols.append(col)
        i += step
        col += step
    if offset + width > len(cols):
        return span
    start, last = cols[offset], cols[offset + width - 1]
    return Span(span.file, span.line, start, span.line, last + 1)
