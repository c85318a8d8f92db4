"""Located diagnostics, collected rather than raised one by one.

A :class:`Diagnostic` has a subject span (what the caret points at) and optionally a context
span (the declaration it sits in), a one-line summary, and an optional ``did you mean`` hint.
Every phase appends to a :class:`Diagnostics` list; the CLI prints them all at the end as
``file:line:col``, the source line and a caret, or as JSON with ``--format json``.
"""

from __future__ import annotations

import difflib
import json
from dataclasses import dataclass, field
from typing import Iterable


@dataclass(frozen=True)
class Span:
    """A range in a source file; 1-based lines and columns, end exclusive."""

    file: str
    line: int
    col: int
    end_line: int
    end_col: int

    @classmethod
    def point(cls, file: str, line: int, col: int, width: int = 1) -> "Span":
        return cls(file, line, col, line, col + max(width, 1))

    def to_json(self) -> dict:
        return {"file": self.file, "line": self.line, "col": self.col, "end_line": self.end_line, "end_col": self.end_col}


@dataclass
class Diagnostic:
    code: str
    message: str
    span: Span | None
    severity: str = "error"
    hint: str | None = None
    context: Span | None = None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "severity": self.severity,
            "code": self.code,
            "message": self.message,
            "span": self.span.to_json() if self.span else None,
            "context": self.context.to_json() if self.context else None,
            "hint": self.hint,
            "notes": list(self.notes),
        }


# The kinds of problem the checker reports (E: errors, W: warnings, which still give a plan), with a stable code each (documented in docs/diagnostics.md).
CODES = {
    "E001": "syntax error",
    "E002": "unknown language code",
    "E003": "undefined name",
    "E004": "duplicate name",
    "E005": "framing is missing a language",
    "E006": "template placeholder has no source",
    "E007": "unknown metric",
    "E008": "wrong metric arguments",
    "E009": "metric does not fit the answer kind",
    "E010": "dataset file missing",
    "E011": "dataset lacks a mapped field",
    "E012": "import cycle",
    "E013": "invalid declaration",
    "E014": "invalid setting",
    "E015": "bad data file",
    "E016": "empty cross product",
    "E017": "language without items",
    "E018": "subset or partition selects no item",
    "E019": "file outside the spec's folder",
    "E020": "study reads its own responses",
    "W001": "unused group or metric",
}


class Diagnostics:
    """An ordered collection; ``error()`` appends and returns nothing, so checking goes on."""

    def __init__(self) -> None:
        self.items: list[Diagnostic] = []

    def add(self, diag: Diagnostic) -> None:
        self.items.append(diag)

    def error(self, code: str, message: str, span: Span | None, *, hint: str | None = None, context: Span | None = None, notes: Iterable[str] = ()) -> None:
        self.items.append(Diagnostic(code, message, span, "error", hint, context, list(notes)))

    def warning(self, code: str, message: str, span: Span | None, *, hint: str | None = None) -> None:
        self.items.append(Diagnostic(code, message, span, "warning", hint))

    def merge_duplicates(self) -> None:
        """One diagnostic for each problem found more than once (a framing's placeholder
        checked for each study that uses it): the first, with the notes of all."""
        first: dict[tuple, Diagnostic] = {}
        kept: list[Diagnostic] = []
        for d in self.items:
            key = (d.severity, d.code, d.message, d.span, d.hint, d.context)
            if key in first:
                first[key].notes.extend(n for n in d.notes if n not in first[key].notes)
                continue
            first[key] = d
            kept.append(d)
        self.items = kept

    def extend(self, other: "Diagnostics") -> None:
        self.items.extend(other.items)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity == "error"]

    def has_errors(self) -> bool:
        return any(d.severity == "error" for d in self.items)

    def sorted(self) -> list[Diagnostic]:
        def key(d: Diagnostic):
            s = d.span
            return (s.file, s.line, s.col) if s else ("", 0, 0)

        # Stable: diagnostics at the same place keep the order they were found in.
        return sorted(self.items, key=key)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(self.items)


class CompileError(Exception):
    """Raised by a phase that cannot go on; carries everything collected so far."""

    def __init__(self, diagnostics: Diagnostics):
        super().__init__(f"{len(diagnostics.errors)} error(s)")
        self.diagnostics = diagnostics


