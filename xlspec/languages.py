"""Language codes: validation against ISO 639 / BCP-47 (langcodes) and suggestions.

A spec must use the canonical short tag (``ar``, not ``arb`` or ``ara``; ``zh-Hant`` is
fine), so that the same language is spelt one way in plans, results and reports.
"""

from __future__ import annotations

import functools

import langcodes


@functools.lru_cache(maxsize=None)
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
    except LookupError:
        pass
    from .diagnostics import suggest

    close = suggest(code.lower(), _common_codes(), cutoff=0.5)
    return False, close


@functools.lru_cache(maxsize=None)
def describe(code: str) -> str:
    try:
        return langcodes.Language.get(code).display_name()
    except Exception:
        return code


@functools.lru_cache(maxsize=None)
def name_in(code: str, in_language: str) -> str:
    """The language's own name as written in ``in_language`` ("Arabic", "العربية")."""
    try:
        return langcodes.Language.get(code).display_name(in_language)
    except Exception:
        return code


@functools.lru_cache(maxsize=None)
def country_name_in(country: str, in_language: str) -> str:
    """The country's name as written in ``in_language`` (EG in ar: "مصر")."""
    try:
        return langcodes.Language.get(f"und-{country}").territory_name(in_language)
    except Exception:
        return country


@functools.lru_cache(maxsize=None)
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
