"""A refusal is told apart from an answer the parser cannot read (xlspec/refusals.py)."""

from __future__ import annotations

import pytest

from xlspec.refusals import is_refusal


@pytest.mark.parametrize(
    "text, language",
    [
        ("I cannot answer that.", "en"),
        ("I’m sorry, but as an AI I don’t have personal opinions.", "en"),  # typographic apostrophes
        ("Lo siento, no puedo responder a esa pregunta.", "es"),
        ("Es tut mir leid, aber ich kann nicht antworten.", "de"),
        ("لا أستطيع الإجابة على هذا السؤال.", "ar"),
        ("متأسفم، نمی‌توانم پاسخ دهم.", "fa"),
        ("I can't help with that.", "tr"),  # English refusals count in every language
        ("Je ne peux pas répondre.", "fr-CA"),  # a regional tag reads its base language
    ],
)
def test_refusals_are_found(text, language):
    assert is_refusal(text, language)


@pytest.mark.parametrize(
    "text, language",
    [
        ("¡Hora del concurso! ¿Qué letra es la correcta?", "es"),  # the prompt repeated
        ("The capital of France is Paris.", "en"),
        ("", "en"),
        (None, "en"),
        ("Die Antwort ist Berlin.", "de"),
    ],
)
def test_other_unreadable_answers_are_not_refusals(text, language):
    assert not is_refusal(text, language)


def test_a_phrase_matches_whole_words_only():
    assert not is_refusal("Als Kind lernte ich, dass die Antwort C ist.", "de")
    assert is_refusal("Als KI kann ich das nicht sagen.", "de")
    assert is_refusal("抱歉，我无法回答。", "zh")  # no spaces between words: no boundary needed
