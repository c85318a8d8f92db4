"""Dataset files: reading JSONL and CSV with errors that name the file and line, hashing.

Shared by the compiler (which checks mappings and counts items) and the runtime (which
renders the prompts).  Records keep the line they came from.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass

from .files import sha256_bytes

FORMATS = ("jsonl", "csv")


class DataError(Exception):
    def __init__(self, path: str, line: int, message: str):
        super().__init__(f"{path}:{line}: {message}")
        self.path, self.line, self.message = path, line, message


@dataclass(frozen=True)
class Record:
    line: int
    fields: dict


def read_records(path: str, fmt: str) -> tuple[list[Record], str]:
    """All records of a data file and the file's sha256.  Raises DataError on bad content
    and OSError when the file cannot be read."""
    with open(path, "rb") as f:
        raw = f.read()
    digest = sha256_bytes(raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise DataError(path, line, "not valid UTF-8") from None
    if fmt == "jsonl":
        return _read_jsonl(path, text), digest
    if fmt == "csv":
        return _read_csv(path, text), digest
    raise DataError(path, 1, f"unknown format {fmt!r}")


def _read_jsonl(path: str, text: str) -> list[Record]:
    out = []
    for n, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(path, n, f"invalid JSON: {e.msg} (column {e.colno})") from None
        if not isinstance(obj, dict):
            raise DataError(path, n, f"expected a JSON object, found {type(obj).__name__}")
        out.append(Record(n, obj))
    return out


def _read_csv(path: str, text: str) -> list[Record]:
    reader = csv.DictReader(io.StringIO(text))
    out = []
    for row in reader:
        if None in row:
            raise DataError(path, reader.line_num, "more values than header columns")
        out.append(Record(reader.line_num, dict(row)))
    return out
