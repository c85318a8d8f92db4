"""The metric library against values worked out by hand from each formula.

The arithmetic behind every expected value is in the comments next to it; nothing is
copied from the library's own output.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from xlspec.runtime.metrics import (
    EPS,
    compute_metrics,
    kendall_tau_b,
    normalize_answer,
    normalize_label,
    tokenize,
)

# MENAValues worked example: human distribution with mean 1*.40 + 2*.42 + 3*.14 + 4*.04
# = .40 + .84 + .42 + .16 = 1.82.
HUMAN_182 = {"1": 0.40, "2": 0.42, "3": 0.14, "4": 0.04}


def row(**kw):
    base = dict(
        experiment="e",
        cell_id="c",
        request_id="r",
        model="m",
        dataset="d",
        item_id="q1",
        language="en",
        country=None,
        framing="neutral",
        mode="direct",
        partition=None,
        subset=None,
        shots=0,
        sample=0,
        answer_kind="generate",
        prompt="p",
        response=None,
        parsed_answer=None,
        refused=False,
        option_logprobs=None,
        option_probs=None,
        gold=None,
        targets=None,
        human=None,
        scale_min=1.0,
        scale_max=4.0,
        error=None,
    )
    base.update(kw)
    if base["response"] is None and base["parsed_answer"] is not None:
        base["response"] = base["parsed_answer"]
    return base


def frame(rows):
    return pd.DataFrame(rows)


def one(out, metric=None, **where):
    sel = out
    if metric is not None:
        sel = sel[sel["metric"] == metric]
    for k, v in where.items():
        sel = sel[sel[k].isna()] if v is None else sel[sel[k] == v]
    assert len(sel) == 1, f"expected one row for {metric} {where}, got\n{sel}"
    return sel.iloc[0]


# ------------------------------------------------------------------------------ normaliser


def test_normalizer_arabic_diacritics_tatweel_and_digits():
    # fatha/damma/shadda/sukun removed: "مُحَمَّد" -> "محمد"; tatweel removed: "عـــربي" -> "عربي"
    assert normalize_answer("مُحَمَّد", "ar") == "محمد"
    assert normalize_answer("عـــربي", "ar") == "عربي"
    # Arabic-Indic digits to ASCII
    assert normalize_answer("٣", "ar") == "3"
    assert normalize_answer("١٢٣ كتاب", "ar") == "123 كتاب"
    # Arabic punctuation: comma and question mark are P*
    assert normalize_answer("نعم، لماذا؟", "ar") == "نعم لماذا"


def test_normalizer_persian_digits_and_letters():
    assert normalize_answer("۱۴۰۲", "fa") == "1402"
    # Arabic yeh/kaf become the Persian letters, so both spellings compare equal
    assert normalize_answer("كتابي", "fa") == normalize_answer("کتابی", "fa")


def test_normalizer_cjk_and_spanish_punctuation():
    assert normalize_answer("北京。", "zh") == "北京"
    assert normalize_answer("「東京」、", "ja") == "東京"
    assert normalize_answer("¿Qué?", "es") == "qué"
    # full-width letters and digits fold to ASCII under NFKC
    assert normalize_answer("ＡＢＣ１", "en") == "abc1"


def test_normalizer_articles_per_language():
    assert normalize_answer("The Eiffel   Tower!", "en") == "eiffel tower"
    assert normalize_answer("an apple", "en") == "apple"
    assert normalize_answer("theater", "en") == "theater"  # whole words only
    assert normalize_answer("L'homme", "fr") == "homme"
    assert normalize_answer("L’Étranger", "fr") == "étranger"
    assert normalize_answer("Die Katze", "de") == "katze"
    assert normalize_answer("los gatos", "es") == "gatos"
    # articles of one language are not removed in another
    assert normalize_answer("die Katze", "en") == "die katze"


def test_tokenize_per_character_for_cjk():
    assert tokenize("北京大学", "zh") == ["北", "京", "大", "学"]
    assert tokenize("iPhone 手机。", "zh") == ["iphone", "手", "机"]
    assert tokenize("The red car", "en") == ["red", "car"]


def test_normalize_label():
    assert normalize_label("٣") == "3"
    assert normalize_label(" A ") == "a"
    assert normalize_label(None) is None


# --------------------------------------------------------------------------------- accuracy


def test_accuracy_generate_and_options():
    rows = [
        # generate: gold 1,2,3,4; parsed 1, 3, refused, ٤ (Arabic-Indic 4) -> right, wrong, wrong, right
        row(item_id="q1", gold="1", parsed_answer="1"),
        row(item_id="q2", gold="2", parsed_answer="3"),
        row(item_id="q3", gold="3", parsed_answer=None, refused=True, response="I cannot answer"),
        row(item_id="q4", gold="4", parsed_answer="٤"),
        # options in another model: argmax 2 (gold 2: right), argmax 1 (gold 3: wrong)
        row(model="m2", answer_kind="options", item_id="q1", gold="2", option_probs={"1": 0.2, "2": 0.5, "3": 0.3}),
        row(model="m2", answer_kind="options", item_id="q2", gold="3", option_probs={"1": 0.6, "2": 0.1, "3": 0.3}),
    ]
    out = compute_metrics(frame(rows), [{"name": "accuracy"}], ["model"], n_boot=200)
    assert one(out, model="m")["value"] == pytest.approx(2 / 4)
    assert one(out, model="m")["n"] == 4
    assert one(out, model="m2")["value"] == pytest.approx(1 / 2)


def test_loglik_row_uses_the_runtime_label_when_given():
    # option_probs keyed by option text (loglik); the runtime's parsed label "B" is the answer
    rows = [row(answer_kind="loglik", gold="B", parsed_answer="B", option_probs={"Paris": 0.7, "Rome": 0.3})]
    out = compute_metrics(frame(rows), [{"name": "accuracy"}], [], n_boot=0)
    assert one(out)["value"] == 1.0


def test_options_plus_generate_prefers_the_parsed_answer():
    # Same item twice: generate parsed "1" (gold 1: right), options argmax "2" (wrong).
    rows = [
        row(item_id="q1", gold="1", parsed_answer="1"),
        row(item_id="q1", gold="1", answer_kind="options", option_probs={"1": 0.1, "2": 0.9}),
    ]
    out = compute_metrics(frame(rows), [{"name": "accuracy"}], ["model"], n_boot=0)
    assert one(out)["value"] == 1.0  # the generate row, not the mean of both
    by_kind = compute_metrics(frame(rows), [{"name": "accuracy"}], ["model", "answer_kind"], n_boot=0)
    assert one(by_kind, answer_kind="generate")["value"] == 1.0
    assert one(by_kind, answer_kind="options")["value"] == 0.0


# ----------------------------------------------------------------------- text metrics


def test_exact_match_max_over_targets_with_language_normaliser():
    rows = [
        row(item_id="q1", response="The Eiffel Tower.", targets=["Eiffel Tower"]),  # 1
        row(item_id="q2", language="ar", response="٣ كُتُب", targets=["3 كتب"]),  # 1 (digits, harakat)
        row(item_id="q3", response="Paris", targets=["London", "paris!"]),  # 1 (second target)
        row(item_id="q4", response="Rome", targets=["Paris"]),  # 0
    ]
    out = compute_metrics(frame(rows), [{"name": "exact_match"}], [], n_boot=0)
    assert one(out)["value"] == pytest.approx(3 / 4)


def test_token_f1_by_hand():
    rows = [
        # pred tokens [big, red, car]; target "red car" -> [red, car]: common 2, P 2/3, R 1,
        # F1 = 2 * 2/3 * 1 / (2/3 + 1) = 0.8; target "a big truck" -> [big, truck]: common 1,
        # P 1/3, R 1/2, F1 = 2 * 1/6 / (5/6) = 0.4; max = 0.8
        row(item_id="q1", response="the big red car", targets=["red car", "a big truck"]),
        # CJK per character: pred [北, 京, 大, 学], target [北, 京]: P 1/2, R 1, F1 = 2/3
        row(item_id="q2", language="zh", response="北京大学", targets=["北京。"]),
    ]
    out = compute_metrics(frame(rows), [{"name": "token_f1"}], [], n_boot=0)
    assert one(out)["value"] == pytest.approx((0.8 + 2 / 3) / 2)


def test_chrf_matches_sacrebleu_corpus_value_for_one_sentence():
    from sacrebleu.metrics import CHRF

    hyp, ref, ref2 = "the cat sat on the mat", "a cat sat on a mat", "the cat is on the mat"
    expected_single = CHRF().corpus_score([hyp], [[ref]]).score
    out = compute_metrics(frame([row(response=hyp, targets=[ref])]), [{"name": "chrf"}], [], n_boot=0)
    assert one(out)["value"] == pytest.approx(expected_single)
    # several targets: the best one (sacrebleu keeps the best-scoring reference)
    best = max(CHRF().corpus_score([hyp], [[r]]).score for r in (ref, ref2))
    out = compute_metrics(frame([row(response=hyp, targets=[ref, ref2])]), [{"name": "chrf"}], [], n_boot=0)
    assert one(out)["value"] == pytest.approx(best)


# ----------------------------------------------------------------------- agreement


def test_agreement_menavalues_worked_example():
    # human mean 1.82, model answer 2, scale 1-4: 1 - |2 - 1.82| / 3 = 1 - 0.18/3 = 0.94
    out = compute_metrics(frame([row(parsed_answer="2", human=HUMAN_182)]), [{"name": "agreement"}], ["model"], n_boot=100)
    r = one(out)
    assert r["value"] == pytest.approx(1 - 0.18 / 3)
    assert round(r["value"], 2) == 0.94
    # one item: the interval is the value itself
    assert r["ci_low"] == pytest.approx(r["value"]) and r["ci_high"] == pytest.approx(r["value"])
    assert r["n"] == 1


def test_agreement_expected_value_from_option_probs():
    # E = 1*.1 + 2*.2 + 3*.3 + 4*.4 = .1 + .4 + .9 + 1.6 = 3.0; 1 - |3.0 - 1.82| / 3 = 1 - 1.18/3
    rows = [row(answer_kind="options", option_probs={"1": 0.1, "2": 0.2, "3": 0.3, "4": 0.4}, human=HUMAN_182)]
    out = compute_metrics(frame(rows), [{"name": "agreement", "args": {"a": "expected"}}], [], n_boot=0)
    assert one(out)["value"] == pytest.approx(1 - 1.18 / 3)


def test_agreement_between_two_languages():
    # q1: en 2, ar 4 -> 1 - 2/3 = 1/3; q2: en 3, ar 3 -> 1; q3 only in en -> not paired
    rows = [
        row(item_id="q1", language="en", parsed_answer="2"),
        row(item_id="q1", language="ar", parsed_answer="4"),
        row(item_id="q2", language="en", parsed_answer="3"),
        row(item_id="q2", language="ar", parsed_answer="3"),
        row(item_id="q3", language="en", parsed_answer="1"),
    ]
    spec = {"name": "agreement", "args": {"pair": {"axis": "language", "a": "en", "b": "ar"}}, "label": "clcs"}
    out = compute_metrics(frame(rows), [spec], ["model", "language"], n_boot=0)
    r = one(out, "clcs")
    assert r["value"] == pytest.approx((1 / 3 + 1) / 2)
    assert r["n"] == 2
    assert r["language"] is None  # the compared axis is folded


# ------------------------------------------------------------------------ divergences


def test_kl_and_js_by_hand():
    P, Q = {"1": 0.5, "2": 0.5}, {"1": 0.25, "2": 0.75}
    # Q smoothed: q' = (q + eps) / (1 + 2 eps)
    q1, q2 = (0.25 + EPS) / (1 + 2 * EPS), (0.75 + EPS) / (1 + 2 * EPS)
    kl = 0.5 * math.log(0.5 / q1) + 0.5 * math.log(0.5 / q2)  # ~ .5 ln 2 + .5 ln(2/3) = 0.1438
    # M = (.375, .625); JS = KL(P||M)/2 + KL(Q||M)/2
    js = 0.5 * (0.5 * math.log(0.5 / 0.375) + 0.5 * math.log(0.5 / 0.625)) + 0.5 * (
        0.25 * math.log(0.25 / 0.375) + 0.75 * math.log(0.75 / 0.625)
    )
    rows = [row(answer_kind="options", option_probs=Q, human=P)]
    out = compute_metrics(frame(rows), [{"name": "kl"}, {"name": "js"}], [], n_boot=0)
    assert one(out, "kl")["value"] == pytest.approx(kl, rel=1e-9)
    assert one(out, "kl")["value"] == pytest.approx(0.1438, abs=1e-4)
    assert one(out, "js")["value"] == pytest.approx(js, rel=1e-9)


def test_kl_is_finite_when_the_model_gives_zero():
    # P = (1, 0), Q = (0, 1): KL = 1 * ln(1 / q1'), q1' = eps / (1 + 2 eps)
    rows = [row(answer_kind="options", option_probs={"1": 0.0, "2": 1.0}, human={"1": 1.0, "2": 0.0})]
    out = compute_metrics(frame(rows), [{"name": "kl"}, {"name": "js"}], [], n_boot=0)
    assert one(out, "kl")["value"] == pytest.approx(math.log((1 + 2 * EPS) / EPS))
    assert one(out, "js")["value"] == pytest.approx(math.log(2))  # disjoint supports: ln 2


def test_arrow_round_trip_maps():
    """Map columns read back from Parquet/Arrow arrive as lists of pairs."""
    import pyarrow as pa

    from xlspec.runtime.schema import RESULTS_SCHEMA

    rows = [
        row(item_id="q1", answer_kind="options", option_probs={"1": 0.25, "2": 0.75}, human={"1": 0.5, "2": 0.5}),
        row(item_id="q2", answer_kind="options", option_probs={"1": 0.6, "2": 0.4}, human={"1": 0.1, "2": 0.9}),
    ]
    data = {name: [r.get(name) for r in rows] for name in RESULTS_SCHEMA.names}
    data["option_probs"] = [list(r["option_probs"].items()) for r in rows]
    data["human"] = [list(r["human"].items()) for r in rows]
    data["targets"] = [None, None]
    table = pa.table(data, schema=RESULTS_SCHEMA)
    via_arrow = compute_metrics(table.to_pandas(), [{"name": "kl"}], [], n_boot=0)
    via_dicts = compute_metrics(frame(rows), [{"name": "kl"}], [], n_boot=0)
    assert one(via_arrow)["value"] == pytest.approx(one(via_dicts)["value"])
    assert np.isfinite(one(via_arrow)["value"])


# ----------------------------------------------------- refusals and logit leakage


def leakage_rows():
    def pair(model, item, refused, probs):
        return [
            row(model=model, item_id=item, refused=refused, parsed_answer=None if refused else "1", response="..."),
            row(model=model, item_id=item, answer_kind="options", option_probs=dict(zip("123", probs))),
        ]

    rows = []
    # m1: three refusals whose top option probabilities are .7, .4 and .5, and one answer:
    # leakage(0.5) = 2/3 (.5 >= .5 counts), refusal rate 3/4
    rows += pair("m1", "q1", True, (0.7, 0.2, 0.1)) + pair("m1", "q2", True, (0.4, 0.3, 0.3))
    rows += pair("m1", "q3", True, (0.25, 0.5, 0.25)) + pair("m1", "q4", False, (0.9, 0.05, 0.05))
    # m2: all refused; tops .9 and .4 -> leakage 1/2, refusal rate 1
    rows += pair("m2", "q1", True, (0.05, 0.9, 0.05)) + pair("m2", "q2", True, (0.2, 0.4, 0.4))
    # m3: no refusals -> leakage undefined
    rows += pair("m3", "q1", False, (0.9, 0.05, 0.05)) + pair("m3", "q2", False, (0.6, 0.2, 0.2))
    return rows


def test_refusal_rate_and_logit_leakage():
    metrics = [{"name": "refusal_rate"}, {"name": "logit_leakage", "args": {"threshold": 0.5}, "label": "leak"}]
    out = compute_metrics(frame(leakage_rows()), metrics, ["model"], n_boot=200)
    assert one(out, "refusal_rate", model="m1")["value"] == pytest.approx(3 / 4)
    assert one(out, "leak", model="m1")["value"] == pytest.approx(2 / 3)
    assert one(out, "leak", model="m1")["n"] == 3
    # all-refused group: refusal rate 1, leakage over both refusals (tops .9 and .4) = 1/2
    assert one(out, "refusal_rate", model="m2")["value"] == 1.0
    assert one(out, "leak", model="m2")["value"] == pytest.approx(1 / 2)
    assert one(out, "leak", model="m2")["n"] == 2
    # no refusals: NaN with n = 0
    r = one(out, "leak", model="m3")
    assert math.isnan(r["value"]) and math.isnan(r["ci_low"]) and r["n"] == 0
    assert one(out, "refusal_rate", model="m3")["value"] == 0.0


def test_threshold_moves_leakage():
    # m1 tops .7 .4 .5: threshold .6 keeps only .7 -> 1/3
    out = compute_metrics(frame(leakage_rows()), [{"name": "logit_leakage", "args": {"threshold": 0.6}}], ["model"], n_boot=0)
    assert one(out, model="m1")["value"] == pytest.approx(1 / 3)


def test_logit_leakage_matches_probabilities_across_samples():
    # generate samples 0 and 1 both refused; the options row exists once (sample 0), top .8
    rows = [
        row(sample=0, refused=True, parsed_answer=None, response="no"),
        row(sample=1, refused=True, parsed_answer=None, response="no"),
        row(sample=0, answer_kind="options", option_probs={"1": 0.8, "2": 0.2}),
    ]
    out = compute_metrics(frame(rows), [{"name": "logit_leakage"}], [], n_boot=0)
    assert one(out)["value"] == 1.0 and one(out)["n"] == 1


def test_all_refused_group_has_no_answer_based_values():
    rows = [row(item_id=f"q{i}", refused=True, parsed_answer=None, gold="1", human=HUMAN_182, response="no") for i in range(3)]
    out = compute_metrics(frame(rows), [{"name": "accuracy"}, {"name": "agreement"}], ["model"], n_boot=100)
    assert one(out, "accuracy")["value"] == 0.0  # a refusal is a wrong answer
    agr = one(out, "agreement")
    assert math.isnan(agr["value"]) and agr["n"] == 0


def test_error_rows_are_left_out():
    rows = [
        row(item_id="q1", gold="1", parsed_answer="1"),
        row(item_id="q2", gold="1", parsed_answer=None, refused=True, error="CUDA out of memory"),
    ]
    out = compute_metrics(frame(rows), [{"name": "accuracy"}, {"name": "refusal_rate"}], [], n_boot=0)
    assert one(out, "accuracy")["value"] == 1.0 and one(out, "accuracy")["n"] == 1
    assert one(out, "refusal_rate")["value"] == 0.0


# ---------------------------------------------------------------------- consistency


def test_consistency_over_language():
    rows = [
        row(item_id="q1", language="en", parsed_answer="1"),
        row(item_id="q1", language="ar", parsed_answer="1"),  # same: consistent
        row(item_id="q2", language="en", parsed_answer="2"),
        row(item_id="q2", language="ar", parsed_answer="3"),  # differs
        row(item_id="q3", language="en", parsed_answer=None, refused=True, response="no"),
        row(item_id="q3", language="ar", parsed_answer=None, refused=True, response="لا"),  # refused both: same
        row(item_id="q4", language="en", parsed_answer="4"),  # one language only: left out
    ]
    out = compute_metrics(frame(rows), [{"name": "consistency", "args": {"over": "language"}}], ["model", "language"], n_boot=0)
    r = one(out)
    assert r["value"] == pytest.approx(2 / 3)
    assert r["n"] == 3
    assert r["language"] is None


def test_consistency_units_keep_other_axes_apart():
    # country EG compares en/ar, country IR compares en/fa; each is its own unit of item q1
    rows = [
        row(country="EG", language="en", parsed_answer="1"),
        row(country="EG", language="ar", parsed_answer="1"),  # consistent
        row(country="IR", language="en", parsed_answer="2"),
        row(country="IR", language="fa", parsed_answer="3"),  # not
    ]
    out = compute_metrics(frame(rows), [{"name": "consistency", "args": {"over": "language"}}], ["model"], n_boot=0)
    assert one(out)["value"] == pytest.approx(1 / 2)
    assert one(out)["n"] == 1  # one item behind the value


# ------------------------------------------------------------------------------ parity


def parity_rows():
    rows = []
    # accuracy per language: en 3/4, fr 2/4, de 1/4
    for lang, right in (("en", 3), ("fr", 2), ("de", 1)):
        for i in range(4):
            rows.append(row(item_id=f"q{i}", language=lang, gold="1", parsed_answer="1" if i < right else "2"))
    # ja: rows without gold -> accuracy undefined there
    rows.append(row(item_id="q0", language="ja", parsed_answer="1"))
    return rows


def test_parity_gap_and_std():
    metrics = [{"name": "parity_gap", "args": {"metric": "accuracy"}}, {"name": "parity_std", "args": {"metric": "accuracy"}}]
    out = compute_metrics(frame(parity_rows()), metrics, ["model", "language"], n_boot=200)
    # gap = .75 - .25 = .5 ; std (ddof=0) = sqrt(((.25)^2 + 0 + (.25)^2) / 3) = sqrt(.125 / 3)
    assert one(out, "parity_gap(metric=accuracy)")["value"] == pytest.approx(0.5)
    assert one(out, "parity_std(metric=accuracy)")["value"] == pytest.approx(math.sqrt(0.125 / 3))
    assert one(out, "parity_gap(metric=accuracy)")["n"] == 4


def test_pivot_delta_and_languages_without_items():
    out = compute_metrics(
        frame(parity_rows()),
        [{"name": "accuracy"}, {"name": "pivot_delta", "args": {"metric": "accuracy", "pivot": "en"}, "label": "pd"}],
        ["model", "language"],
        n_boot=200,
    )
    # fr - en = .5 - .75 = -.25 ; de - en = .25 - .75 = -.5
    assert one(out, "pd", language="fr")["value"] == pytest.approx(-0.25)
    assert one(out, "pd", language="de")["value"] == pytest.approx(-0.5)
    assert len(out[(out["metric"] == "pd") & (out["language"] == "en")]) == 0
    # a language with no items at all (sw) gives no row
    assert len(out[out["language"] == "sw"]) == 0
    # a language whose rows define no value (ja: no gold) gives NaN with n = 0
    ja = one(out, "accuracy", language="ja")
    assert math.isnan(ja["value"]) and ja["n"] == 0
    ja_pd = one(out, "pd", language="ja")
    assert math.isnan(ja_pd["value"]) and ja_pd["n"] == 0


def test_pivot_delta_adds_the_language_column():
    out = compute_metrics(frame(parity_rows()), [{"name": "pivot_delta", "args": {"metric": "accuracy"}}], ["model"], n_boot=0)
    assert list(out.columns) == ["metric", "model", "language", "value", "ci_low", "ci_high", "n"]
    assert one(out, language="de")["value"] == pytest.approx(-0.5)


# ------------------------------------------------------------------------------- delta


def test_delta_paired_by_item():
    rows = [
        # q1: direct 2 -> 1 - .18/3 = .94 ; reason 3 -> 1 - 1.18/3 = .60667 ; difference 1/3
        row(item_id="q1", mode="direct", parsed_answer="2", human=HUMAN_182),
        row(item_id="q1", mode="reason", parsed_answer="3", human=HUMAN_182),
        # q2: human mean 1; direct 1 -> 1 ; reason 4 -> 1 - 3/3 = 0 ; difference 1
        row(item_id="q2", mode="direct", parsed_answer="1", human={"1": 1.0}),
        row(item_id="q2", mode="reason", parsed_answer="4", human={"1": 1.0}),
        # q3 only under direct: not paired, left out
        row(item_id="q3", mode="direct", parsed_answer="4", human={"1": 1.0}),
    ]
    spec = {"name": "delta", "args": {"metric": "agreement", "pair": {"axis": "mode", "a": "direct", "b": "reason"}}, "label": "deg"}
    out = compute_metrics(frame(rows), [spec], ["model", "mode"], n_boot=300)
    r = one(out, "deg")
    assert r["value"] == pytest.approx((1 / 3 + 1) / 2)
    assert r["n"] == 2
    assert r["mode"] is None
    # paired resampling: each resample is a mean of the two per-item differences 1/3 and 1
    assert 1 / 3 - 1e-9 <= r["ci_low"] <= r["value"] <= r["ci_high"] <= 1 + 1e-9


def test_delta_of_disjoint_subsets_is_unpaired():
    rows = [
        # cs: i1 right, i2 wrong -> accuracy 1/2 ; ca: i3 right -> 1 ; no item in both
        row(item_id="i1", subset="cs", parsed_answer="A", gold="A"),
        row(item_id="i2", subset="cs", parsed_answer="B", gold="A"),
        row(item_id="i3", subset="ca", parsed_answer="C", gold="C"),
    ]
    spec = {"name": "delta", "args": {"metric": "accuracy", "pair": {"axis": "subset", "a": "cs", "b": "ca"}}, "label": "d"}
    r = one(compute_metrics(frame(rows), [spec], ["model", "subset"], n_boot=0), "d")
    assert r["value"] == pytest.approx(0.5 - 1.0)
    assert r["n"] == 3


def test_delta_names_another_metric_by_label():
    rows = [
        # expected values: direct E = 2*1 = 2 ; reason E = 1*.5 + 4*.5 = 2.5 ; human mean 1.82
        # agreement(expected): direct 1 - .18/3 ; reason 1 - .68/3 ; delta = .5/3
        row(answer_kind="options", mode="direct", option_probs={"2": 1.0}, human=HUMAN_182),
        row(answer_kind="options", mode="reason", option_probs={"1": 0.5, "4": 0.5}, human=HUMAN_182),
    ]
    metrics = [
        {"name": "agreement", "args": {"a": "expected"}, "label": "agree_exp"},
        {"name": "delta", "args": {"metric": "agree_exp", "pair": {"axis": "mode", "a": "direct", "b": "reason"}}, "label": "d"},
    ]
    out = compute_metrics(frame(rows), metrics, ["model"], n_boot=0)
    assert one(out, "d")["value"] == pytest.approx(0.5 / 3)


# ---------------------------------------------------------------------- rank stability


def rank_rows(acc_a, acc_b):
    """Two items per model and condition; acc in {0, .5, 1} -> that many right answers."""
    rows = []
    for side, accs in (("full", acc_a), ("cs", acc_b)):
        for m, acc in enumerate(accs):
            for i in range(2):
                rows.append(row(model=f"m{m}", subset=side, item_id=f"q{i}", gold="1", parsed_answer="1" if i < acc * 2 else "2"))
    return rows


@pytest.mark.parametrize(
    "acc_a, acc_b, tau, inversions",
    [
        # reversed ranking: all 3 pairs discordant: tau = (0 - 3) / 3 = -1
        ((1.0, 0.5, 0.0), (0.0, 0.5, 1.0), -1.0, 3),
        # pairs (m0,m1) C, (m0,m2) C, (m1,m2) D: tau = (2 - 1) / 3
        ((1.0, 0.5, 0.0), (1.0, 0.0, 0.5), 1 / 3, 1),
        # m1 and m2 tied under a: C = 2, D = 0, n0 = 3, ties in x 1, in y 0:
        # tau_b = 2 / sqrt((3 - 1)(3 - 0)) = 2 / sqrt(6)
        ((1.0, 0.5, 0.5), (1.0, 0.5, 0.0), 2 / math.sqrt(6), 0),
    ],
)
def test_rank_stability_by_hand(acc_a, acc_b, tau, inversions):
    spec = {"name": "rank_stability", "args": {"metric": "accuracy", "pair": {"axis": "subset", "a": "full", "b": "cs"}}, "label": "rs"}
    out = compute_metrics(frame(rank_rows(acc_a, acc_b)), [spec], ["model", "subset"], n_boot=100)
    assert one(out, "rs.tau")["value"] == pytest.approx(tau)
    assert one(out, "rs.inversions")["value"] == inversions
    assert one(out, "rs.tau")["model"] is None


def test_kendall_tau_b_matches_scipy():
    import scipy.stats as scipy_stats  # a test dependency (pyproject [test])

    rng = np.random.default_rng(3)
    for _ in range(20):
        x = rng.integers(0, 4, 7).astype(float)
        y = rng.integers(0, 4, 7).astype(float)
        ours, _ = kendall_tau_b(x, y)
        theirs = scipy_stats.kendalltau(x, y).statistic
        assert (math.isnan(ours) and math.isnan(theirs)) or ours == pytest.approx(theirs)


# -------------------------------------------------------------------- language fidelity


def test_language_fidelity():
    rows = [
        row(item_id="q1", language="en", response="The weather is lovely today and I am going for a long walk."),
        row(item_id="q1", language="ar", response="This is an English answer to a question that was asked in Arabic."),
        row(item_id="q2", language="ar", response="الطقس جميل اليوم وسأذهب في نزهة طويلة في الحديقة"),
        row(item_id="q3", language="ar", response="2"),  # digits only: lingua cannot tell, left out
    ]
    out = compute_metrics(frame(rows), [{"name": "language_fidelity"}], ["language"], n_boot=0)
    assert one(out, language="en")["value"] == 1.0
    assert one(out, language="ar")["value"] == pytest.approx(1 / 2)
    assert one(out, language="ar")["n"] == 2
    overall = compute_metrics(frame(rows), [{"name": "language_fidelity"}], [], n_boot=0)
    assert one(overall)["value"] == pytest.approx(2 / 3)


# ------------------------------------------------------------------------------ bootstrap


def bernoulli_rows(rng, p, n_items, models, samples=1):
    rows = []
    for m in range(models):
        right = rng.random((n_items, samples)) < p
        for i in range(n_items):
            for k in range(samples):
                rows.append(row(model=f"t{m}", item_id=f"q{i}", sample=k, gold="1", parsed_answer="1" if right[i, k] else "2"))
    return rows


def test_bootstrap_is_seeded_and_reproducible():
    df = frame(bernoulli_rows(np.random.default_rng(0), 0.4, 50, 3))
    a = compute_metrics(df, [{"name": "accuracy"}], ["model"], seed=7, n_boot=300)
    b = compute_metrics(df, [{"name": "accuracy"}], ["model"], seed=7, n_boot=300)
    c = compute_metrics(df, [{"name": "accuracy"}], ["model"], seed=8, n_boot=300)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["ci_low"].to_numpy(), c["ci_low"].to_numpy()) or not np.allclose(
        a["ci_high"].to_numpy(), c["ci_high"].to_numpy()
    )
    assert (a["ci_low"] <= a["value"]).all() and (a["value"] <= a["ci_high"]).all()
    # a group's interval does not depend on the other groups in the table
    only_t0 = compute_metrics(df[df["model"] == "t0"], [{"name": "accuracy"}], ["model"], seed=7, n_boot=300)
    assert one(only_t0)["ci_low"] == one(a, model="t0")["ci_low"]
    assert one(only_t0)["ci_high"] == one(a, model="t0")["ci_high"]


def test_bootstrap_does_not_depend_on_threads():
    # continuous per-item values (KL) take the index-resampling path; 8 groups use the pool
    rng = np.random.default_rng(5)
    rows = [
        row(model=f"m{m}", item_id=f"q{i}", answer_kind="options", option_probs=dict(zip("123", rng.dirichlet([1, 1, 1]))), human=dict(zip("123", rng.dirichlet([1, 1, 1]))))
        for m in range(8)
        for i in range(30)
    ]
    import xlspec.runtime.metrics.bootstrap as lib

    saved = lib._workers
    try:
        lib._workers = lambda: 1
        serial = compute_metrics(frame(rows), [{"name": "kl"}], ["model"], seed=3, n_boot=200)
        lib._workers = lambda: 4
        threaded = compute_metrics(frame(rows), [{"name": "kl"}], ["model"], seed=3, n_boot=200)
    finally:
        lib._workers = saved
    pd.testing.assert_frame_equal(serial, threaded)
    assert (serial["ci_low"] < serial["value"]).all() and (serial["value"] < serial["ci_high"]).all()


@pytest.mark.parametrize("samples", [1, 2])
def test_bootstrap_coverage_bernoulli(samples):
    # samples = 1: every item right or wrong (binomial shortcut); samples = 2: items score
    # 0, 1 or 2 of 2 (index resampling).  Either way the item mean estimates p.
    p, n_items, trials = 0.3, 100, 200
    df = frame(bernoulli_rows(np.random.default_rng(12345 + samples), p, n_items, trials, samples))
    out = compute_metrics(df, [{"name": "accuracy"}], ["model"], seed=1, n_boot=500)
    assert len(out) == trials and (out["n"] == n_items).all()
    covered = ((out["ci_low"] <= p) & (p <= out["ci_high"])).mean()
    assert 0.88 <= covered <= 0.99, covered
    # width as the normal approximation predicts: 2 * 1.96 * sqrt(p (1 - p) / (n_items * samples))
    width = 2 * 1.96 * math.sqrt(p * (1 - p) / (n_items * samples))
    assert (out["ci_high"] - out["ci_low"]).mean() == pytest.approx(width, rel=0.15)


def test_output_columns_and_validation():
    df = frame([row(gold="1", parsed_answer="1")])
    out = compute_metrics(df, [{"name": "accuracy"}], ["model", "framing"], n_boot=0)
    assert list(out.columns) == ["metric", "model", "framing", "value", "ci_low", "ci_high", "n"]
    with pytest.raises(ValueError):
        compute_metrics(df, [{"name": "no_such_metric"}], ["model"])
    with pytest.raises(ValueError):
        compute_metrics(df, [{"name": "accuracy"}], ["no_such_axis"])
    with pytest.raises(ValueError):
        compute_metrics(df, [{"name": "delta", "args": {"metric": "consistency", "pair": {"axis": "mode", "a": "x", "b": "y"}}}], [])
