"""Generated text against reference answers (``targets``, else ``gold``), per answer, then
the mean.  The answer is ``parsed_answer`` or else ``response``; answers without a
reference are left out.

- exact_match: max over targets of normalised answer == normalised target (the language's
  normaliser, ``xlspec/normalize.py``).
- token_f1: max over targets of the SQuAD token F1 on ``tokenize`` (per character for
  scripts written without spaces); both empty -> 1, one empty -> 0.
- chrf: sacrebleu ``CHRF()`` sentence score of the raw (stripped) answer against all targets
  (sacrebleu keeps the best reference), per answer, then the mean.  Scale 0-100 as sacrebleu
  and the published tables report it.
"""

from __future__ import annotations

from collections import Counter
from functools import lru_cache

from xlspec.lazy import lazy
from xlspec.normalize import normalize_answer, tokenize

from ..registry import Computation, MetricInfo

np = lazy("numpy")

NEEDS = frozenset({"text", "targets"})


def _text_scores(score):
    """A per-row metric scoring each answer text against its references with
    ``score(text, refs, language)`` (computed once per distinct triple)."""

    def scores(cols, args):
        rows, rank = cols.eligible("text")
        text, langs = cols.text(), cols.languages()
        refs = cols.references(rows)
        s = np.zeros(len(rows))
        c = np.zeros(len(rows))
        memo: dict = {}
        for j, i in enumerate(rows):
            if refs[j]:
                key = (text[i] or "", tuple(refs[j]), langs[i])
                if key not in memo:
                    memo[key] = score(*key)
                c[j] = 1.0
                s[j] = memo[key]
        return rows, s, c, rank

    return Computation(scores=scores)


def _exact_match(hyp, refs, lang):
    h = normalize_answer(hyp, lang)
    return float(any(h == normalize_answer(r, lang) for r in refs))


def token_f1(pred: list[str], gold: list[str]) -> float:
    """SQuAD token F1 between two token lists (both empty: 1; one empty: 0)."""
    if not pred and not gold:
        return 1.0
    if not pred or not gold:
        return 0.0
    common = sum((Counter(pred) & Counter(gold)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(pred), common / len(gold)
    return 2 * precision * recall / (precision + recall)


def _token_f1(hyp, refs, lang):
    h = tokenize(hyp, lang)
    return max(token_f1(h, tokenize(r, lang)) for r in refs)


_CHRF = None


@lru_cache(maxsize=200_000)
def _chrf(hyp: str, refs: tuple[str, ...]) -> float:
    global _CHRF
    if _CHRF is None:
        from sacrebleu.metrics import CHRF

        _CHRF = CHRF()
    return float(_CHRF.sentence_score(hyp, list(refs)).score)


def _register(name: str, summary: str, score, headline_rank: int, share: bool = True) -> MetricInfo:
    return MetricInfo(name=name, summary=summary, needs=NEEDS, per_item=True, share=share, headline_rank=headline_rank, compute=_text_scores(score)).register()


EXACT_MATCH = _register("exact_match", "normalised generated text equals any target (per-language normaliser)", _exact_match, 1)
TOKEN_F1 = _register("token_f1", "token-level F1 against the best target", _token_f1, 3)
CHRF = _register("chrf", "chrF against the targets (sacrebleu)", lambda hyp, refs, lang: _chrf(hyp.strip(), tuple(r.strip() for r in refs)), 4, share=False)
