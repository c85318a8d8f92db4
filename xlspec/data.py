"""Dataset files: reading JSONL and CSV with errors that name the file and line, hashing.

Shared by the compiler (which checks mappings and counts items) and the runtime (which
renders the prompts).  Records keep the line they came from.

What is read, and what is refused before anything is parsed:

- only a regular file (a FIFO, a device such as ``/dev/zero``, a socket or a folder is
  refused before a byte is read, so nothing blocks or reads without end), of at most
  :func:`max_data_bytes` bytes (``XLSPEC_MAX_DATA_MB`` overrides the default);
- UTF-8 text (a leading byte-order mark is dropped); line endings ``\\r\\n`` and ``\\r``
  count as ``\\n``, as the diagnostics printer counts lines;
- JSONL: one JSON object per line, nested at most :data:`MAX_DEPTH` levels deep;
- CSV: a header row, then rows with exactly one value per header column; a quote that is
  never closed is reported at the line where it opened.

Errors in the content are :class:`DataError` (a ``ValueError``) with the line (and column
where known); a file that cannot be read is :class:`DataFileError` (an ``OSError``).
Messages never quote the file's content: the diagnostics printer shows the one line.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
from dataclasses import dataclass

from .files import FileReadError, read_regular_file, sha256_bytes

FORMATS = ("jsonl", "csv")

DEFAULT_MAX_DATA_MB = 1024
"""The largest data file read, in MiB, unless ``XLSPEC_MAX_DATA_MB`` says otherwise."""

MAX_DEPTH = 100
"""The deepest nesting of arrays and objects a JSONL value may have."""


class DataError(ValueError):
    """Bad content: ``line`` (1-based) and ``col`` (1-based, 1 when unknown) locate it."""

    def __init__(self, path: str, line: int, message: str, col: int = 1):
        super().__init__(f"{path}:{line}: {message}")
        self.path, self.line, self.message, self.col = path, line, message, col


class DataFileError(OSError):
    """The file cannot be read as data at all: missing, not a regular file, too large."""

    def __init__(self, path: str, message: str):
        super().__init__(message)
        self.path, self.message = path, message
        self.strerror = message


@dataclass(frozen=True)
class Record:
    line: int
    fields: dict


def max_data_bytes() -> int:
    raw = os.environ.get("XLSPEC_MAX_DATA_MB", "")
    try:
        mb = float(raw) if raw.strip() else DEFAULT_MAX_DATA_MB
    except ValueError:
        mb = DEFAULT_MAX_DATA_MB
    if not math.isfinite(mb):
        mb = DEFAULT_MAX_DATA_MB
    return int(max(mb, 0) * 1024 * 1024)


def read_bytes(path: str, limit: int | None = None) -> bytes:
    """The bytes of a regular data file of at most ``limit`` bytes (default
    :func:`max_data_bytes`); :class:`DataFileError` otherwise.  Never blocks on a FIFO and
    never reads a device: the file is opened without blocking and checked (``fstat``) before
    a byte is read."""
    limit = max_data_bytes() if limit is None else limit
    try:
        return read_regular_file(path, limit, "data file", " (XLSPEC_MAX_DATA_MB raises the limit)")
    except FileReadError as e:
        raise DataFileError(path, e.message) from None


def read_records(path: str, fmt: str) -> tuple[list[Record], str]:
    """All records of a data file and the file's sha256.  Raises :class:`DataError` on bad
    content and :class:`DataFileError` (an ``OSError``) when the file cannot be read."""
    raw = read_bytes(path)
    digest = sha256_bytes(raw)
    text = decode(path, raw)
    if fmt == "jsonl":
        return _read_jsonl(path, text), digest
    if fmt == "csv":
        return _read_csv(path, text), digest
    raise DataError(path, 1, f"unknown format {fmt!r}")


def decode(path: str, raw: bytes) -> str:
    """Strict UTF-8, a leading byte-order mark dropped, line endings as ``\\n``."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        before = raw[: e.start]
        line = before.replace(b"\r\n", b"\n").replace(b"\r", b"\n").count(b"\n") + 1
        raise DataError(path, line, f"not valid UTF-8 (byte 0x{raw[e.start:e.start + 1].hex()}); save the file as UTF-8") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


def line_text(path: str, line: int) -> str | None:
    """One line of a data file as the reader counts lines (for locating a field in it)."""
    try:
        text = decode(path, read_bytes(path))
    except (DataError, DataFileError):
        return None
    lines = text.split("\n")
    return lines[line - 1] if 0 < line <= len(lines) else None


# ---- JSONL -----------------------------------------------------------------------------------


def _read_jsonl(path: str, text: str) -> list[Record]:
    out = []
    for n, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(path, n, f"invalid JSON: {e.msg}", e.colno) from None
        except RecursionError:
            raise DataError(path, n, f"a JSON value nested more than {MAX_DEPTH} levels deep") from None
        except ValueError as e:  # e.g. an integer of thousands of digits
            raise DataError(path, n, f"invalid JSON: {_first_sentence(e)}") from None
        if not isinstance(obj, dict):
            raise DataError(path, n, f"expected a JSON object, found {_json_type(obj)}")
        if line.count("[") + line.count("{") > MAX_DEPTH and _depth(obj) > MAX_DEPTH:
            raise DataError(path, n, f"a JSON value nested more than {MAX_DEPTH} levels deep")
        out.append(Record(n, obj))
    return out


