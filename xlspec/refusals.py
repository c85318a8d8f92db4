"""Telling a refusal from an answer that could not be read.

A parser that looks for an option (or a field, or a match) finds nothing in two different
kinds of response: the model declined ("I cannot answer that", "Lo siento, no puedo ...")
or it wrote something else (it repeated the prompt, "¡Hora del concurso!", or answered in
words the parser does not read).  The first is a refusal, the second an unparsable answer;
``refusal_rate`` counts only the first, ``unparsable_rate`` the second.

:func:`is_refusal` looks for a refusal phrase of the response's prompt language or of
English (models often decline in English whatever the language) in the response's first
300 characters, after NFKC normalisation and case folding, with typographic apostrophes read
as ``'``; in scripts that separate words with spaces a phrase matches whole words only.  The phrases are the common opening words of a refusal or an apology, not an
exhaustive list: a response neither a parser nor this list reads stays in the results
(``response``) to classify another way.
"""

from __future__ import annotations

import re
import unicodedata

REFUSAL_PHRASES: dict[str, tuple[str, ...]] = {
    "en": (
        "i cannot", "i can't", "i can not", "i am unable", "i'm unable", "i am not able", "i'm not able",
        "i won't", "i will not", "i'm sorry", "i am sorry", "i apologize", "as an ai", "as a language model",
        "i don't have personal", "i do not have personal", "i don't have opinions", "i do not have opinions",
        "i prefer not", "i'd prefer not", "i would prefer not", "i'd rather not", "i would rather not", "i must decline", "i refuse", "unable to answer", "cannot answer",
        "can't answer", "cannot provide", "can't provide", "not able to provide",
    ),
    "fr": ("je ne peux pas", "je suis désolé", "je suis désolée", "désolé", "en tant qu'ia", "en tant qu'intelligence artificielle", "je ne suis pas en mesure", "je refuse", "je préfère ne pas", "je n'ai pas d'opinion"),
    "es": ("no puedo", "lo siento", "como ia", "como una ia", "como inteligencia artificial", "no estoy en condiciones", "me niego", "prefiero no", "no tengo opiniones"),
    "de": ("ich kann nicht", "ich kann keine", "ich kann dir nicht", "ich kann ihnen nicht", "es tut mir leid", "leider kann ich", "als ki", "ich bin nicht in der lage", "ich möchte nicht", "ich habe keine persönliche"),
    "it": ("non posso", "mi dispiace", "come ia", "in quanto ia", "non sono in grado"),
    "pt": ("não posso", "desculpe", "lamento", "como ia", "como uma ia", "não sou capaz", "não consigo responder"),
    "nl": ("ik kan niet", "het spijt me", "als ai", "sorry, ik"),
    "ar": ("لا أستطيع", "لا استطيع", "لا يمكنني", "عذرًا", "عذراً", "عذرا", "آسف", "كذكاء اصطناعي", "بصفتي ذكاء", "بصفتي نموذج"),
    "fa": ("نمی‌توانم", "نمیتوانم", "نمی توانم", "متأسفم", "متاسفم", "به عنوان یک هوش مصنوعی", "به‌عنوان یک هوش مصنوعی"),
    "tr": ("yapamam", "cevap veremem", "yanıt veremem", "üzgünüm", "bir yapay zeka olarak", "yapay zekâ olarak", "maalesef"),
    "ru": ("я не могу", "извините", "к сожалению", "как ии", "как искусственный интеллект"),
    "zh": ("我不能", "我无法", "抱歉", "对不起", "作为一个人工智能", "作为ai", "作为一个ai"),
    "ja": ("できません", "申し訳", "aiとして"),
    "ko": ("할 수 없습니다", "죄송합니다", "ai로서"),
    "hi": ("मैं नहीं कर सकता", "क्षमा करें", "माफ़ कीजिए"),
}
"""Opening words of a refusal per language (lower case, NFKC)."""

WINDOW = 300
"""How far into the response a refusal phrase is looked for."""


def _fold(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    return text.replace("\u2019", "'").replace("\u2018", "'").replace("\u02bc", "'")


def _spaced(ch: str) -> bool:
    """A letter of a script that separates words with spaces (so a phrase must start or end
    at a word boundary: "als ki" is not the start of "als Kind")."""
    return ch.isalnum() and ord(ch) < 0x2E80


def _pattern(phrase: str) -> "re.Pattern[str]":
    start = r"(?<!\w)" if _spaced(phrase[0]) else ""
    end = r"(?!\w)" if _spaced(phrase[-1]) else ""
    return re.compile(start + re.escape(phrase) + end)


_PATTERNS = {lang: [_pattern(p) for p in phrases] for lang, phrases in REFUSAL_PHRASES.items()}


def is_refusal(response: str | None, language: str | None = None) -> bool:
    """Whether ``response`` declines to answer (a refusal phrase of ``language``, its
    base language for a tag such as ``pt-BR``, or English)."""
    if not response:
        return False
    head = _fold(response[: WINDOW * 2])[:WINDOW]
    base = (language or "").split("-")[0].casefold()
    for lang in dict.fromkeys((base, "en")):
        if any(p.search(head) for p in _PATTERNS.get(lang, ())):
            return True
    return False
