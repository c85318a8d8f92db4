"""``mean(field)`` against values worked out by hand (the arithmetic is in the comments)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from xlspec.runtime.metrics import compute_metrics


def row(**kw):
    base = dict(
        experiment="e",
        model="m",
        dataset="d",
        item_id="q1",
        language="en",
        framing="neutral",
        mode="direct",
        sample=0,
        answer_kind="generate",
        response=None,
        parsed_answer=None,
        refused=False,
        option_probs=None,
        output_tokens=None,
        latency_ms=None,
        error=None,
    )
    base.update(kw)
    return base


def judge_rows():
    # a judge's 0-4 score read by regex("Score: ([0-4])"), and a decimal one
    return [
        row(item_id="q1", language="en", parsed_answer="3"),
        row(item_id="q2", language="en", parsed_answer="n/a"),  # not a number: left out
        row(item_id="q3", language="en", parsed_answer="٢"),  # Arabic-Indic 2
        row(item_id="q4", language="en", parsed_answer="2.5"),
        row(item_id="q1", language="fr", parsed_answer="1"),
        row(item_id="q2", language="fr", parsed_answer="2"),
        row(item_id="q5", language="fr", parsed_answer=None, refused=True, response="I won't"),  # refusal: left out
        row(item_id="q1", language="de", parsed_answer="?"),  # every de answer unreadable
        row(item_id="q2", language="de", parsed_answer="beaucoup"),
    ]


def one(out, metric=None, **where):
    sel = out
    if metric is not None:
        sel = sel[sel["metric"] == metric]
    for k, v in where.items():
        sel = sel[sel[k].isna()] if v is None else sel[sel[k] == v]
    assert len(sel) == 1, sel
    return sel.iloc[0]


def test_mean_by_language_leaves_non_numbers_out():
    out = compute_metrics(pd.DataFrame(judge_rows()), [{"name": "mean", "args": {"field": "parsed_answer"}, "label": "score"}], ["language"], n_boot=0)
    # en: 3, 2, 2.5 (q2 left out) -> 7.5 / 3 = 2.5 over 3 items
    assert one(out, language="en")["value"] == pytest.approx(2.5)
    assert one(out, language="en")["n"] == 3
    # fr: 1, 2 (the refusal left out) -> 1.5
    assert one(out, language="fr")["value"] == pytest.approx(1.5)
    assert one(out, language="fr")["n"] == 2
    # de: rows but no number -> NaN, n = 0
    de = one(out, language="de")
    assert math.isnan(de["value"]) and math.isnan(de["ci_low"]) and de["n"] == 0


def test_mean_pooled_over_languages_is_the_mean_over_answers():
    out = compute_metrics(pd.DataFrame(judge_rows()), [{"name": "mean"}], [], n_boot=0)
    # answers with a value: 3, 2, 2.5, 1, 2 -> 10.5 / 5 = 2.1; items q1 (en, fr), q2 (fr), q3, q4
    assert one(out)["value"] == pytest.approx(2.1)
    assert one(out)["n"] == 4
    assert one(out)["metric"] == "mean"


def test_mean_interval_contains_the_value():
    out = compute_metrics(pd.DataFrame(judge_rows()), [{"name": "mean"}], ["language"], seed=1, n_boot=500)
    en = one(out, language="en")
    # resampled means of 3, 2 and 2.5 lie in [2, 3]
    assert 2.0 <= en["ci_low"] <= en["value"] <= en["ci_high"] <= 3.0
    assert en["ci_low"] < en["ci_high"]


def test_parity_gap_and_delta_over_mean():
    metrics = [
        {"name": "parity_gap", "args": {"metric": "mean"}, "label": "gap"},
        {"name": "delta", "args": {"metric": "mean", "pair": {"axis": "language", "a": "en", "b": "fr"}}, "label": "d"},
    ]
    out = compute_metrics(pd.DataFrame(judge_rows()), metrics, ["language"], n_boot=0)
    # en 2.5, fr 1.5, de undefined -> gap 1.0 over items q1..q4 (q5 has no value)
    assert one(out, "gap")["value"] == pytest.approx(1.0)
    assert one(out, "gap")["n"] == 4
    assert one(out, "gap")["language"] is None
    # paired by item: only q1 has a value in both (en 3, fr 1) -> 2
    assert one(out, "d")["value"] == pytest.approx(2.0)
    assert one(out, "d")["n"] == 1


def test_mean_prefers_the_generated_answer_and_reads_options():
    rows = [
        # q1: generate 2 and options argmax 4: the generated answer counts
        row(item_id="q1", parsed_answer="2"),
        row(item_id="q1", answer_kind="options", option_probs={"1": 0.1, "4": 0.9}),
        # q2: options only, argmax 3
        row(item_id="q2", answer_kind="options", option_probs={"3": 0.6, "1": 0.4}),
    ]
    out = compute_metrics(pd.DataFrame(rows), [{"name": "mean"}], [], n_boot=0)
    assert one(out)["value"] == pytest.approx((2 + 3) / 2)


def test_mean_of_a_numeric_column():
    rows = [
        row(item_id="q1", output_tokens=10, latency_ms=100.0),
        row(item_id="q2", output_tokens=20, latency_ms=None),
        row(item_id="q3", output_tokens=None, latency_ms=300.0, error="timeout"),  # an engine error: left out
        row(item_id="q4", output_tokens=None, latency_ms=50.0),
    ]
    metrics = [{"name": "mean", "args": {"field": "output_tokens"}, "label": "tok"}, {"name": "mean", "args": {"field": "latency_ms"}, "label": "ms"}]
    out = compute_metrics(pd.DataFrame(rows), metrics, [], n_boot=0)
    assert one(out, "tok")["value"] == pytest.approx(15.0) and one(out, "tok")["n"] == 2
    assert one(out, "ms")["value"] == pytest.approx(75.0) and one(out, "ms")["n"] == 2
    # a field the results do not have: no value
    absent = compute_metrics(pd.DataFrame(rows), [{"name": "mean", "args": {"field": "prompt_tokens"}}], [], n_boot=0)
    assert math.isnan(one(absent)["value"]) and one(absent)["n"] == 0


def test_mean_rejects_an_unknown_field():
    with pytest.raises(ValueError, match="field"):
        compute_metrics(pd.DataFrame(judge_rows()), [{"name": "mean", "args": {"field": "response"}}], [])


def generator_rows(et_order):
    """A judge's fluency scores of three generators' dialogues (two prompts each) in en and
    et.  In en: g1 (mean 4) > g2 (3) > g3 (1.5).  ``et_order`` gives the et means."""
    en = {"g1": (4, 4), "g2": (3, 3), "g3": (1, 2)}
    out = []
    for lang, means in (("en", en), ("et", et_order)):
        for g, values in means.items():
            for p, v in zip(("p1", "p2"), values):
                out.append(row(item_id=f"{p}|model={g}", language=lang, model="judge", upstream=[("generator", g)], scores=[("fluency", float(v))], invalid_scores=[]))
    return pd.DataFrame(out)


@pytest.mark.parametrize(
    ("et", "tau", "inversions"),
    [
        ({"g1": (3, 3), "g2": (2, 2), "g3": (0, 1)}, 1.0, 0),  # same order, other level
        ({"g1": (0, 1), "g2": (2, 2), "g3": (3, 3)}, -1.0, 3),  # reversed: every pair swapped
        ({"g1": (3, 3), "g2": (1, 1), "g3": (2, 2)}, 1 / 3, 1),  # g2 and g3 swapped: (2 - 1) / 3
    ],
)
def test_rank_stability_ranks_the_generators_a_judge_scored(et, tau, inversions):
    """``rank = generator`` ranks the values of an upstream axis (read from the rows'
    ``upstream`` map) by the judge's per-item ``mean(fluency)``."""
    inner = {"name": "mean", "args": {"field": "fluency"}}
    df = generator_rows(et)
    got = compute_metrics(df, [{"name": "rank_stability", "args": {"metric": inner, "pair": {"axis": "language", "a": "en", "b": "et"}, "rank": "generator"}},
                              {"name": "mean", "args": {"field": "fluency"}, "by": ["generator", "language"]}], ["model"], n_boot=50)
    values = dict(zip(got.metric, got.value))
    label = "rank_stability(metric=mean(field=fluency), language=en-et, rank=generator)"
    assert values[f"{label}.tau"] == pytest.approx(tau)
    assert values[f"{label}.inversions"] == inversions
    means = got[got.metric == "mean(field=fluency)"]
    assert dict(zip(zip(means.generator, means.language), means.value))[("g3", "en")] == pytest.approx(1.5)
