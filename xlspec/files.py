"""Files: one way to read them, one way to hash them and one way to write them.

A file xlspec reads because a spec or the command line names it (a spec, a data file) is
read by :func:`read_regular_file`: only a regular file, of bounded size, never blocking on a
FIFO and never reading a device.

Every file xlspec writes (plans, result tables, answer files, manifests, reports) goes to a
temporary name in the same folder and is renamed into place, so a reader, or a run that
crashes half-way, never sees half a file.
"""

from __future__ import annotations

import hashlib
import os
import stat
import uuid
from collections.abc import Callable


def cache_dir() -> str:
    """xlspec's cache folder: ``$XLSPEC_CACHE`` if set, else the platform's user cache folder
    for xlspec (``~/.cache/xlspec`` on Linux).  It holds the converted embedded model and the
    compiler's language-name lookups."""
    env = os.environ.get("XLSPEC_CACHE")
    if env:
        return os.path.expanduser(env)
    try:
        import platformdirs
    except ImportError:  # the compiler's own dependencies do not include it
        return os.path.join(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "xlspec")
    return platformdirs.user_cache_dir("xlspec")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def atomic_write(path: str, write: Callable[[str], None]) -> None:
    """Call ``write(tmp_path)``, then rename the temporary file to ``path``."""
    folder = os.path.dirname(path) or "."
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def atomic_write_text(path: str, text: str) -> None:
    def write(tmp: str) -> None:
        with open(tmp, "w", encoding="utf-8", newline="\n") as f:
            f.write(text)

    atomic_write(path, write)


class FileReadError(OSError):
    """A file that cannot be read: ``message`` says why, in words for a user."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = self.strerror = message


class JSONContentError(ValueError):
    """A file that was read but holds no JSON value: ``message`` says why; ``line`` and
    ``col`` locate it where known."""

    def __init__(self, message: str, line: int | None = None, col: int | None = None):
        super().__init__(message)
        self.message, self.line, self.col = message, line, col


def read_json_file(path: str, limit: int, what: str = "file"):
    """The JSON value of a regular file of at most ``limit`` bytes.  FileReadError when the
    file cannot be read; JSONContentError when it is not UTF-8 JSON (invalid, nested too
    deeply, an integer of thousands of digits)."""
    import json

    raw = read_regular_file(path, limit, what)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        raise JSONContentError(f"not UTF-8 text (byte {e.start})", line, e.start - raw.rfind(b"\n", 0, e.start)) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise JSONContentError(f"invalid JSON: {e.msg}", e.lineno, e.colno) from None
    except RecursionError:
        raise JSONContentError("JSON nested too deeply") from None
    except ValueError as e:  # an integer of thousands of digits
        raise JSONContentError(str(e)) from None


def size_text(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB" if n >= 1024 * 1024 else f"{n:,} bytes"


def read_regular_file(path: str, limit: int, what: str = "file", advice: str = "") -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes; :class:`FileReadError`
    otherwise.  The file is opened without blocking and checked (``fstat``) before a byte is
    read.  ``what`` names the file in messages ("a data file"); ``advice`` follows the size
    message."""
    if "\0" in path:
        raise FileReadError("the path contains a NUL character")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise FileReadError("no such file") from None
    except (OSError, ValueError) as e:
        raise FileReadError(getattr(e, "strerror", None) or str(e)) from None
    too_big = f"; a {what} may be at most {size_text(limit)}{advice}"
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise FileReadError(f"is a folder, not a {what}")
        if not stat.S_ISREG(st.st_mode):
            raise FileReadError(f"is not a regular file (a device, pipe or socket); a {what} must be a plain file")
        if st.st_size > limit:
            raise FileReadError(f"is {size_text(st.st_size)}{too_big}")
        chunks, total = [], 0
        while True:
            block = os.read(fd, 1 << 20)
            if not block:
                break
            chunks.append(block)
            total += len(block)
            if total > limit:  # it grew while being read
                raise FileReadError(f"is over {size_text(limit)}{too_big}")
        return b"".join(chunks)
    except FileReadError:
        raise
    except OSError as e:
        raise FileReadError(e.strerror or str(e)) from None
    finally:
        os.close(fd)
