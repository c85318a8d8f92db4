"""Coverage: no silent empty cell.  A language of a study without items in one of its datasets,
a partition value or subset that selects nothing, a `where` that empties a language, a country
without values, a few-shot pool too small: each is a located error, or a warning where the
study says `coverage = partial`.  The example specs keep compiling as they are.

The golden file ``tests/fixtures/diagnostics/coverage_gaps.expected.txt`` shows them printed."""

from __future__ import annotations

import glob
import json
import os
import re
import shutil

import pytest

from conftest import ROOT
from xlspec.api import compile_file
from xlspec.diagnostics import render_text

SPECS = os.path.join(ROOT, "specs")


@pytest.fixture
def specs(tmp_path, in_dir):
    """A copy of specs/ (with its data) as the working directory; ``edit(name, old, new, ...)``
    rewrites a spec there and compiles it."""
    shutil.copytree(SPECS, tmp_path / "specs")

    def edit(name: str, *replacements: str):
        path = tmp_path / "specs" / name
        text = path.read_text(encoding="utf-8")
        for old, new in zip(replacements[::2], replacements[1::2]):
            assert old in text, old
            text = text.replace(old, new)
        path.write_text(text, encoding="utf-8")
        with in_dir(tmp_path):
            result = compile_file(os.path.join("specs", name), str(tmp_path / "build"))
            result.text = render_text(result.diagnostics.sorted(), result.sources)
        return result

    return edit


def diags_of(result, code: str, severity: str = "error"):
    return [d for d in result.diagnostics.sorted() if d.code == code and d.severity == severity]


def line_of(result, spec: str, pattern: str) -> int:
    text = result.sources.texts[os.path.join("specs", spec)]
    return next(i for i, line in enumerate(text.split("\n"), 1) if re.search(pattern, line))


ITALIAN = (
    "languages european = [en, fr, es, de]", "languages european = [en, fr, es, de, it]",
    '  de = "Frage: {question}\\nAntwort:"', '  de = "Frage: {question}\\nAntwort:"\n  it = "Domanda: {question}\\nRisposta:"',
    '  de = "Quizzeit! {question}\\nAntwort:"', '  de = "Quizzeit! {question}\\nAntwort:"\n  it = "Quiz! {question}\\nRisposta:"',
    '  de = "{question}\\n{options}\\nAntworte mit dem Buchstaben der richtigen Antwort.\\nAntwort:"',
    '  de = "{question}\\n{options}\\nAntworte mit dem Buchstaben der richtigen Antwort.\\nAntwort:"\n  it = "{question}\\n{options}\\nRispondi con la lettera.\\nRisposta:"',
)


# ---- languages -------------------------------------------------------------------------------


def test_a_language_the_data_lacks_is_an_error_per_study(specs):
    result = specs("demo.xls", *ITALIAN)
    assert not result.ok
    found = diags_of(result, "E017")
    assert [d.message for d in found] == [
        "dataset `facts` has no items in `it` (Italian), a language of study `knows`",
        "dataset `facts` has no items in `it` (Italian), a language of study `letters`",
    ], result.text
    # At each study's language setting, with the dataset declaration as context.
    for d in found:
        assert d.span.file == os.path.join("specs", "demo.xls")
        assert result.sources.line(d.span.file, d.span.line).strip() == "language = european"
        assert d.context.line == line_of(result, "demo.xls", r"^dataset facts")
        assert "coverage = partial" in d.hint
        assert any("has items in de, en, es, fr" in n for n in d.notes)
    assert {d.code for d in result.diagnostics} == {"E017"}


def test_partial_coverage_is_an_explicit_opt_in(specs):
    result = specs("demo.xls", *ITALIAN, "study knows {\n", "study knows {\n  coverage = partial\n", "study letters {\n", "study letters {\n  coverage = partial\n")
    assert result.ok, result.text
    warnings = diags_of(result, "E017", "warning")
    assert len(warnings) == 2 and not result.diagnostics.has_errors()
    assert "`it` (Italian)" in warnings[0].message and any("coverage = partial" in n for n in warnings[0].notes)
    italian = [c for c in result.data["cells"] if c["axes"]["language"] == "it"]
    assert italian and all(c["items"] == 0 for c in italian)
    assert result.data["totals"]["languages"] == ["de", "en", "es", "fr", "it"]


