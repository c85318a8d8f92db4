"""Log-likelihood answers read under each normalisation, by hand on three items, and the
metric rows that say which normalisation they used.

Regression: `normalize` once only changed the request id (the engine always took the
softmax of the mean per-token log-likelihood), so `normalize = false` and `true` gave the
same answers and lm-eval's `acc` could not be reproduced."""

from __future__ import annotations

import pandas as pd
import pytest

from xlspec.answers.loglik import NORMALIZATIONS, normalized
from xlspec.items import ItemView
from xlspec.lower import EngineRequest
from xlspec.runtime.engines.base import EngineResult
from xlspec.runtime.metrics import compute_metrics
from xlspec.runtime.scheduler import loglik_maps

# (option texts, summed log-likelihoods, token counts, gold).  The texts' lengths in
# characters and bytes differ ("été": 3 characters, 5 bytes), so each normalisation has a
# choice of its own somewhere.
ITEMS = [
    (["cat", "elephant"], [-4.0, -6.0], [1, 3], "B"),
    (["été", "ete"], [-3.3, -3.0], [2, 1], "A"),
    (["no", "yes"], [-2.0, -2.5], [1, 1], "A"),
]

# worked by hand: the scores per option, then the argmax
#   none:   (-4, -6) A    (-3.3, -3) B          (-2, -2.5) A
#   chars:  (-4/3, -6/8) B  (-1.1, -1) B        (-1, -0.83) B
#   bytes:  (-4/3, -6/8) B  (-3.3/5, -3/3) A    (-1, -0.83) B
#   tokens: (-4, -2) B    (-1.65, -3) A         (-2, -2.5) A
CHOSEN = {"none": "ABA", "chars": "BBB", "bytes": "BAB", "tokens": "BAA"}
ACCURACY = {"none": 1 / 3, "chars": 1 / 3, "bytes": 2 / 3, "tokens": 1.0}


def answer(i: int, normalize: str):
    texts, sums, tokens, gold = ITEMS[i]
    continuations = tuple(" " + t for t in texts)  # the default separator
    req = EngineRequest(request_id=f"r{i}", prompt="Q:", kind="loglik", options=continuations)
    item = ItemView(f"q{i}", {}, ["A", "B"], texts, gold, [gold], None, i + 1)
    result = EngineResult(f"r{i}", option_logprobs=dict(zip(continuations, sums)), option_tokens=dict(zip(continuations, map(float, tokens))))
    return loglik_maps(req, item, result, normalize)


@pytest.mark.parametrize("normalize", NORMALIZATIONS)
def test_each_normalisation_chooses_as_worked_by_hand(normalize):
    chosen = "".join(answer(i, normalize)[3] for i in range(len(ITEMS)))
    assert chosen == CHOSEN[normalize]
    for i in range(len(ITEMS)):
        probs, sums, tokens, label, text = answer(i, normalize)
        # the raw sums and token counts are kept, whatever the normalisation
        assert sums == dict(zip("AB", ITEMS[i][1])) and tokens == dict(zip("AB", map(float, ITEMS[i][2])))
        assert abs(sum(probs.values()) - 1) < 1e-12 and max(probs, key=probs.get) == label
        assert text == ITEMS[i][0]["AB".index(label)]


def test_normalize_changes_the_answer():
    """Fails if `normalize` stops changing the choice (the old bug)."""
    assert len(set(CHOSEN.values())) == len(NORMALIZATIONS)
    assert all("".join(answer(i, n)[3] for i in range(len(ITEMS))) == CHOSEN[n] for n in NORMALIZATIONS)


def test_a_tie_goes_to_the_first_option_as_in_lm_eval():
    assert normalized([-1.0, -1.0], [1, 1], ["a", "b"], "none") == [-1.0, -1.0]
    req = EngineRequest(request_id="t", prompt="Q:", kind="loglik", options=(" a", " b"))
    item = ItemView("t", {}, ["A", "B"], ["a", "b"], "B", ["B"], None, 1)
    result = EngineResult("t", option_logprobs={" a": -1.0, " b": -1.0}, option_tokens={" a": 1.0, " b": 1.0})
    assert loglik_maps(req, item, result, "none")[3] == "A"


def test_metric_rows_name_their_normalisation():
    rows = []
    for normalize in NORMALIZATIONS:
        for i, (_texts, _sums, _tokens, gold) in enumerate(ITEMS):
            probs, sums, tokens, label, _text = answer(i, normalize)
            rows.append({
                "experiment": "e", "study": "s", "model": "m", "dataset": "d", "language": "en", "framing": "f",
                "item_id": f"q{i}", "sample": 0, "answer_kind": "loglik", "normalize": normalize,
                "parsed_answer": label, "gold": gold, "option_probs": list(probs.items()), "error": None,
            })
    out = compute_metrics(pd.DataFrame(rows), [{"name": "accuracy", "args": {}, "by": None, "label": "accuracy"}], ["model", "language", "normalize"], n_boot=10)
    got = {r.normalize: r.value for r in out.itertuples()}
    assert got == pytest.approx(ACCURACY) and set(out["n"]) == {3}


def test_a_refusal_reads_the_loglik_probabilities_of_its_item():
    """An item's generate and loglik answers are one unit (the normalisation, like the answer
    kind, does not split it), so logit_leakage finds the loglik row of a refused answer."""
    base = {"experiment": "e", "study": "s", "model": "m", "dataset": "d", "language": "en", "framing": "f", "sample": 0, "gold": "A", "error": None}
    rows = []
    for i in range(2):
        rows.append(base | {"item_id": f"q{i}", "answer_kind": "generate", "normalize": None, "parsed_answer": None, "refused": True, "response": "I cannot help."})
        rows.append(base | {"item_id": f"q{i}", "answer_kind": "loglik", "normalize": "none", "parsed_answer": "A", "option_probs": [("A", 0.9), ("B", 0.1)]})
    out = compute_metrics(pd.DataFrame(rows), [{"name": "logit_leakage", "args": {}, "by": None, "label": "logit_leakage"}], ["model", "language"], n_boot=10)
    assert list(out["value"]) == [1.0] and list(out["n"]) == [2]
