"""How a gold value names the right option: a label, a 0-based index or the option's text,
read unambiguously whatever the label style.

Regression: with `labels = numbers` a 0-based gold index 1 was read as the label 1 (the
first option) and index 0 matched nothing, without a word."""

from __future__ import annotations

import json
import os

import pytest

from xlspec.api import compile_file
from xlspec.diagnostics import render_text
from xlspec.lower import DataCache, cell_requests

OPTIONS = ["red", "green", "blue", "black"]


def compile_with(tmp_path, golds, labels="letters", gold_is=None):
    """A one-language dataset whose items have these gold values; (compilation, diagnostics
    as text)."""
    with open(tmp_path / "qa.jsonl", "w", encoding="utf-8") as f:
        for i, gold in enumerate(golds):
            f.write(json.dumps({"id": f"q{i}", "question": f"Colour {i}?", "options": OPTIONS, "answer": gold}) + "\n")
    setting = f"  gold_is = {gold_is}" if gold_is else ""
    (tmp_path / "t.xls").write_text(
        'experiment t "gold"\n'
        f'dataset qa = jsonl("qa.jsonl") {{ id = id  question = question  options = options  gold = answer  labels = {labels}{setting} }}\n'
        'framing plain { en = "{question}\\n{options}" }\n'
        'model smol = hf("builtin:smollm2-135m-instruct")\n'
        "study main { model = smol  dataset = qa  language = en  framing = plain }\n",
        encoding="utf-8",
    )
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        comp = compile_file("t.xls")
    finally:
        os.chdir(cwd)
    return comp, render_text(comp.diagnostics.sorted(), comp.sources)


def golds_read(tmp_path, comp) -> list[str]:
    plan = comp.plan
    path = str(tmp_path / comp.plan_path)
    cell = plan.cells[0]
    return [cr.item.gold for cr in cell_requests(plan, cell, DataCache(plan, path))]


@pytest.mark.parametrize(
    "labels, golds, reading, expected",
    [
        # letters: a letter is a label, a whole number an index, a colour the option's text
        ("letters", ["A", "c", "D"], "label", ["A", "C", "D"]),
        ("letters", [0, 2, 3], "index", ["A", "C", "D"]),
        ("letters", ["red", "blue", "black"], "text", ["A", "C", "D"]),
        # numbers: an index 0 cannot be a label, so every gold is an index (0 = option 1)
        ("numbers", [0, 1, 3], "index", ["1", "2", "4"]),
        ("numbers", ["green", "black", "red"], "text", ["2", "4", "1"]),
        # a number that is no index (4 options: 0-3) is a label
        ("numbers", [4, 1, 2], "label", ["4", "1", "2"]),
    ],
)
def test_gold_is_read_off_the_data_when_one_reading_fits_every_record(tmp_path, labels, golds, reading, expected):
    comp, text = compile_with(tmp_path, golds, labels)
    assert comp.ok, text
    assert comp.data["datasets"]["qa"]["gold_is"] == reading
    # the item's gold is the label of the option the data means
    assert [g.upper() for g in golds_read(tmp_path, comp)] == expected


def test_numbers_with_whole_number_golds_are_ambiguous_until_the_spec_says(tmp_path):
    comp, text = compile_with(tmp_path, [1, 2, 3], "numbers")
    assert not comp.ok
    assert "gold can be read as an option label or as an option index in every record: say which with gold_is = `label` or `index`" in text
    assert "t.xls:2:" in text  # at the dataset's gold mapping
    for gold_is, expected in (("index", ["2", "3", "4"]), ("label", ["1", "2", "3"])):
        comp, text = compile_with(tmp_path, [1, 2, 3], "numbers", gold_is)
        assert comp.ok, text
        assert golds_read(tmp_path, comp) == expected


def test_a_record_that_does_not_fit_the_declared_reading_is_named(tmp_path):
    comp, text = compile_with(tmp_path, [0, 2, 7], "letters", "index")
    assert not comp.ok
    assert "gold `7` (`answer`) is not a 0-based option index (0-3)" in text and "qa.jsonl:3" in text


def test_a_wrong_gold_is_is_named(tmp_path):
    comp, text = compile_with(tmp_path, ["A"], "letters", "lable")
    assert not comp.ok and "gold_is is `label` (A or 1), `index` (0-based) or `text`" in text and "did you mean `label`?" in text