def test_partial_on_one_study_does_not_cover_the_other(specs):
    result = specs("demo.xls", *ITALIAN, "study knows {\n", "study knows {\n  coverage = partial\n")
    assert [d.severity for d in result.diagnostics.sorted()] == ["warning", "error"]


@pytest.mark.parametrize("value, hint", [("partal", "did you mean `partial`?"), ("none", None), ('"partial"', None)])
def test_coverage_takes_full_or_partial(specs, value, hint):
    result = specs("demo.xls", "study knows {\n", f"study knows {{\n  coverage = {value}\n")
    (d,) = diags_of(result, "E014")
    assert "coverage is `full`" in d.message and d.hint == hint
    assert (d.span.line, d.span.col) == (line_of(result, "demo.xls", "coverage ="), 14)


def test_full_coverage_can_be_written(specs):
    assert specs("demo.xls", "study knows {\n", "study knows {\n  coverage = full\n").ok


def test_a_where_that_leaves_a_language_without_items(specs):
    result = specs("multiloko.xls", "  fewshot = dev  # per-language pool: examples in the cell's language\n", '  fewshot = dev\n  where = lang != "de"\n')
    assert not result.ok
    (d,) = diags_of(result, "E017")
    assert d.message == "`where` leaves dataset `test` no items in `de` (German), a language of study `main`"
    assert result.sources.line(d.span.file, d.span.line).strip().startswith("where =")


def test_a_subset_value_that_is_nowhere_lists_the_values(specs):
    result = specs("global_mmlu.xls", 'subset cs = cultural_sensitivity_label == "CS"', 'subset cs = cultural_sensitivity_label == "Sensitive"')
    found = diags_of(result, "E018")
    assert found and {d.hint for d in found} == {"`cultural_sensitivity_label` is never `Sensitive` in the data; its values: CA, CS"}


def test_a_where_that_selects_nothing(specs):
    result = specs("demo.xls", "  answer = options\n", '  answer = options\n  where = category == "geografy"\n')
    (d,) = diags_of(result, "E018")
    assert d.message == "`where` selects no item of dataset `facts`"
    assert d.hint.startswith("did you mean `geography`?")


# ---- partition values and subsets ----------------------------------------------------------------


def test_a_misspelt_partition_value_is_an_error_with_the_values_in_the_data(specs):
    result = specs("multiloko.xls", "  partition = [local, human_translated, machine_translated]", "  partition = some_group")
    (d,) = diags_of(result, "E018")
    assert d.message == "partition value `some_group` matches no item of dataset `test`"
    assert d.hint == "values of `partition` in the data: human_translated, local, machine_translated"
    assert (d.span.line, d.span.col) == (line_of(result, "multiloko.xls", "partition = some_group"), 15)


def test_a_near_miss_partition_value_gets_did_you_mean(specs):
    result = specs("global_mmlu.xls", "  partition = [human, machine]", "  partition = [human, machin]")
    (d,) = diags_of(result, "E018")
    assert d.message == "partition value `machin` matches no item of dataset `gmmlu`" and d.hint == "did you mean `machine`?"


# The provenance study of global_mmlu.xls crosses partition values with languages and says
# `coverage = partial`: its empty cells are meant.
PARTIAL = ("  coverage = partial\n", "")
RESTORE_PARTIAL = ("  partition = [human, machine]\n", "  partition = [human, machine]\n  coverage = partial\n")


def test_a_misspelt_partition_value_stays_an_error_under_partial_coverage(specs):
    result = specs("global_mmlu.xls", "  partition = [human, machine]", "  partition = [human, machin]")
    assert len(diags_of(result, "E018")) == 1 and not result.ok


