"""``ab_verdict``: which of two shown candidates a judge picked: ``A``, ``B`` or ``tie``.

Reads ``[[A]]``, ``[[B]]`` and ``[[C]]`` or ``[[tie]]`` (the MT-Bench convention) anywhere in
the text; else a response that is just the letter (``A``, ``(B)``, ``B.``).  Anything else
is unreadable (a refusal)."""

from __future__ import annotations

import re

from .base import Parser

_BRACKETED = re.compile(r"\[\[\s*(A|B|C|tie)\s*\]\]", re.IGNORECASE)
_BARE = re.compile(r"^\W*(A|B)\W*$", re.IGNORECASE)


def _make():
    def parse(text: str, labels: list[str]) -> str | None:
        m = _BRACKETED.search(text) or _BARE.match(text.strip())
        if m is None:
            return None
        pick = m.group(1).upper()
        return "tie" if pick in ("C", "TIE") else pick

    return parse


Parser(
    "ab_verdict",
    "which of two shown candidates a judge picked: [[A]], [[B]], [[C]] (a tie), or a bare A or B",
    _make,
    can_refuse=True,
).register()
