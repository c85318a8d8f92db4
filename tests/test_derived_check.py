"""The checker's side of derived metrics and of contrast sides that are sets or means: what
a spec compiles to (the plan's expression tree and label), and the mistakes it reports."""

from __future__ import annotations

from test_check import HEAD, check, study  # noqa: F401 (the fixture)

TREE_GAP = {
    "op": "-",
    "left": {"select": {"language": "en"}, "of": {"metric": "accuracy"}},
    "right": {"reduce": "mean", "of": {"metric": "accuracy"}, "over": "language", "where": {"cmp": "!=", "axis": "language", "value": "en"}},
}


def metrics_of(result):
    assert result.spec is not None, result.diagnostics
    return {m.label: m for m in result.spec.studies["main"].metrics}


def test_declared_metrics_compile_to_trees_labelled_with_their_names(check):
    result, text = check(
        HEAD
        + "metric rest = mean(accuracy, over = language, where = language != en)\n"
        + "metric gap \"English minus the others\" = at(accuracy, language = en) - rest\n"
        + study(answer="options", metrics="[accuracy, gap, 100 * accuracy / 2]")
    )
    got = metrics_of(result)
    assert got["gap"].name == "derived" and got["gap"].args == {"expr": TREE_GAP}
    # an inline expression is labelled with its text, whatever its layout
    inline = got["(100 * accuracy) / 2"]
    assert inline.args["expr"] == {"op": "/", "left": {"op": "*", "left": {"number": 100}, "right": {"metric": "accuracy"}}, "right": {"number": 2}}


def test_delta_against_the_mean_of_the_others_is_a_derived_metric(check):
    result, _ = check(HEAD + study(answer="options", metrics="[delta(accuracy, language = en - mean(others))]"))
    (m,) = metrics_of(result).values()
    assert m.label == "delta(metric=accuracy, language=en-mean(fr))"
    assert m.name == "derived"
    assert m.args["expr"]["left"] == {"select": {"language": "en"}, "of": {"metric": "accuracy"}}
    assert m.args["expr"]["right"]["where"] == {"in": "language", "values": ["fr"]}


def test_a_contrast_side_may_be_a_list_of_values(check):
    result, _ = check(HEAD + study(answer="options", metrics="[delta(accuracy, language = [en] - [fr])]"))
    (m,) = metrics_of(result).values()
    assert m.args["pair"] == {"axis": "language", "a": ["en"], "b": ["fr"]}


def test_mistakes_in_a_derived_metric_are_located(check):
    result, text = check(
        HEAD
        + "metric loop = loop + 1\n"
        + study(answer="options", metrics="[loop, agreement(language = en - mean(others)), delta(accuracy, language = en - native(country)), mean(accuracy, over = language, where = language == xx)]")
    )
    assert result.spec is None
    assert "metric `loop` is defined in terms of itself: loop -> loop" in text
    assert "only `delta` compares a value with the mean of several" in text
    assert "native(country) is a side of a language contrast in a study with a country axis" in text
    assert "`xx` is not a value of axis `language` in this study" in text


def test_group_by_an_item_field_or_a_model_attribute(check):
    head = HEAD.replace("gold = answer }", "gold = answer  topic = id }").replace('model smol = hf("builtin:smollm2-135m-instruct")', 'model smol = hf("builtin:smollm2-135m-instruct") { attributes = { params: 135e6 } }')
    body = study(answer="options", metrics="[accuracy, mean(accuracy, over = topic)]").replace("  framing = plain", "  framing = plain\n  group_by = [model, language, topic, params]")
    result, text = check(head + body)
    assert result.spec is not None, text
    assert result.spec.studies["main"].group_by == ["model", "language", "topic", "params"]
    result, text = check(head + body.replace("topic, params]", "topc]"))
    assert "`topc` is not an axis, item field or model attribute of this study" in text and "did you mean `topic`?" in text


COUNTRIES = """\
countries pair = { FR: fr, GB: en }
"""


def test_native_country_needs_each_country_in_its_own_language(check):
    base = HEAD.replace("gold = answer }", "gold = answer  country = id }") + COUNTRIES
    ok = study(language="native(country)", answer="options", metrics="[agreement(language = en - native(country))]")
    # a study of FR in fr and GB in en: native(country) is {fr, en}, which overlaps `en`
    result, text = check(base + ok.replace("  framing = plain", "  country = pair\n  framing = plain"))
    assert "compares `en` with itself" in text
    both = study(language="[en, fr]", answer="options", metrics="[agreement(language = fr - native(country))]")
    result, text = check(base + both.replace("  framing = plain", "  country = pair\n  framing = plain"))
    assert "country FR is asked in en, fr: native(country) as a contrast side needs each country asked in its own language (fr) and in no other country's" in text


FRAMINGS = 'framing terse { en = "{question}"  fr = "{question}" }\nframing short { en = "Q: {question}"  fr = "Q : {question}" }\n'


def three_framings(metrics: str) -> str:
    return HEAD + FRAMINGS + study(answer="options", metrics=metrics).replace("  framing = plain\n", "  framing = [plain, terse, short]\n")


def test_an_each_side_is_one_metric_per_value_as_if_written_out(check):
    result, _ = check(three_framings("[kappa(framing = plain - each(others)), delta(accuracy, framing = each([short, terse]) - plain)]"))
    written, _ = check(three_framings(
        "[kappa(framing = plain - terse), kappa(framing = plain - short), delta(accuracy, framing = short - plain), delta(accuracy, framing = terse - plain)]"
    ))
    got = [(m.label, m.name, m.args) for m in result.spec.studies["main"].metrics]
    assert got == [(m.label, m.name, m.args) for m in written.spec.studies["main"].metrics]
    assert [m.args["pair"]["b"] for m in result.spec.studies["main"].metrics[:2]] == ["terse", "short"]


def test_mistakes_in_an_each_side_are_located(check):
    result, text = check(three_framings("[kappa(framing = each([plain]) - each([terse])), kappa(framing = plain - each(terse, short)), kappa(framing = plain - each([long]))]"))
    assert result.spec is None
    assert "each(...) goes on one side of a contrast" in text
    assert "each(...) takes the values to compare one by one: each([fr, de]), each(others)" in text
    assert "`long` is not a value of axis `framing` in this study" in text
    result, text = check(three_framings("[kappa(framing = [plain, terse, short] - each(others)), permutation_test(accuracy, framing = plain - each([])), kappa(framing = plain - [each([terse])])]"))
    assert result.spec is None
    assert text.count("each(...) leaves no value of `framing` to compare") == 2
    assert "each(...) is a whole side of a contrast of a metric the study lists: language = en - each([fr, de])" in text
