"""Rubric parsers (``json_scores``, ``regex_scores``): several named scores from one judge
response, range-checked; the results columns they fill (``scores``, ``invalid_scores``);
``mean(<score>)`` and ``invalid_rate`` over them; and the checker's errors."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from xlspec.api import compile_file
from xlspec.diagnostics import render_text
from xlspec.lower import CellRequest, EngineRequest
from xlspec.parsers import build, score_names
from xlspec.runtime.engines.base import EngineResult
from xlspec.spec import ModelSpec
from xlspec.runtime.metrics import compute_metrics

RUBRIC = {"fields": ["grammaticality", "readability", "coherence", "fluency"], "min": 0, "max": 4}


def test_json_scores_reads_each_field_and_marks_invalid_ones():
    parse = build("json_scores", RUBRIC)
    text = 'Here you go: {"grammaticality": 3, "readability": "2", "coherence": 7, "fluency": "good"}'
    assert parse(text, []) == {"grammaticality": 3.0, "readability": 2.0, "coherence": None, "fluency": None}
    assert parse("I cannot rate this.", []) is None
    assert parse('{"grammaticality": 4}', []) == {"grammaticality": 4.0, "readability": None, "coherence": None, "fluency": None}
    # booleans and NaN are not scores; a nested field is named with a dot
    assert build("json_scores", {"fields": ["a", "b.c"]})('{"a": true, "b": {"c": 1.5}}', []) == {"a": None, "b.c": 1.5}
    assert score_names("json_scores", RUBRIC) == RUBRIC["fields"]


def test_regex_scores_reads_the_named_groups():
    args = {"pattern": r"grammar:\s*(?P<grammaticality>\S+).*fluency:\s*(?P<fluency>\S+)", "min": 0, "max": 4}
    parse = build("regex_scores", args)
    assert parse("Grammar: 3\nFluency: 4", []) == {"grammaticality": 3.0, "fluency": 4.0}
    assert parse("GRAMMAR: ٣ and fluency: 9", []) == {"grammaticality": 3.0, "fluency": None}  # Arabic-Indic 3; 9 > max
    assert parse("no scores here", []) is None
    assert score_names("regex_scores", args) == ["grammaticality", "fluency"]
    assert score_names("regex", {"pattern": "(x)"}) == []


def make_row(parser: str, args: dict, response: str) -> dict:
    from xlspec.items import ItemView
    from xlspec.runtime.scheduler import make_row as make

    class _Dataset:
        study = None

    class _Plan:
        experiment = "e"
        datasets = {None: _Dataset()}
        models = {None: ModelSpec(engine="fake", source="x")}

    class _Cell:
        study, id = "judge", "c1"
        axes = {a: None for a in ("model", "dataset", "country", "language", "framing", "mode", "partition", "subset", "shots", "seed")}

    req = EngineRequest("r1", "prompt", "generate")
    cr = CellRequest(req, ItemView("q1", {}, [], [], None, [], None, 1), 0, {"kind": "generate", "parser": parser, "parser_args": args})
    return make(_Plan(), _Cell(), cr, EngineResult(request_id="r1", response=response), "fake", None)


def test_a_results_row_holds_the_valid_scores_and_names_the_invalid_ones():
    row = make_row("json_scores", RUBRIC, '{"grammaticality": 3, "readability": 2, "coherence": 7, "fluency": 4}')
    assert dict(row["scores"]) == {"grammaticality": 3.0, "readability": 2.0, "fluency": 4.0}
    assert row["invalid_scores"] == ["coherence"] and row["refused"] is False
    assert json.loads(row["parsed_answer"]) == {"fluency": 4.0, "grammaticality": 3.0, "readability": 2.0}
    unreadable = make_row("json_scores", RUBRIC, "No.")
    assert unreadable["scores"] is None and unreadable["refused"] is False and unreadable["unparsable"] is True
    declined = make_row("json_scores", RUBRIC, "I'm sorry, I cannot rate this.")
    assert declined["refused"] is True and declined["unparsable"] is False
    assert unreadable["invalid_scores"] == RUBRIC["fields"]
    plain = make_row("regex", {"pattern": "([0-4])"}, "Score: 3")
    assert plain["scores"] is None and plain["invalid_scores"] is None and plain["parsed_answer"] == "3"


def rubric_rows() -> list[dict]:
    base = dict(experiment="e", model="judge", dataset="d", framing="f", mode=None, sample=0, answer_kind="generate", refused=False, error=None)
    rows = [
        # en: fluency 4 and 2 (mean 3); one verdict with an out-of-range coherence
        dict(item_id="q1", language="en", scores=[("fluency", 4.0), ("coherence", 3.0)], invalid_scores=[]),
        dict(item_id="q2", language="en", scores=[("fluency", 2.0)], invalid_scores=["coherence"]),
        # fr: one valid fluency of 1; one unreadable verdict (every score invalid)
        dict(item_id="q1", language="fr", scores=[("fluency", 1.0), ("coherence", 1.0)], invalid_scores=[]),
        dict(item_id="q2", language="fr", scores=None, invalid_scores=["fluency", "coherence"], refused=True),
        # a row of another parser: no rubric, not counted
        dict(item_id="q3", language="fr", scores=None, invalid_scores=None, parsed_answer="B"),
    ]
    return [base | r for r in rows]


def one(out, label, language):
    sel = out[(out["metric"] == label) & (out["language"] == language)]
    assert len(sel) == 1, sel
    return sel.iloc[0]


def test_mean_of_a_score_leaves_invalid_verdicts_out_and_invalid_rate_counts_them():
    metrics = [
        {"name": "mean", "args": {"field": "fluency"}, "label": "mean(field=fluency)"},
        {"name": "mean", "args": {"field": "coherence"}, "label": "mean(field=coherence)"},
        {"name": "invalid_rate", "args": {}, "label": "invalid_rate"},
        {"name": "invalid_rate", "args": {"field": "fluency"}, "label": "invalid_rate(field=fluency)"},
    ]
    out = compute_metrics(pd.DataFrame(rubric_rows()), metrics, ["language"], n_boot=0)
    assert one(out, "mean(field=fluency)", "en")["value"] == pytest.approx(3.0)
    assert one(out, "mean(field=fluency)", "fr")["value"] == pytest.approx(1.0) and one(out, "mean(field=fluency)", "fr")["n"] == 1
    assert one(out, "mean(field=coherence)", "en")["value"] == pytest.approx(3.0) and one(out, "mean(field=coherence)", "en")["n"] == 1
    assert one(out, "invalid_rate", "en")["value"] == pytest.approx(0.5)
    assert one(out, "invalid_rate", "fr")["value"] == pytest.approx(0.5) and one(out, "invalid_rate", "fr")["n"] == 2
    assert one(out, "invalid_rate(field=fluency)", "en")["value"] == pytest.approx(0.0)


SPEC = """experiment rubric
dataset d = jsonl("d.jsonl") {{ id = id  question = question[lang] }}
framing f {{ en = "Rate: {{question}}" }}
model m = hf("builtin:smollm2-135m-instruct")
study s {{
  model = m
  dataset = d
  language = en
  framing = f
  answer = generate(parser = {parser})
  metrics = [{metrics}]
}}
"""


def compile_rubric(tmp_path, in_dir, parser: str, metrics: str):
    (tmp_path / "d.jsonl").write_text(json.dumps({"id": "q1", "question": {"en": "Hello"}}) + "\n", encoding="utf-8")
    (tmp_path / "s.xls").write_text(SPEC.format(parser=parser, metrics=metrics), encoding="utf-8")
    with in_dir(tmp_path):
        result = compile_file("s.xls", str(tmp_path / "build"))
        result.text = render_text(result.diagnostics.sorted(), result.sources)
    return result


def test_a_study_names_its_rubric_scores_in_metrics(tmp_path, in_dir):
    result = compile_rubric(tmp_path, in_dir, "json_scores(fields = [fluency, coherence], min = 0, max = 4)", "mean(fluency), invalid_rate, invalid_rate(coherence)")
    assert result.ok, result.text
    (answer,) = result.data["studies"]["s"]["answers"]
    assert answer["parser_args"] == {"fields": ["fluency", "coherence"], "max": 4, "min": 0}


@pytest.mark.parametrize("parser, metrics, message", [
    ("json_scores(fields = [fluency], min = 0, max = 4)", "mean(fluenc)", "`mean`: `fluenc` is not a field it can read"),
    ("json_scores(fields = [fluency], min = 0, max = 4)", "invalid_rate(coherence)", "`invalid_rate`: `coherence` is not a field it can read"),
    ('regex("([0-4])")', "invalid_rate", "`invalid_rate` cannot be computed for this study: it needs a rubric parser"),
    ('regex_scores("Fluency: ([0-4])")', "mean", "parser `regex_scores`: the pattern names no group"),
    ("json_scores(fields = [fluency, fluency])", "mean", "parser `json_scores`: a field is named twice"),
    ("json_scores(fields = [fluency], min = 4, max = 0)", "mean", "parser `json_scores`: min (4) is above max (0)"),
    ('json_scores(fields = "x", max = "4")', "mean", "parser `json_scores`: `max` is a number"),
])
def test_rubric_mistakes_are_located_errors(tmp_path, in_dir, parser, metrics, message):
    result = compile_rubric(tmp_path, in_dir, parser, metrics)
    assert not result.ok
    assert any(d.message.startswith(message) for d in result.diagnostics), result.text


def test_json_scores_reads_the_first_json_object_and_survives_huge_numbers():
    parse = build("json_scores", {"fields": ["f"], "min": 0, "max": 4})
    assert parse('{"f": 3} and later {x}', []) == {"f": 3.0}
    assert parse('I rate {fluency}: {"f": 3}', []) == {"f": 3.0}
    assert parse('{"f": 1' + "0" * 400 + "}", []) == {"f": None}  # too large for a float: invalid
    assert parse('{"f": 1' + "0" * 5000 + "}", []) is None  # past Python's digit limit: nothing read
    assert parse("{" * 5000, []) is None


def test_a_score_named_like_a_results_column_is_refused(tmp_path, in_dir):
    result = compile_rubric(tmp_path, in_dir, "json_scores(fields = [verdict, fluency])", "mean(fluency)")
    assert any(d.message == "parser `json_scores`: the score `verdict` has the name of a results column" for d in result.diagnostics), result.text
