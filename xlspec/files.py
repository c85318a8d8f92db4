"""Files: one way to hash them and one way to write them.

Every file xlspec writes (plans, result tables, answer files, manifests, reports) goes to a
temporary name in the same folder and is renamed into place, so a reader, or a run that
crashes half-way, never sees half a file.
"""

from __future__ import annotations

import hashlib
import os
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
