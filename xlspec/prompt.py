"""Prompt-rendering rules, shared by the compiler (placeholder checks, estimates) and the
runtime (the prompts themselves).

``RENDER_VERSION`` goes into every cell id: change it whenever a rule here changes the text
a model sees, so plans made before and after never share a cell.

Rules (version 1):
- ``{name}`` is replaced by a field of the item or a variable of the cell; ``{{`` and ``}}``
  are literal braces.
- ``{options}`` lists the options one per line as ``<label>. <text>``.
- A mode's instruction, if any, follows the framed text after a blank line.
- Few-shot examples are the same template rendered for pool items, each followed by its gold
  answer, separated by blank lines, before the question.
"""

from __future__ import annotations

import re

RENDER_VERSION = "1"

_PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def placeholders(template: str) -> list[tuple[str, int]]:
    """(name, offset) of every ``{name}`` in the template, in order.  A malformed one (``{}``,
    ``{a b}``) is returned too, so the checker can point at it."""
    out = []
    for m in _PLACEHOLDER.finditer(template):
        if m.group(1) is not None:
            out.append((m.group(1), m.start()))
    return out


def is_valid_placeholder(name: str) -> bool:
    return bool(_NAME.match(name))


def fill(template: str, values: dict[str, str]) -> str:
    def sub(m: re.Match) -> str:
        token = m.group(0)
        if token == "{{":
            return "{"
        if token == "}}":
            return "}"
        return str(values.get(m.group(1), token))

    return _PLACEHOLDER.sub(sub, template)


def option_labels(n: int, style: str) -> list[str]:
    if style == "letters":
        return [chr(ord("A") + i) for i in range(n)]
    return [str(i + 1) for i in range(n)]


def format_options(options: list[str], labels: list[str]) -> str:
    return "\n".join(f"{label}. {text}" for label, text in zip(labels, options))


def render(template: str, values: dict[str, str], instruction: str | None = None) -> str:
    text = fill(template, values)
    if instruction:
        text = f"{text}\n\n{fill(instruction, values)}"
    return text