def _first_sentence(e: Exception) -> str:
    return str(e).split(":")[0].split(";")[0]


def _depth(value: object) -> int:
    """How deeply arrays and objects nest in ``value`` (iterative: no recursion limit)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            children = v.values()
        elif isinstance(v, list):
            children = v
        else:
            continue
        deepest = max(deepest, d)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((c, d + 1) for c in children)
    return deepest


def _json_type(value: object) -> str:
    """A value's JSON type, for messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__


json_type = _json_type


# ---- CSV -------------------------------------------------------------------------------------


def _read_csv(path: str, text: str) -> list[Record]:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    out = []
    while True:
        start = reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            raise _csv_error(path, text, start, e) from None
        if not row:
            continue
        if header is None:
            header = row
            seen: dict[str, int] = {}
            for i, name in enumerate(row):
                if name in seen:
                    raise DataError(path, start, f"the header names column `{_short(name)}` twice (columns {seen[name] + 1} and {i + 1})", csv_value_col(text, start, i))
                seen[name] = i
            continue
        if len(row) == 1 and not row[0].strip() and len(header) > 1:
            continue  # a line of blanks
        if len(row) > len(header):
            raise DataError(path, start, f"more values than header columns ({len(row)} values, {len(header)} columns)", csv_value_col(text, start, len(header)))
        if len(row) < len(header):
            missing = ", ".join(f"`{_short(h)}`" for h in header[len(row):][:5]) + (", ..." if len(header) - len(row) > 5 else "")
            raise DataError(path, start, f"fewer values than header columns ({len(row)} values, {len(header)} columns): no value for {missing}")
        out.append(Record(start, dict(zip(header, row))))
    return out


def _csv_error(path: str, text: str, start: int, e: csv.Error) -> DataError:
    msg = str(e)
    if "unexpected end of data" in msg or "field larger than field limit" in msg:
        opened = _open_quote(text, start)
        if opened is not None:
            line, col = opened
            return DataError(path, line, "a quoted value opened here is never closed (a `\"` is missing)", col)
    if "field larger than field limit" in msg:
        msg = f"a value longer than {csv.field_size_limit():,} characters"
    return DataError(path, start, f"invalid CSV: {msg}")


def _line_offset(text: str, line: int) -> int:
    at = 0
    for _ in range(line - 1):
        nl = text.find("\n", at)
        if nl < 0:
            return len(text)
        at = nl + 1
    return at


def _open_quote(text: str, line: int) -> tuple[int, int] | None:
    """(line, col) of a quote that opens a value at or after ``line`` and is never closed."""
    i = _line_offset(text, line)
    field_start = True
    while i < len(text):
        c = text[i]
        if field_start and c == '"':
            j = i + 1
            while True:
                k = text.find('"', j)
                if k < 0:
                    before = text[:i]
                    ln = before.count("\n") + 1
                    return ln, i - (before.rfind("\n") + 1) + 1
                if text.startswith('""', k):
                    j = k + 2
                    continue
                i = k + 1
                break
            field_start = False
            continue
        field_start = c in ",\n"
        i += 1
    return None


def csv_value_col(text: str, line: int, index: int) -> int:
    """The column where the ``index``-th value of the row starting at ``line`` starts, where
    it is on that line (1 otherwise)."""
    at = _line_offset(text, line)
    end = text.find("\n", at)
    return value_col_in_line(text[at:] if end < 0 else text[at:end], index)


def value_col_in_line(src: str | None, index: int) -> int:
    """The column where the ``index``-th comma-separated value of a CSV line starts (1 when
    it is not on the line)."""
    if not src or index <= 0:
        return 1
    i, n, quoted = 0, 0, False
    while i < len(src):
        c = src[i]
        if quoted:
            if c == '"':
                if src.startswith('""', i):
                    i += 2
                    continue
                quoted = False
        elif c == '"':
            quoted = True
        elif c == ",":
            n += 1
            if n == index:
                return min(i + 2, len(src))
        i += 1
    return 1


def json_key_col(line_text: str | None, key: str, sub: str | None = None) -> int:
    """The column of ``"key":`` in a JSONL line (of ``"sub":`` after it, where given and
    found), 1 when not found."""
    if not line_text:
        return 1
    m = re.search(re.escape(json.dumps(key, ensure_ascii=False)) + r"\s*:", line_text)
    if m is None:
        m = re.search(re.escape(json.dumps(key)) + r"\s*:", line_text)
    if m is None:
        return 1
    at = m.start()
    if sub is not None:
        m2 = re.compile(re.escape(json.dumps(sub, ensure_ascii=False)) + r"\s*:").search(line_text, m.end())
        if m2 is not None:
            at = m2.start()
    return at + 1


def _short(value: object, width: int = 40) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    text = text.replace("\n", "\\n")
    return text if len(text) <= width else text[: width - 3] + "..."


short = _short