def test_a_partition_value_outside_the_studys_languages(specs):
    # `machine` rows are Dutch only: without nl the value selects nothing in this study.
    without_nl = ("  language = sample - [en]\n  framing = mcq\n  partition", "  language = sample - [en, nl]\n  framing = mcq\n  partition")
    result = specs("global_mmlu.xls", *PARTIAL, *without_nl)
    (d,) = diags_of(result, "E018")
    assert d.message == "partition value `machine` has no item of dataset `gmmlu` in study `provenance`'s languages"
    partial = specs("global_mmlu.xls", *RESTORE_PARTIAL)  # (edits apply to the same copy)
    assert partial.ok and len(diags_of(partial, "E018", "warning")) == 1


def test_a_partition_value_without_items_in_one_language(specs):
    """Each value has items in some language of the study, but not every (language, value)
    cell does: human-translated rows lack nl, machine-translated rows have nothing else."""
    result = specs("global_mmlu.xls", *PARTIAL)
    assert not result.ok
    found = diags_of(result, "E018")
    assert [d.message for d in found] == [
        "partition value `human` has no item of dataset `gmmlu` in `nl` (Dutch), a language of study `provenance`",
        "partition value `machine` has no item of dataset `gmmlu` in `de`, `es`, `fr`, `it`, `pt`, languages of study `provenance`",
    ], result.text
    line = line_of(result, "global_mmlu.xls", r"^  partition = \[human, machine\]")
    assert [(d.span.line, d.span.col) for d in found] == [(line, 16), (line, 23)]
    assert found[0].notes == ["the value has items in de, es, fr, it, pt"] and "coverage = partial" in found[0].hint
    # As committed, the study allows them: warnings, and the empty cells are in the plan.
    committed = specs("global_mmlu.xls", *RESTORE_PARTIAL)
    assert committed.ok and [d.code for d in committed.diagnostics.sorted()] == ["E018", "E018"]
    empty = [c for c in committed.data["cells"] if c["study"] == "provenance" and c["items"] == 0]
    assert len(empty) == 24 and {c["axes"]["partition"] for c in empty if c["axes"]["language"] == "nl"} == {"human"}


def _cells_spec(tmp_path, in_dir, study: str):
    """A long-layout dataset where every language, partition value and subset has items, but
    not every combination: en has no `test` rows; fr has maths only in train, history only
    in test."""
    rows = [("a", "en", "train", "maths"), ("d", "en", "train", "history"), ("b", "fr", "train", "maths"), ("c", "fr", "test", "history")]
    (tmp_path / "data.jsonl").write_text(
        "".join(json.dumps({"id": i, "lang": lang, "split": split, "q": "?", "t": ["y"], "topic": topic}) + "\n" for i, lang, split, topic in rows),
        encoding="utf-8",
    )
    (tmp_path / "cells.xls").write_text(
        "experiment cells\n"
        'dataset d = jsonl("data.jsonl") { id = id  language = lang  partition = split  question = q  targets = t }\n'
        'subset maths = topic == "maths"\n'
        'subset history = topic == "history"\n'
        'framing f { en = "{question}"  fr = "{question}" }\n'
        'model m = hf("builtin:smollm2-135m-instruct")\n'
        f"study s {{\n  model = m\n  dataset = d\n  language = [en, fr]\n  framing = f\n{study}}}\n",
        encoding="utf-8",
    )
    with in_dir(tmp_path):
        result = compile_file("cells.xls", str(tmp_path / "build"))
        result.text = render_text(result.diagnostics.sorted(), result.sources)
    return result


def test_a_subset_without_items_in_one_language(tmp_path, in_dir):
    result = _cells_spec(tmp_path, in_dir, "  subset = [maths, history]\n")
    assert result.ok, result.text  # without partitions, every (language, subset) pair has items
    result = _cells_spec(tmp_path, in_dir, '  subset = [maths, history]\n  where = split == "train"\n')
    (d,) = diags_of(result, "E018")
    assert d.message == "subset `history` selects no item of dataset `d` that `where` keeps in `fr` (French), a language of study `s`"
    assert d.notes == ["the subset has items in en"]
    assert result.sources.line(d.span.file, d.span.line).strip() == "subset = [maths, history]" and d.span.col == 20


