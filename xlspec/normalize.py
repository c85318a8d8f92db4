"""Answer normalisation, right for the language of the answer.

``normalize_answer(text, lang)`` is what exact match and token F1 compare.  In order:

1. Unicode NFKC (full-width forms, ligatures, Arabic presentation forms -> base letters).
2. Case folding (``str.casefold``); for Turkish and Azerbaijani the dotted/dotless i are
   folded the Turkish way first (``I`` -> ``ı``, ``İ`` -> ``i``).
3. Format characters (Unicode category ``Cf``: zero-width joiner/non-joiner, bidi marks,
   soft hyphen, BOM) are removed.
4. Arabic-script languages (ar, fa, ur, ps, sd, ug, ckb, ks): tatweel (U+0640) and harakat
   (U+064B-U+065F, superscript alef U+0670, Quranic marks U+06D6-U+06ED) are removed; for
   Persian and Urdu the Arabic yeh/kaf (ي ك, and alef maqsura ى) become the Persian forms
   (ی ک), for Arabic the Persian forms become the Arabic ones.
5. Every decimal digit of any script (``unicodedata.decimal``: Arabic-Indic ``٣``, Persian
   ``۳``, Devanagari ``३`` ...) becomes its ASCII digit.
6. Apostrophe variants become ``'``; elided articles (fr/ca ``l'``, it ``l'`` ``un'``) are
   removed.
7. Punctuation (every ``P*`` category: ASCII, CJK ``。、「」``, Arabic ``، ؟ ؛``, Spanish
   ``¿ ¡`` ...) and the symbol categories ``Sc`` (currency), ``Sk`` (modifiers) and ``So``
   (other symbols, emoji, ``°``) are deleted, as in the SQuAD/MLQA scripts (deleted, not
   replaced by a space: ``1,000`` -> ``1000``).  Math symbols (``Sm``: ``+ = < >``) are kept.
8. Articles of the language are removed as whole words (small table below; languages
   without articles, or not in the table, keep every word; Arabic's prefixed ``ال`` is kept).
9. Whitespace collapsed to single spaces, stripped.

``tokenize(text, lang)`` splits a normalised answer for token F1: on whitespace, and every
character of a script written without spaces (Han, Hiragana, Katakana, Thai, Lao, Khmer,
Myanmar, Tibetan) is a token by itself (combining marks stay with their base character).
Korean Hangul is written with spaces and keeps word tokens.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache

__all__ = [
    "normalize_answer",
    "normalize_label",
    "tokenize",
    "base_language",
    "ascii_digits",
    "ARTICLES",
]

ARABIC_SCRIPT = frozenset({"ar", "fa", "ur", "ps", "sd", "ug", "ckb", "ks"})

ARTICLES: dict[str, tuple[str, ...]] = {
    "en": ("a", "an", "the"),
    "fr": ("le", "la", "les", "un", "une", "des"),
    "de": ("der", "die", "das", "den", "dem", "des", "ein", "eine", "einen", "einem", "einer", "eines"),
    "es": ("el", "la", "los", "las", "un", "una", "unos", "unas"),
    "it": ("il", "lo", "la", "i", "gli", "le", "un", "uno", "una"),
    "pt": ("o", "a", "os", "as", "um", "uma", "uns", "umas"),
    "ca": ("el", "la", "els", "les", "un", "una", "uns", "unes"),
    "nl": ("de", "het", "een"),
}
ELIDED: dict[str, tuple[str, ...]] = {"fr": ("l",), "it": ("l", "un"), "ca": ("l",)}

_ARTICLE_RE = {
    lang: re.compile(r"(?<!\w)(?:" + "|".join(map(re.escape, words)) + r")(?!\w)") for lang, words in ARTICLES.items()
}
_ELIDED_RE = {lang: re.compile(r"(?<!\w)(?:" + "|".join(words) + r")'") for lang, words in ELIDED.items()}

_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u00b4": "'", "`": "'"})
_ARABIC_MARKS = re.compile("[\u0640\u064b-\u065f\u0670\u06d6-\u06ed]")
_TO_PERSIAN = str.maketrans({"\u064a": "\u06cc", "\u0643": "\u06a9", "\u0649": "\u06cc"})
_TO_ARABIC = str.maketrans({"\u06cc": "\u064a", "\u06a9": "\u0643"})
_DROP_CATEGORIES = ("P", "Sc", "Sk", "So", "Cf")

# Scripts written without spaces between words: one token per character.
_NO_SPACE = re.compile(
    "["
    "\u3040-\u30ff\u31f0-\u31ff"  # Hiragana, Katakana
    "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003134f"  # Han
    "\u0e00-\u0eff"  # Thai, Lao
    "\u1000-\u109f"  # Myanmar
    "\u1780-\u17ff"  # Khmer
    "\u0f00-\u0fff"  # Tibetan
    "]"
)


def base_language(code: str | None) -> str | None:
    """The primary language subtag, lower case: ``pt-BR`` -> ``pt``, ``zh_Hant`` -> ``zh``."""
    if code is None or not isinstance(code, str) or not code.strip():
        return None
    return re.split(r"[-_]", code.strip(), maxsplit=1)[0].lower()


@lru_cache(maxsize=4096)
def _char_action(ch: str) -> str:
    """What to do with one character: '' delete, a digit, or the character itself."""
    cat = unicodedata.category(ch)
    if cat == "Nd":
        d = unicodedata.decimal(ch, None)
        return ch if d is None else str(d)
    if cat.startswith(_DROP_CATEGORIES):
        return ""
    return ch


def ascii_digits(text: str) -> str:
    """Decimal digits of every script become ASCII digits; nothing else changes."""
    return "".join(str(unicodedata.decimal(c)) if unicodedata.category(c) == "Nd" else c for c in text)


def _fold(text: str, lang: str | None) -> str:
    text = unicodedata.normalize("NFKC", text)
    if lang in ("tr", "az"):
        text = text.replace("I", "\u0131").replace("\u0130", "i")
    return text.casefold()


@lru_cache(maxsize=65536)
def normalize_answer(text: str | None, lang: str | None = None) -> str:
    """Normalise an answer for comparison (see the module docstring for the steps)."""
    if text is None:
        return ""
    lang = base_language(lang)
    text = _fold(str(text), lang)
    if lang in ARABIC_SCRIPT:
        text = _ARABIC_MARKS.sub("", text)
        text = text.translate(_TO_PERSIAN if lang in ("fa", "ur") else _TO_ARABIC if lang == "ar" else {})
    text = text.translate(_APOSTROPHES)
    if lang in _ELIDED_RE:
        text = _ELIDED_RE[lang].sub(" ", text)
    text = "".join(_char_action(c) for c in text)
    if lang in _ARTICLE_RE:
        text = _ARTICLE_RE[lang].sub(" ", text)
    return " ".join(text.split())


def normalize_label(label: object) -> str | None:
    """An option label for comparison: NFKC, ASCII digits, stripped, case-folded.

    ``"٣"`` and ``"3"`` and ``" 3 "`` compare equal; ``"a"`` and ``"A"`` too.  ``None`` stays
    ``None`` (no answer)."""
    if label is None:
        return None
    try:
        if label != label:  # NaN
            return None
    except Exception:  # pragma: no cover - exotic objects
        pass
    return _label(str(label))


@lru_cache(maxsize=4096)
def _label(label: str) -> str:
    return ascii_digits(unicodedata.normalize("NFKC", label)).strip().casefold()


def tokenize(text: str, lang: str | None = None, normalized: bool = False) -> list[str]:
    """Tokens of an answer for token F1 (normalises first unless ``normalized``)."""
    if not normalized:
        text = normalize_answer(text, lang)
    out: list[str] = []
    for word in text.split():
        if not _NO_SPACE.search(word):
            out.append(word)
            continue
        run = ""
        start = len(out)
        for ch in word:
            if unicodedata.category(ch).startswith("M"):
                if run or len(out) == start:
                    run += ch
                else:
                    out[-1] += ch  # a combining mark stays with its base character
            elif _NO_SPACE.match(ch):
                if run:
                    out.append(run)
                    run = ""
                out.append(ch)
            else:
                run += ch
        if run:
            out.append(run)
    return out
