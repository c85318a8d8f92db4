"""Derived metrics (statistics across cells) against values worked out by hand on tiny
tables, and their bootstrap: one resample of the items for the whole expression.

Every expected value is derived in the comment next to it (or from scipy.stats on the same
numbers), never copied from the library's output.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from xlspec.runtime.metrics import compute_metrics
from xlspec.runtime.metrics.derived import fit_rows, nan_reduce

from test_metrics import one, row


def quiz(correct: dict, **extra) -> pd.DataFrame:
    """One generate answer per item and language: ``correct[lang][i]`` (1 right, 0 wrong)."""
    rows = []
    for lang, marks in correct.items():
        for i, ok in enumerate(marks):
            rows.append(row(item_id=f"q{i}", language=lang, gold="A", parsed_answer="A" if ok else "B", **extra))
    return pd.DataFrame(rows)


def derived(label: str, expr: dict) -> dict:
    return {"name": "derived", "args": {"expr": expr}, "label": label}


ACC = {"metric": "accuracy"}
EN_FR_DE = {"en": [1, 1, 1, 0], "fr": [1, 0, 0, 0], "de": [1, 1, 0, 0]}  # 0.75, 0.25, 0.50


def test_aggregate_with_filter_selection_and_arithmetic():
    df = quiz(EN_FR_DE)
    others = {"reduce": "mean", "of": ACC, "over": "language", "where": {"cmp": "!=", "axis": "language", "value": "en"}}
    out = compute_metrics(
        df,
        [
            derived("others", others),
            derived("gap", {"op": "-", "left": {"select": {"language": "en"}, "of": ACC}, "right": others}),
            derived("std", {"reduce": "std", "of": ACC, "over": "language", "where": None}),
            derived("median", {"reduce": "median", "of": ACC, "over": "language", "where": {"in": "language", "values": ["en", "de"]}}),
            derived("pct", {"op": "*", "left": {"number": 100}, "right": ACC}),
            derived("ratio", {"op": "/", "left": ACC, "right": {"select": {"language": "en"}, "of": ACC}}),
        ],
        ["model", "language"],
        n_boot=0,
    )
    # mean of fr 0.25 and de 0.50 (the macro average: one vote per language) = 0.375
    assert one(out, "others")["value"] == pytest.approx(0.375)
    assert one(out, "others")["language"] is None
    # en 0.75 - 0.375
    assert one(out, "gap")["value"] == pytest.approx(0.375)
    # population std of (0.75, 0.25, 0.5): mean 0.5, deviations .25 -.25 0 -> sqrt(0.125/3)
    assert one(out, "std")["value"] == pytest.approx(math.sqrt(0.125 / 3))
    # median of en and de only: (0.75 + 0.5) / 2
    assert one(out, "median")["value"] == pytest.approx(0.625)
    # a value that still varies along language keeps one row per language
    assert one(out, "pct", language="fr")["value"] == pytest.approx(25.0)
    # each language divided by English (broadcast over the value without language)
    assert one(out, "ratio", language="de")["value"] == pytest.approx(0.5 / 0.75)
    assert one(out, "ratio", language="en")["value"] == pytest.approx(1.0)


def test_argmax_names_the_value_where_it_is_reached():
    df = quiz(EN_FR_DE)
    out = compute_metrics(
        df,
        [derived("best", {"reduce": "argmax", "of": ACC, "over": "language", "where": None}), derived("worst", {"reduce": "argmin", "of": ACC, "over": "language", "where": None})],
        ["model"],
        n_boot=0,
    )
    assert (one(out, "best")["language"], one(out, "best")["value"]) == ("en", pytest.approx(0.75))
    assert (one(out, "worst")["language"], one(out, "worst")["value"]) == ("fr", pytest.approx(0.25))


def test_choose_on_train_and_score_on_test():
    # train: fr is best (1.0); test: fr scores 0.5 while en (worse on train) scores 1.0.
    rows = []
    marks = {("train", "en"): [1, 0], ("train", "fr"): [1, 1], ("test", "en"): [1, 1], ("test", "fr"): [1, 0]}
    for (part, lang), ms in marks.items():
        for i, ok in enumerate(ms):
            rows.append(row(item_id=f"{part}{i}", partition=part, language=lang, gold="A", parsed_answer="A" if ok else "B"))
    out = compute_metrics(
        pd.DataFrame(rows),
        [derived("chosen", {"choose": "max", "of": ACC, "over": "language", "split": {"axis": "partition", "a": "train", "b": "test"}})],
        ["model", "language", "partition"],
        n_boot=0,
    )
    r = one(out, "chosen")
    assert r["language"] == "fr" and r["value"] == pytest.approx(0.5)


def _models_table(values: dict[str, dict[str, float]], n: int = 20) -> pd.DataFrame:
    """Accuracy exactly ``values[model][dataset]`` on n items (value * n of them right)."""
    rows = []
    for m, per in values.items():
        for d, acc in per.items():
            k = round(acc * n)
            for i in range(n):
                rows.append(row(model=m, dataset=d, item_id=f"{d}{i}", gold="A", parsed_answer="A" if i < k else "B"))
    return pd.DataFrame(rows)


def test_correlations_across_models_match_scipy():
    values = {"m1": {"x": 0.2, "y": 0.3}, "m2": {"x": 0.4, "y": 0.3}, "m3": {"x": 0.6, "y": 0.7}, "m4": {"x": 0.8, "y": 0.6}, "m5": {"x": 0.5, "y": 0.5}}
    x = [values[m]["x"] for m in sorted(values)]
    y = [values[m]["y"] for m in sorted(values)]
    df = _models_table(values)
    reqs = [
        derived(c, {"corr": c, "x": {"select": {"dataset": "x"}, "of": ACC}, "y": {"select": {"dataset": "y"}, "of": ACC}, "across": "model"})
        for c in ("pearson", "spearman", "kendall")
    ]
    out = compute_metrics(df, reqs, ["model", "dataset"], n_boot=0)
    assert one(out, "pearson")["value"] == pytest.approx(stats.pearsonr(x, y).statistic)
    assert one(out, "spearman")["value"] == pytest.approx(stats.spearmanr(x, y).statistic)
    # y has a tie (m1 and m2 at 0.3), x none: tau-b = (C - D) / sqrt(10 pairs * (10 - 1 tied
    # in y)), counted by hand below
    tau = stats.kendalltau(x, y).statistic
    assert one(out, "kendall")["value"] == pytest.approx(tau)
    xs, ys = np.array(x), np.array(y)
    i, j = np.triu_indices(5, 1)
    s = np.sign(xs[i] - xs[j]) * np.sign(ys[i] - ys[j])
    assert tau == pytest.approx((np.sum(s > 0) - np.sum(s < 0)) / math.sqrt(10 * (10 - 1)))


def test_power_law_fit_on_exact_data():
    # y = 0.1 * x ** 0.5 at x = 1, 4, 16 (0.1, 0.2, 0.4); the held-out x = 9 has 0.3 against a
    # prediction of 0.1 * 3 = 0.3: residual 0.
    a, b, r2, res = fit_rows("power", np.array([1.0, 4.0, 16.0]), np.array([[0.1, 0.2, 0.4]]), 9.0, np.array([0.3]))
    assert (a[0], b[0], r2[0], res[0]) == (pytest.approx(0.1), pytest.approx(0.5), pytest.approx(1.0), pytest.approx(0.0, abs=1e-12))
    a, b, r2, _ = fit_rows("linear", np.array([0.0, 1.0, 2.0]), np.array([[1.0, 3.0, 5.0]]))
    assert (a[0], b[0], r2[0]) == (pytest.approx(1.0), pytest.approx(2.0), pytest.approx(1.0))


def test_fit_across_a_numeric_axis():
    # accuracy 0.1 at 1 shot, 0.2 at 4, 0.4 at 16 (y = 0.1 x^0.5); 0.35 at 9 held out:
    # residual 0.35 - 0.3 = 0.05
    rows = []
    for shots, acc in ((1, 0.1), (4, 0.2), (16, 0.4), (9, 0.35)):
        for i in range(20):
            rows.append(row(shots=shots, item_id=f"q{i}", gold="A", parsed_answer="A" if i < round(acc * 20) else "B"))
    node = {"fit": "power", "of": ACC, "across": "shots", "x": {"1": 1, "4": 4, "9": 9, "16": 16}, "holdout": "9"}
    out = compute_metrics(pd.DataFrame(rows), [derived("law", node)], ["model", "shots"], n_boot=0)
    assert one(out, "law.a")["value"] == pytest.approx(0.1)
    assert one(out, "law.b")["value"] == pytest.approx(0.5)
    assert one(out, "law.residual")["value"] == pytest.approx(0.05)


def test_nan_reduce_leaves_missing_values_out():
    X = np.array([[1.0, np.nan, 3.0], [np.nan, np.nan, np.nan]])
    assert nan_reduce("mean", X)[0] == 2.0 and math.isnan(nan_reduce("mean", X)[1])
    assert nan_reduce("max", X)[0] == 3.0 and nan_reduce("count", X).tolist() == [2.0, 0.0]


def test_one_resample_for_the_chain_keeps_the_pairing():
    # en and fr answers are identical item by item: the gap is exactly 0 in every replicate
    # that resamples the items once for both languages (separate resamples would spread it).
    rng = np.random.default_rng(7)
    marks = (rng.random(60) < 0.5).astype(int).tolist()
    df = quiz({"en": marks, "fr": marks})
    gap = {"op": "-", "left": {"select": {"language": "en"}, "of": ACC}, "right": {"select": {"language": "fr"}, "of": ACC}}
    out = compute_metrics(df, [derived("gap", gap)], ["model", "language"], n_boot=300)
    r = one(out, "gap")
    assert (r["value"], r["ci_low"], r["ci_high"]) == (0.0, 0.0, 0.0)


def test_interval_of_a_gap_covers_the_truth():
    # en right with p = 0.6, fr with p = 0.4, independently per item: the true gap is 0.2.
    trials, n = 120, 80
    covered = 0
    for t in range(trials):
        rng = np.random.default_rng(1000 + t)
        df = quiz({"en": (rng.random(n) < 0.6).astype(int).tolist(), "fr": (rng.random(n) < 0.4).astype(int).tolist()})
        gap = {"op": "-", "left": {"select": {"language": "en"}, "of": ACC}, "right": {"reduce": "mean", "of": ACC, "over": "language", "where": {"cmp": "!=", "axis": "language", "value": "en"}}}
        r = one(compute_metrics(df, [derived("gap", gap)], ["model", "language"], n_boot=400, seed=t), "gap")
        covered += r["ci_low"] <= 0.2 <= r["ci_high"]
    assert 0.88 <= covered / trials <= 0.99, covered / trials


def test_a_value_that_does_not_vary_along_the_axis_is_an_error():
    df = quiz(EN_FR_DE)
    node = {"reduce": "max", "of": {"metric": {"name": "consistency", "args": {"over": "language"}}}, "over": "language", "where": None}
    with pytest.raises(ValueError, match="does not vary along"):
        compute_metrics(df, [derived("bad", node)], ["model", "language"], n_boot=0)


# ---- tests of "no difference" and chance --------------------------------------------------


def _pairs(a: list[int], b: list[int]) -> pd.DataFrame:
    return quiz({"en": a, "fr": b})


def _p(out, name):
    r = one(out, name)
    assert math.isnan(r["ci_low"]) and math.isnan(r["ci_high"])  # a p-value has no interval
    return r["value"]


def test_paired_permutation_test_is_exact_on_few_items():
    # differences en - fr per item: 1, 1, 1, 0.  All 2^4 sign assignments are enumerated;
    # |mean| >= 0.75 only when the three non-zero differences share a sign: 2 of 8, times 2
    # for the zero's sign -> 4/16 = 0.25.
    df = _pairs([1, 1, 1, 0], [0, 0, 0, 0])
    pair = {"axis": "language", "a": "en", "b": "fr"}
    out = compute_metrics(
        df,
        [{"name": "permutation_test", "args": {"metric": "accuracy", "pair": pair}}, {"name": "sign_test", "args": {"metric": "accuracy", "pair": pair}, "label": "sign"}],
        ["model", "language"],
        n_boot=50,
    )
    assert _p(out, "permutation_test(metric=accuracy, language=en-fr)") == pytest.approx(0.25)
    # 3 items better under en, none under fr: two-sided binomial 2 * (1/2)^3
    assert _p(out, "sign") == pytest.approx(0.25)


def test_above_chance_is_a_one_sided_binomial_test():
    # 10 right of 40 on 4-option items: P(X >= 10), X ~ Binomial(40, 1/4)
    df = quiz({"en": [1] * 10 + [0] * 30}, n_options=4)
    out = compute_metrics(df, [{"name": "chance"}, {"name": "above_chance"}], ["model", "language"], n_boot=0)
    expected = sum(math.comb(40, k) * 0.25**k * 0.75 ** (40 - k) for k in range(10, 41))
    assert one(out, "chance")["value"] == pytest.approx(0.25)
    assert _p(out, "above_chance") == pytest.approx(expected)


def test_chance_reads_the_option_probabilities_without_n_options():
    rows = [row(item_id="q1", answer_kind="options", option_probs={"A": 0.5, "B": 0.3, "C": 0.2}, gold="A")]
    out = compute_metrics(pd.DataFrame(rows).drop(columns=[c for c in ("n_options",) if c in pd.DataFrame(rows)]), [{"name": "chance"}], ["model"], n_boot=0)
    assert one(out, "chance")["value"] == pytest.approx(1 / 3)


def test_no_language_effect_is_rejected_at_the_nominal_rate():
    # Three languages with the same true accuracy (0.3), answers independent per item and
    # language: the parity gap's percentile interval excludes 0 nearly always (the gap is
    # biased upward), while the permutation test of no language effect rejects at ~5%.
    trials, n, rejected, gap_excludes_zero = 200, 60, 0, 0
    for t in range(trials):
        rng = np.random.default_rng(5000 + t)
        df = quiz({lang: (rng.random(n) < 0.3).astype(int).tolist() for lang in ("en", "fr", "de")})
        out = compute_metrics(df, [{"name": "axis_effect", "args": {"metric": "accuracy"}}, {"name": "parity_gap", "args": {"metric": "accuracy"}}], ["model", "language"], n_boot=200, seed=t)
        rejected += _p(out, "axis_effect(metric=accuracy)") < 0.05
        gap_excludes_zero += one(out, "parity_gap(metric=accuracy)")["ci_low"] > 0
    assert rejected / trials <= 0.08, rejected / trials
    assert gap_excludes_zero / trials > 0.5, gap_excludes_zero / trials


def test_a_gap_between_two_languages_of_equal_accuracy_is_rejected_at_the_nominal_rate():
    # Two languages with the same true accuracy (0.4), answers independent per item and
    # language.  The paired tests of "no difference" (permutation, sign) reject at ~5%, and
    # the gap's 95% interval (delta, paired by item) excludes 0 at ~5%.
    trials, n = 200, 60
    rejected = {"permutation_test": 0, "sign_test": 0}
    gap_excludes_zero = 0
    pair = {"axis": "language", "a": "en", "b": "fr"}
    for t in range(trials):
        rng = np.random.default_rng(7000 + t)
        df = quiz({lang: (rng.random(n) < 0.4).astype(int).tolist() for lang in ("en", "fr")})
        req = [{"name": name, "args": {"metric": "accuracy", "pair": pair}} for name in ("permutation_test", "sign_test", "delta")]
        out = compute_metrics(df, req, ["model", "language"], n_boot=200, seed=t)
        for name in rejected:
            rejected[name] += _p(out, f"{name}(metric=accuracy, language=en-fr)") < 0.05
        gap = one(out, "delta(metric=accuracy, language=en-fr)")
        gap_excludes_zero += gap["ci_low"] > 0 or gap["ci_high"] < 0
    for name, count in rejected.items():
        assert count / trials <= 0.08, (name, count / trials)
    assert gap_excludes_zero / trials <= 0.09, gap_excludes_zero / trials


def test_language_effect_is_found_when_there_is_one():
    rng = np.random.default_rng(3)
    df = quiz({"en": (rng.random(80) < 0.8).astype(int).tolist(), "fr": (rng.random(80) < 0.3).astype(int).tolist()})
    out = compute_metrics(df, [{"name": "axis_effect", "args": {"metric": "accuracy"}}], ["model", "language"], n_boot=0)
    assert _p(out, "axis_effect(metric=accuracy)") < 0.001


def test_a_contrast_side_that_is_a_set_pairs_each_country_with_its_own_language():
    # agreement(language = en - native(country)) compiles to b = [ar, fa, tr]; each unit (an
    # item in one country) has one of them.  EG: q0 1 vs 1 -> 1, q1 2 vs 4 -> 1 - 2/3 on a
    # 1-4 scale; IR: both 1.  Per country: 2/3 and 1; pooled over countries: 5/6.
    rows = []
    for c, lang, answers in (("EG", "en", ["1", "2"]), ("EG", "ar", ["1", "4"]), ("IR", "en", ["3", "3"]), ("IR", "fa", ["3", "3"])):
        rows.extend(row(item_id=f"q{i}", country=c, language=lang, parsed_answer=a) for i, a in enumerate(answers))
    req = [{"name": "agreement", "args": {"pair": {"axis": "language", "a": "en", "b": ["ar", "fa", "tr"]}}}]
    out = compute_metrics(pd.DataFrame(rows), req, ["model", "country", "language"], n_boot=0)
    assert one(out, country="EG")["value"] == pytest.approx(2 / 3)
    assert one(out, country="IR")["value"] == pytest.approx(1.0)
    assert one(compute_metrics(pd.DataFrame(rows), req, ["model"], n_boot=0))["value"] == pytest.approx(5 / 6)


def test_item_fields_and_model_attributes_group_like_axes():
    from xlspec.runtime.metrics.compute import with_model_attributes

    # STEM items: q0 right, q1 wrong (0.5); Other: q2 right (1.0); for both models, and m2
    # gets every STEM item right.
    rows = []
    for m in ("m1", "m2"):
        for i, (cat, ok) in enumerate((("STEM", 1), ("STEM", 0 if m == "m1" else 1), ("Other", 1))):
            rows.append(row(model=m, item_id=f"q{i}", gold="A", parsed_answer="A" if ok else "B", item_fields=[("category", cat)]))
    df = with_model_attributes(pd.DataFrame(rows), {"m1": {"params": 135e6}, "m2": {"params": 8e9}})
    out = compute_metrics(df, [{"name": "accuracy"}], ["model", "category"], n_boot=0)
    assert one(out, model="m1", category="STEM")["value"] == pytest.approx(0.5)
    assert one(out, model="m2", category="STEM")["value"] == pytest.approx(1.0)
    # a derived metric over an item field: the mean over categories, one vote each
    node = {"reduce": "mean", "of": ACC, "over": "category", "where": None}
    out = compute_metrics(df, [derived("macro", node)], ["model"], n_boot=0)
    assert one(out, "macro", model="m1")["value"] == pytest.approx(0.75)
    # a model attribute is a column to group by
    out = compute_metrics(df, [{"name": "accuracy"}], ["params"], n_boot=0)
    assert one(out, params=8e9)["value"] == pytest.approx(1.0)


def test_cohens_kappa_by_hand():
    # 10 items answered y/n in en and fr.  en: 5 y, 5 n; fr agrees on 8 (4 y, 4 n) and swaps
    # one of each: p_o = 0.8; each side 0.5 y, 0.5 n: p_e = 0.5; kappa = (0.8 - 0.5) / 0.5.
    en = list("yyyyynnnnn")
    fr = list("yyyynnnnny")
    rows = [row(item_id=f"q{i}", language=lang, parsed_answer=a) for lang, answers in (("en", en), ("fr", fr)) for i, a in enumerate(answers)]
    pair = {"axis": "language", "a": "en", "b": "fr"}
    out = compute_metrics(pd.DataFrame(rows), [{"name": "kappa", "args": {"pair": pair}, "label": "k"}, {"name": "percent_agreement", "args": {"pair": pair}, "label": "po"}], ["model", "language"], n_boot=200)
    assert one(out, "k")["value"] == pytest.approx(0.6)
    assert one(out, "po")["value"] == pytest.approx(0.8)
    assert one(out, "k")["ci_low"] < 0.6 < one(out, "k")["ci_high"]
    # unbalanced sides: en 7 y / 3 n, fr 6 y / 4 n, agreeing on 7 (5 y, 2 n): p_o = .7,
    # p_e = .7 * .6 + .3 * .4 = .54, kappa = .16 / .46
    en = list("yyyyyyynnn")
    fr = list("yyyyynnnny")
    rows = [row(item_id=f"q{i}", language=lang, parsed_answer=a) for lang, answers in (("en", en), ("fr", fr)) for i, a in enumerate(answers)]
    out = compute_metrics(pd.DataFrame(rows), [{"name": "kappa", "args": {"pair": pair}, "label": "k"}], ["model", "language"], n_boot=0)
    assert one(out, "k")["value"] == pytest.approx(0.16 / 0.46)


def test_a_derived_metric_may_read_a_metric_that_folds_a_grouping_axis():
    # consistency(over = language) folds language: 100 * it is grouped without language even
    # where the study groups by language.  q0 same answer in en and fr, q1 not: 50.
    rows = [row(item_id=f"q{i}", language=lang, parsed_answer=a) for lang, answers in (("en", ["A", "B"]), ("fr", ["A", "C"])) for i, a in enumerate(answers)]
    node = {"op": "*", "left": {"number": 100}, "right": {"metric": {"name": "consistency", "args": {"over": "language"}}}}
    out = compute_metrics(pd.DataFrame(rows), [derived("pct", node)], ["model", "language"], n_boot=0)
    r = one(out, "pct")
    assert r["value"] == pytest.approx(50.0) and r["language"] is None


def test_above_chance_tests_items_not_answers_where_items_answer_more_than_once():
    # each item answered in en and fr (pooled): per item share right minus 1/4 is tested
    # over the 6 items, not as 12 independent answers
    en = [1, 1, 1, 0, 1, 0]
    fr = [1, 0, 1, 0, 0, 0]
    df = quiz({"en": en, "fr": fr}, n_options=4)
    out = compute_metrics(df, [{"name": "above_chance"}], ["model"], n_boot=0)
    d = [(a + b) / 2 - 0.25 for a, b in zip(en, fr)]
    assert one(out, "above_chance")["value"] == pytest.approx(stats.ttest_1samp(d, 0.0, alternative="greater").pvalue)
    assert one(out, "above_chance")["n"] == 6