def test_a_subset_without_items_in_one_partition_value(tmp_path, in_dir):
    result = _cells_spec(tmp_path, in_dir, "  partition = [train, test]\n  subset = [maths, history]\n")
    assert [d.message for d in diags_of(result, "E018")] == [
        "partition value `test` has no item of dataset `d` in `en` (English), a language of study `s`",
        "subset `maths` selects no item of dataset `d` with partition value `test` in `fr` (French), a language of study `s`",
        "subset `history` selects no item of dataset `d` with partition value `train` in `fr` (French), a language of study `s`",
    ], result.text
    # Every gap named is a cell the plan would hold with no item.
    partial = _cells_spec(tmp_path, in_dir, "  partition = [train, test]\n  subset = [maths, history]\n  coverage = partial\n")
    assert partial.ok and len(diags_of(partial, "E018", "warning")) == 3
    empty = sorted((c["axes"]["language"], c["axes"]["partition"], c["axes"]["subset"]) for c in partial.data["cells"] if c["items"] == 0)
    assert empty == [("en", "test", "history"), ("en", "test", "maths"), ("fr", "test", "maths"), ("fr", "train", "history")]


def test_a_subset_that_selects_nothing(specs):
    result = specs("global_mmlu.xls", 'subset ca = cultural_sensitivity_label == "CA"', 'subset ca = cultural_sensitivity_label == "Ca "')
    found = diags_of(result, "E018")
    # once for each study that asks for the subset (main and categories)
    assert [d.message for d in found] == ["subset `ca` selects no item of dataset `gmmlu`"] * 2
    d = found[0]
    assert d.hint == "did you mean `CA`? `cultural_sensitivity_label` is never `Ca ` in the data"
    assert result.sources.line(d.span.file, d.span.line).strip() == "subset = [cs, ca]"
    assert any("subset `ca` declared at" in n for n in d.notes)


def test_ids_repeated_across_partitions_meet_in_one_cell_without_a_partition_axis(specs):
    result = specs("multiloko.xls", "  partition = [local, human_translated, machine_translated]\n", "")
    found = diags_of(result, "E015")
    assert len(found) == 1, result.text
    assert re.match(r"item id `[^`]+` is on line \d+ and line \d+ of data/multiloko_test.jsonl \(partitions `\w+` and `\w+`\), which study `main` asks in one cell \(\w+\): it has no `partition` axis", found[0].message), found[0].message


# ---- countries and few-shot pools -------------------------------------------------------------


def test_a_country_without_values(specs):
    result = specs("mena_values.xls", "  TR: tr,  # Turkey\n", "  TR: tr,  # Turkey\n  LB: ar,  # Lebanon\n")
    (d,) = diags_of(result, "E017")
    assert d.message == "dataset `survey` has no `human[country]` values for LB, a country of study `main`"
    assert result.sources.line(d.span.file, d.span.line).strip().startswith("country = mena")


def test_a_few_shot_pool_smaller_than_shots(specs):
    result = specs("multiloko.xls", "  shots = 5\n", "  shots = 6\n")
    (d,) = diags_of(result, "E017")
    assert d.message.startswith("few-shot pool `dev` has fewer than 6 examples in de (5), en (5)")
    assert result.sources.line(d.span.file, d.span.line).strip().startswith("fewshot = dev")


# ---- the example specs --------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(os.path.basename(p) for p in glob.glob(os.path.join(SPECS, "*.xls")) if os.path.basename(p) != "common.xls"))
def test_the_example_specs_compile_without_warnings(specs, name):
    """No warning but the empty cells a study declares with `coverage = partial`."""
    result = specs(name)
    assert result.ok, result.text
    for d in result.diagnostics:
        assert d.code in ("E017", "E018") and any("allowed by `coverage = partial`" in n for n in d.notes), result.text
    assert len(result.diagnostics) == (2 if name == "global_mmlu.xls" else 0), result.text
