"""Reading a spec file: what ``xlspec compile`` and ``xlspec fmt`` both read through, so they
accept exactly the same files.

- Only regular files are read (a folder, a device such as ``/dev/zero``, a FIFO or a socket
  is refused before a byte is read, so nothing blocks or reads without end), up to
  :data:`MAX_SPEC_BYTES`.
- The bytes must be UTF-8; the first invalid byte is reported at its line and column.  A
  leading byte-order mark is dropped.
- Line endings are made ``\\n`` (``\\r\\n`` and a lone ``\\r`` both end a line), the one
  convention the parser, the diagnostics printer and the formatter count lines by.  Other
  separators (U+2028, form feed, ...) are characters inside a line.
"""

from __future__ import annotations

from dataclasses import dataclass

from .files import FileReadError, read_regular_file, sha256_bytes

MAX_SPEC_BYTES = 2 * 1024 * 1024


@dataclass(frozen=True)
class Source:
    path: str
    raw: bytes
    text: str
    """The decoded text with every line ending as ``\\n``."""

    @property
    def sha256(self) -> str:
        """The fingerprint a plan records: of the text, so line endings and a byte-order
        mark (a checkout on Windows, ``xlspec fmt``) do not make a plan stale."""
        return sha256_bytes(self.text.encode("utf-8"))


class SourceError(Exception):
    """The file cannot be read as a spec; ``line``/``col`` locate the cause inside the file
    when it is in its content (invalid UTF-8), else they are None."""

    def __init__(self, message: str, line: int | None = None, col: int | None = None):
        super().__init__(message)
        self.message, self.line, self.col = message, line, col


def normalize_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n") if "\r" in text else text


def decode_text(raw: bytes) -> str:
    """Strict UTF-8 (a leading BOM dropped), newlines normalized; SourceError at the first
    invalid byte."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        before = normalize_newlines(raw[: e.start].decode("utf-8"))
        line = before.count("\n") + 1
        col = len(before) - (before.rfind("\n") + 1) + 1
        bad = raw[e.start : e.start + 1].hex()
        raise SourceError(f"not valid UTF-8 (byte 0x{bad}); save the file as UTF-8", line, col) from None
    if text.startswith("\ufeff"):
        text = text[1:]
    return normalize_newlines(text)


def read_source(path: str) -> Source:
    """A spec file's bytes and text; SourceError when it cannot be read as a spec."""
    try:
        raw = read_regular_file(path, MAX_SPEC_BYTES, "spec file")
    except FileReadError as e:
        raise SourceError(e.message) from None
    return Source(path, raw, decode_text(raw))
