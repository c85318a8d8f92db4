"""language_fidelity: share of generated responses whose language, identified by lingua
(detector built once, lazily, from the requested languages present plus English), is the
requested language (primary subtag of ``language``).  The text is ``response``, else
``parsed_answer``.  Responses lingua cannot place (empty, digits only) or in a language
lingua does not know are left out."""

from __future__ import annotations

from xlspec.lazy import lazy
from xlspec.normalize import base_language

from ..registry import Computation, MetricInfo

np = lazy("numpy")

_DETECTORS: dict[frozenset, object] = {}


def _lingua_language(code: str):
    from lingua import IsoCode639_1, IsoCode639_3, Language

    code = base_language(code)
    try:
        if code and len(code) == 2:
            return Language.from_iso_code_639_1(IsoCode639_1.from_str(code))
        if code and len(code) == 3:
            return Language.from_iso_code_639_3(IsoCode639_3.from_str(code))
    except (ValueError, AttributeError, KeyError):
        return None
    return None


def _detector(languages: frozenset):
    """One lingua detector per set of requested languages (plus English), built on first use."""
    if languages not in _DETECTORS:
        from lingua import Language, LanguageDetectorBuilder

        langs = set(languages) | {Language.ENGLISH}
        if len(langs) < 2:
            langs.add(Language.FRENCH)
        _DETECTORS[languages] = LanguageDetectorBuilder.from_languages(*sorted(langs, key=str)).build()
    return _DETECTORS[languages]


def _scores(cols, args):
    from ..columns import missing, str_codes

    rows, rank = cols.eligible("text")
    resp, parsed = cols.col("response"), cols.col("parsed_answer")
    lang_codes, names = str_codes(cols.col("language")[rows])
    table = [_lingua_language(x) for x in names] + [None]
    present = frozenset(v for v in table if v is not None)
    want = [table[c] for c in lang_codes]
    texts = []
    for i in rows:
        t = resp[i] if not missing(resp[i]) else parsed[i]
        texts.append("" if missing(t) else str(t).strip())
    s = np.zeros(len(rows))
    c = np.zeros(len(rows))
    todo = sorted({t for t, w in zip(texts, want) if t and w is not None})
    if todo and present:
        detected = dict(zip(todo, _detector(present).detect_languages_in_parallel_of(todo)))
        for j in range(len(rows)):
            got = detected.get(texts[j])
            if want[j] is not None and got is not None:
                c[j] = 1.0
                s[j] = float(got == want[j])
    return rows, s, c, rank


LANGUAGE_FIDELITY = MetricInfo(
    name="language_fidelity",
    summary="share of generated answers in the requested language",
    needs=frozenset({"text"}),
    per_item=True,
    share=True,
    headline_rank=5,
    compute=Computation(scores=_scores),
).register()