def suggest(word: str, candidates: Iterable[str], cutoff: float = 0.6) -> str | None:
    """The closest candidate, for ``did you mean``; case-insensitive, deterministic.

    A candidate must be similar (difflib ratio >= ``cutoff``) and near in edits: at most one
    edit (insertion, deletion, substitution or swap of neighbours) per three characters of
    the word, at least one, so `acuracy` finds `accuracy` but `train` does not find
    `framing`."""
    pool = sorted(set(candidates))
    lowered = {c.lower(): c for c in pool}
    w = word.lower()
    if w in lowered and lowered[w] != word:
        return lowered[w]
    allowed = max(1, len(w) // 3)
    close = [c for c in difflib.get_close_matches(w, list(lowered), n=5, cutoff=cutoff) if edit_distance(w, c) <= allowed or _part_of(w, c)]
    if not close and len(w) >= 3:  # `latency` for `latency_ms`, `letters` for `option_letter`
        close = sorted((c for c in lowered if _part_of(w, c)), key=lambda c: (len(c), c))[:1]
    return lowered[close[0]] if close else None


def _part_of(word: str, candidate: str) -> bool:
    """One is the other's prefix, or a whole ``_``-separated part of it (plural `s` aside)."""
    if len(word) < 3 or len(candidate) < 3:
        return False
    if candidate.startswith(word) or word.startswith(candidate):
        return True
    parts = set(candidate.split("_"))
    return word in parts or word.rstrip("s") in parts


def edit_distance(a: str, b: str) -> int:
    """Optimal string alignment distance: insertions, deletions, substitutions and swaps of
    adjacent characters each cost one."""
    if abs(len(a) - len(b)) > 3:
        return abs(len(a) - len(b))
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        cur = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            cur[j] = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                cur[j] = min(cur[j], prev2[j - 2] + 1)
        prev2, prev = prev, cur
    return prev[len(b)]


class SourceCache:
    """Source texts by file name, for printing the offending line."""

    def __init__(self) -> None:
        self.texts: dict[str, str] = {}

    def add(self, file: str, text: str) -> None:
        self.texts[file] = text

    def line(self, file: str, line: int) -> str | None:
        text = self.texts.get(file)
        if text is None:
            from .files import FileReadError, read_regular_file
            from .source import SourceError, decode_text, normalize_newlines

            try:
                raw = read_regular_file(file, 64 * 1024 * 1024)
            except FileReadError:
                return None
            try:
                text = decode_text(raw)
            except SourceError:
                text = normalize_newlines(raw.decode("utf-8", errors="replace"))
            self.texts[file] = text
        # Lines as the parser counts them: split at "\n" only (text is newline-normalized), so
        # a U+2028 or a form feed inside a comment does not move the caret to another line.
        lines = text.split("\n")
        return lines[line - 1] if 0 < line <= len(lines) else None


_MAX_SHOWN = 100


def render_text(diags: Iterable[Diagnostic], sources: SourceCache, color: bool = False) -> str:
    out: list[str] = []
    for d in diags:
        red, bold, dim, reset = ("\033[31m", "\033[1m", "\033[2m", "\033[0m") if color else ("", "", "", "")
        label = f"{d.severity}[{d.code}]"
        if d.span is None:
            out.append(f"{bold}{red}{label}{reset}: {d.message}")
        else:
            s = d.span
            place = f"{s.file}:{s.line}:{s.col}" if s.col > 0 else f"{s.file}: row {s.line}"  # col 0: a table's row
            out.append(f"{bold}{place}: {red}{label}{reset}{bold}: {d.message}{reset}")
            src = sources.line(s.file, s.line) if s.col > 0 else None
            if src is not None:
                gutter = str(s.line)
                pad = " " * len(gutter)
                width = (s.end_col - s.col) if s.end_line == s.line else len(src) - s.col + 1
                width = max(1, width)
                # Columns count characters; tabs are shown as one space so the caret lines up.
                shown = src.replace("\t", " ")
                col = s.col
                if len(shown) > _MAX_SHOWN:
                    # A long line: show a window around the subject.
                    start = max(0, min(col - 1 - _MAX_SHOWN // 3, len(shown) - _MAX_SHOWN))
                    shown = ("..." if start else "") + shown[start : start + _MAX_SHOWN] + ("..." if start + _MAX_SHOWN < len(shown) else "")
                    col = col - start + (3 if start else 0)
                    width = min(width, _MAX_SHOWN)
                out.append(f"{dim}{pad} |{reset}")
                out.append(f"{dim}{gutter} |{reset} {shown}")
                out.append(f"{dim}{pad} |{reset} {' ' * (col - 1)}{red}{'^' * width}{reset}")
        if d.hint:
            out.append(f"  = help: {d.hint}")
        for note in d.notes:
            out.append(f"  = note: {note}")
        out.append("")
    return "\n".join(out)


def render_json(diags: Iterable[Diagnostic]) -> str:
    return json.dumps({"diagnostics": [d.to_json() for d in diags]}, ensure_ascii=False, indent=2, sort_keys=True)
