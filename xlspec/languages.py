"""Language codes: validation against ISO 639 / BCP-47 (langcodes) and suggestions.

A spec must use the canonical short tag (``ar``, not ``arb`` or ``ara``; ``zh-Hant`` is
fine), so that the same language is spelt one way in plans, results and reports.

langcodes takes about 50 ms to import and its name data about 2 ms a language on first
use, a large share of compiling a 40-language spec.  Answers are therefore kept in a small
JSON file in the xlspec cache folder (``$XLSPEC_CACHE``, default ``~/.cache/xlspec``),
named after the installed langcodes and language_data files and xlspec's version, so a new
release of any of them starts a new file; a compile that finds every answer there does not import langcodes.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import importlib.util
import json
import os

from .lazy import lazy

langcodes = lazy("langcodes")


class _AnswerCache:
    """Results of the functions below by call, read from and written back to one file."""

    def __init__(self) -> None:
        self.entries: dict[str, object] | None = None
        self.dirty = False
        self.path: str | None = None

    def _load(self) -> dict:
        if self.entries is None:
            self.entries = {}
            self.path = _cache_path()
            if self.path:
                try:
                    with open(self.path, encoding="utf-8") as f:
                        data = json.load(f)
                    if isinstance(data, dict):
                        self.entries = data
                except (OSError, ValueError):
                    pass
            atexit.register(self.save)
        return self.entries

    def get(self, key: str, compute):
        entries = self._load()
        if key not in entries:
            entries[key] = compute()
            self.dirty = True
        return entries[key]

    def save(self) -> None:
        if not (self.dirty and self.path):
            return
        try:
            from .files import atomic_write_text

            atomic_write_text(self.path, json.dumps(self.entries, ensure_ascii=False, sort_keys=True))
            self.dirty = False
        except OSError:
            pass  # a read-only cache folder only costs speed


def _cache_path() -> str | None:
    stamp = []
    for module in ("langcodes", "language_data"):
        spec = importlib.util.find_spec(module)
        if spec is None or spec.origin is None:
            return None
        try:
            st = os.stat(spec.origin)
        except OSError:
            return None
        stamp.append(f"{spec.origin}:{st.st_size}:{st.st_mtime_ns}")
    from . import __version__
    from .files import cache_dir

    stamp.append(f"xlspec {__version__}")  # the rules below may change with xlspec
    key = hashlib.sha256("\n".join(stamp).encode()).hexdigest()[:16]
    return os.path.join(cache_dir(), f"languages-{key}.json")


_ANSWERS = _AnswerCache()


def _cached(kind: str):
    """Memoise a function of strings in memory and in the answer cache."""

    def wrap(fn):
        @functools.lru_cache(maxsize=None)
        def cached(*args: str):
            value = _ANSWERS.get(json.dumps([kind, *args]), lambda: fn(*args))
            return tuple(value) if isinstance(value, list) else value

        functools.update_wrapper(cached, fn)
        return cached

    return wrap


@_cached("check_code")
def check_code(code: str) -> tuple[bool, str | None]:
    """(valid, suggestion).  A valid code returns (True, None)."""
    try:
        valid = langcodes.tag_is_valid(code)
    except Exception:  # langcodes raises on some malformed input
        valid = False
    if valid:
        lang = langcodes.Language.get(code)
        known = lang.language not in (None, "und") and not lang.display_name().startswith("Unknown language")
        # macro=True maps individual languages to their macrolanguage (arb, ara -> ar;
        # cmn -> zh), so one language is spelt one way across a study.
        standard = langcodes.standardize_tag(code, macro=True)
        # Canonical tags pass; so do two-letter ISO 639-1 codes that CLDR would spell with
        # three letters (tl -> fil), since datasets use them.  Three-letter codes with a
        # two-letter form (arb, ara -> ar) and deprecated ones (iw -> he) get a suggestion.
        if known and (standard == code or (len(code) == 2 and len(standard.split("-")[0]) > 2)):
            return True, None
        if known and standard != code:
            return False, standard
    # A language name ("english", "Arabic") or a near miss ("arr").
    try:
        found = langcodes.find(code.replace("_", " "))
        return False, langcodes.standardize_tag(found.to_tag())
    except (LookupError, ValueError):  # language_data's name trie can fail to decode odd input
        pass
    from .diagnostics import suggest

    close = suggest(code.lower(), _common_codes(), cutoff=0.5)
    return False, close


@_cached("describe")
def describe(code: str) -> str:
    try:
        return langcodes.Language.get(code).display_name()
    except Exception:
        return code


@_cached("name_in")
def name_in(code: str, in_language: str) -> str:
    """The language's own name as written in ``in_language`` ("Arabic", "العربية")."""
    try:
        return langcodes.Language.get(code).display_name(in_language)
    except Exception:
        return code


@_cached("country_name_in")
def country_name_in(country: str, in_language: str) -> str:
    """The country's name as written in ``in_language`` (EG in ar: "مصر")."""
    try:
        return langcodes.Language.get(f"und-{country}").territory_name(in_language)
    except Exception:
        return country


@_cached("country_is_valid")
def country_is_valid(country: str) -> bool:
    try:
        name = langcodes.Language.get(f"und-{country}").territory_name("en")
    except Exception:
        return False
    return bool(name) and "Unknown" not in name and name != country


@functools.lru_cache(maxsize=1)
def _common_codes() -> tuple[str, ...]:
    # ISO 639-1 two-letter codes langcodes knows, enough for "did you mean".
    out = []
    for a in "abcdefghijklmnopqrstuvwxyz":
        for b in "abcdefghijklmnopqrstuvwxyz":
            code = a + b
            try:
                if langcodes.tag_is_valid(code) and not langcodes.Language.get(code).display_name().startswith("Unknown"):
                    out.append(code)
            except Exception:
                continue
    return tuple(out)
