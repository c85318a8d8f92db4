"""Data files and the records in them: every way a file or a record can be wrong is a located
diagnostic (file, line, the field's column), never a traceback, a hang or wrong content in a
prompt; and a spec reads only files inside its own folder.

The golden files ``tests/fixtures/diagnostics/data_*.expected.txt`` and
``paths_outside.expected.txt`` show the same errors as printed."""

from __future__ import annotations

import json
import os
import signal
import textwrap

import pytest

from xlspec.check import check_file
from xlspec.data import DataError, DataFileError, Record, read_records
from xlspec.diagnostics import render_text
from xlspec.items import view

MAPPING = "id = id  question = question[lang]  options = options[lang]  gold = answer"


def item(i: int, **changes) -> dict:
    rec = {
        "id": f"q{i}",
        "question": {"en": f"Question {i}?", "fr": f"Question {i} ?"},
        "options": {"en": ["one", "two", "three", "four"], "fr": ["un", "deux", "trois", "quatre"]},
        "answer": "A",
    }
    rec.update(changes)
    return rec


def spec_text(dataset: str, language: str = "[en, fr]", extra: str = "", study_extra: str = "", template: str = "{question}\\n{options}") -> str:
    return textwrap.dedent(
        f"""\
        experiment t "Data test"
        dataset qa = {dataset}
        framing plain {{ en = "{template}"  fr = "{template}" }}
        model smol = hf("builtin:smollm2-135m-instruct")
        study main {{ model = smol  dataset = qa  language = {language}  framing = plain {study_extra}}}
        """
    ) + extra


@pytest.fixture
def project(tmp_path, in_dir):
    """A spec folder: ``write(records or text, ...)`` writes the data and the spec and checks
    it; the result carries ``.text`` (the rendered diagnostics) and ``.found`` (code, file,
    line, col, message, hint) tuples."""

    def write_data(name: str, content) -> None:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif isinstance(content, str):
            path.write_text(content, encoding="utf-8")
        else:
            path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in content), encoding="utf-8")

    def run(content=None, *, name: str = "qa.jsonl", dataset: str | None = None, mapping: str = MAPPING, allow_outside_data: bool = False, **spec_args):
        if content is not None:
            write_data(name, content)
        fmt = "csv" if name.endswith(".csv") else "jsonl"
        dataset = dataset or f'{fmt}("{name}") {{ {mapping} }}'
        (tmp_path / "t.xls").write_text(spec_text(dataset, **spec_args), encoding="utf-8")
        with in_dir(tmp_path):
            result = check_file("t.xls", allow_outside_data=allow_outside_data)
            result.text = render_text(result.diagnostics.sorted(), result.sources)
        result.found = [(d.code, d.span.file if d.span else None, d.span.line if d.span else 0, d.span.col if d.span else 0, d.message, d.hint) for d in result.diagnostics.sorted()]
        return result

    run.path = tmp_path
    run.write_data = write_data
    return run


def only(result, code: str = "E015"):
    found = [f for f in result.found if f[0] == code]
    assert len(found) == 1, result.text
    assert "Traceback" not in result.text
    return found[0]


# ---- values of the wrong shape -----------------------------------------------------------------


def test_options_that_are_one_string_are_an_error_not_five_letters(project):
    result = project([item(1), item(2, options={"en": "Paris", "fr": ["Paris", "Lyon"]})])
    code, file, line, col, message, hint = only(result)
    assert (file, line) == ("qa.jsonl", 2)
    assert "`options[en]` is a string" in message and "list" in message
    assert col == result_line(project, 2).index('"en": "Paris"') + 1  # the caret is at the language's value
    assert result.spec is None


def result_line(project, n: int, name: str = "qa.jsonl") -> str:
    return (project.path / name).read_text(encoding="utf-8").split("\n")[n - 1]


def test_a_null_option_is_an_error_not_a_shift_of_letters(project):
    result = project([item(1, options={"en": ["Paris", None, "Lyon"], "fr": ["Paris", "Nice", "Lyon"]})])
    _, _, line, _, message, _ = only(result)
    assert line == 1 and "option 2 of `options[en]` is null" in message


def test_a_list_where_text_is_expected_is_an_error(project):
    result = project([item(1, question={"en": ["What", "is", "it?"], "fr": "Quoi ?"})])
    _, _, line, col, message, _ = only(result)
    assert line == 1 and "`question[en]` is a list, where text is expected" in message and "{question}" in message
    assert col == result_line(project, 1).index('"en": ["What"') + 1


def test_an_object_in_a_plain_template_field_is_an_error(project):
    result = project([item(1, topic={"a": 1})], mapping=MAPPING + "  topic = topic")
    _, _, line, _, message, _ = only(result)
    assert line == 1 and "`topic` is an object, where text is expected" in message


def test_a_null_template_field_is_an_error(project):
    result = project([item(1, topic="maths"), item(2, topic=None)], mapping=MAPPING + "  topic = topic")
    _, _, line, _, message, hint = only(result)
    assert line == 2 and "`topic` is null" in message and '""' in hint


def test_a_missing_id_is_an_error_not_the_id_none(project):
    rec = item(2)
    del rec["id"]
    result = project([item(1), rec])
    _, _, line, _, message, _ = only(result)
    assert line == 2 and "no `id`" in message


@pytest.mark.parametrize("bad", [None, ["q", 1], {"a": 1}, True, ""])
def test_an_id_that_is_not_one_text_or_number_is_an_error(project, bad):
    result = project([item(1), item(2, id=bad)])
    _, _, line, _, message, _ = only(result)
    assert line == 2 and "`id` (the item id)" in message


def test_duplicate_ids_name_both_lines(project):
    result = project([item(1), item(2), item(1, question={"en": "Again?", "fr": "Encore ?"})])
    _, file, line, col, message, hint = only(result)
    assert (file, line, col) == ("qa.jsonl", 3, 2)  # the caret at "id"
    assert "`q1` is on line 1 and line 3" in message and "en, fr" in message


def test_an_id_shared_by_records_in_different_languages_is_one_item(project):
    # Wide records that cover different languages: an item's translations, no duplicate.
    result = project([item(1, question={"en": "One?"}, options={"en": ["a", "b"]}), item(1, question={"fr": "Un ?"}, options={"fr": ["a", "b"]})])
    assert result.spec is not None, result.text


def test_long_layout_ids_are_unique_per_language_and_partition(project):
    rows = [
        {"id": "a", "lang": "en", "part": "local", "question": "Q?", "targets": ["x"]},
        {"id": "a", "lang": "fr", "part": "local", "question": "Q ?", "targets": ["x"]},
        {"id": "a", "lang": "en", "part": "translated", "question": "Q?", "targets": ["x"]},
        {"id": "b", "lang": "fr", "part": "translated", "question": "Q ?", "targets": ["x"]},
    ]
    mapping = "id = id  language = lang  partition = part  question = question  targets = targets"
    ok = project(rows, mapping=mapping, study_extra=" partition = [local, translated] ", template="{question}")
    assert ok.spec is not None, ok.text
    bad = project(rows + [{"id": "a", "lang": "fr", "part": "local", "question": "Encore ?", "targets": ["y"]}], mapping=mapping, study_extra=" partition = [local, translated] ", template="{question}")
    _, _, line, _, message, _ = only(bad)
    assert line == 5 and "on line 2 and line 5 in fr (partition `local`)" in message


# ---- gold --------------------------------------------------------------------------------------


@pytest.mark.parametrize("gold, why", [("E", "is not an option label (A-D)"), (7, "is not an option label (A-D)"), (True, "is a boolean"), ("", "is empty"), (None, "null"), (-1, "is not an option label")])
def test_a_gold_answer_that_names_no_option_is_an_error(project, gold, why):
    result = project([item(1), item(2, answer=gold)])
    _, _, line, col, message, _ = only(result)
    assert line == 2 and why in message
    assert col == result_line(project, 2).index('"answer"') + 1


@pytest.mark.parametrize("gold, label", [("B", "B"), ("b", "b"), (" C ", "C"), (1, "B"), (0, "A"), (3, "D"), ("Ｄ", "Ｄ")])
def test_gold_labels_and_indexes_stay_valid(project, gold, label):
    result = project([item(1, answer=gold)])
    assert result.spec is not None, result.text
    ds = result.spec.datasets["qa"]
    entry = {"fields": {k: v.model_dump(exclude_none=True) for k, v in ds.fields.items()}, "labels": "letters", "gold_is": ds.gold_is}
    assert ds.gold_is == ("index" if isinstance(gold, int) else "label")
    assert view(result.records["qa"][0], entry, "en", None).gold == label


def test_one_dataset_reads_its_gold_one_way(project):
    """A label on one record and an index on the next: the dataset reads labels, and the
    index is reported (gold_is says otherwise)."""
    result = project([item(1, answer="B"), item(2, answer=2)])
    _, _, line, _, message, hint = only(result)
    assert line == 2 and "gold `2` (`answer`) is not an option label (A-D)" in message and "gold_is = index" in hint


def test_a_gold_answer_that_is_an_option_text_says_which_label(project):
    # English option texts do not name the French options: the dataset reads labels
    result = project([item(1, answer="three")])
    _, _, _, _, message, hint = only(result)
    assert "the text of option C" in message and "`C`" in hint and "gold_is = text" in hint
    # where every gold is its item's option text, that is how gold is read
    rows = [item(1, answer={"en": "three", "fr": "trois"}), item(2, answer={"en": "one", "fr": "un"})]
    ok = project(rows, mapping=MAPPING.replace("gold = answer", "gold = answer[lang]"))
    assert ok.spec is not None, ok.text
    assert ok.spec.datasets["qa"].gold_is == "text"


def test_a_declared_gold_text_must_be_an_option_in_every_language(project):
    result = project([item(1, answer="three")], mapping=MAPPING + "  gold_is = text")
    _, _, _, _, message, hint = only(result)
    assert "is not the text of one of the item's options in `fr`" in message and "gold = answer[lang]" in hint


def test_gold_with_number_labels(project):
    ok = project([item(1, answer=2), item(2, answer="4")], mapping=MAPPING + "  labels = numbers")
    assert ok.spec is not None, ok.text
    assert ok.spec.datasets["qa"].gold_is == "label"
    # regression: a 0-based index with number labels was read as a label (0 matched nothing)
    zero = project([item(1, answer=0)], mapping=MAPPING + "  labels = numbers")
    assert zero.spec is not None and zero.spec.datasets["qa"].gold_is == "index"
    both = project([item(1, answer=1)], mapping=MAPPING + "  labels = numbers")
    assert both.spec is None and "say which with gold_is = `label` or `index`" in both.text


def test_gold_without_options_is_a_text(project):
    rows = [{"id": "a", "question": {"en": "Capital of France?"}, "answer": "Paris"}, {"id": "b", "question": {"en": "Two?"}, "answer": ["2"]}]
    result = project(rows, mapping="id = id  question = question[lang]  gold = answer", language="[en]", template="{question}")
    _, _, line, _, message, _ = only(result)
    assert line == 2 and "gold" in message and "list" in message


def test_more_options_than_letters_is_an_error(project):
    many = {"en": [f"o{i}" for i in range(30)], "fr": [f"o{i}" for i in range(30)]}
    result = project([item(1, options=many)])
    _, _, line, _, message, hint = only(result)
    assert line == 1 and "30 options" in message and "at most 26" in message and "numbers" in hint
    ok = project([item(1, options=many, answer=30)], mapping=MAPPING + "  labels = numbers")
    assert ok.spec is not None, ok.text


def test_one_error_per_kind_with_a_count(project):
    result = project([item(i, answer="Z") for i in range(1, 8)])
    _, _, line, _, message, _ = only(result)
    (d,) = [d for d in result.diagnostics if d.code == "E015"]
    assert line == 1 and any("6 more records like it: lines 2, 3, 4, 5, 6, 7" in n for n in d.notes)


def test_targets_and_human_are_checked(project):
    rows = [{"id": "a", "question": "Q?", "targets": ["x", None]}]
    result = project(rows, mapping="id = id  question = question  targets = targets", language="[en]", template="{question}")
    assert "targets" in only(result)[4]
    rows = [item(1, human={"1": 0.5, "9": 0.5}), item(2, human=[0.1, "x", 0.2, 0.3])]
    result = project(rows, mapping=MAPPING + "  human = human  labels = numbers")
    messages = [f[4] for f in result.found if f[0] == "E015"]
    assert any("`9`, which is no option label" in m for m in messages), result.text
    assert any("`x`, which is not a share" in m for m in messages), result.text


def test_a_list_of_fields_maps_only_list_names(project):
    result = project([item(1)], mapping="id = id  question = [question, answer]  options = options[lang]")
    code, file, line, col, message, _ = only(result, "E014")
    assert (file, line) == ("t.xls", 2) and "not a list of fields" in message


# ---- CSV ---------------------------------------------------------------------------------------

CSV_MAPPING = "id = id  question = question  options = [a, b, c, d]  gold = answer"
HEADER = "id,question,a,b,c,d,answer\n"


def test_a_csv_row_missing_a_value_is_an_error_at_that_row(project):
    result = project(HEADER + "1,Q1,w,x,y,z,A\n2,Q2,w,x,y,B\n", name="qa.csv", mapping=CSV_MAPPING, language="[en]")
    _, file, line, _, message, _ = only(result)
    assert (file, line) == ("qa.csv", 3) and "fewer values than header columns" in message and "`answer`" in message


def test_an_unterminated_csv_quote_is_reported_where_it_opened(project):
    text = HEADER + '1,Q1,w,x,y,z,A\n2,"Q2,w,x,y,z,A\n3,Q3,w,x,y,z,B\nSECRET,SECRET,SECRET,SECRET,SECRET,SECRET,SECRET\n'
    result = project(text, name="qa.csv", mapping=CSV_MAPPING, language="[en]")
    _, _, line, col, message, _ = only(result)
    assert (line, col) == (3, 3) and "never closed" in message
    assert "SECRET" not in result.text  # at most the offending line is quoted


def test_a_multi_line_csv_value_is_fine_and_keeps_its_first_line(project):
    text = HEADER + '1,"Two\nlines",w,x,y,z,A\n2,Q2,w,x,y,z,Q\n'
    result = project(text, name="qa.csv", mapping=CSV_MAPPING, language="[en]")
    _, _, line, col, message, _ = only(result)
    assert line == 4 and col == len("2,Q2,w,x,y,z,") + 1 and "gold `Q`" in message
    assert result.records["qa"][0].fields["question"] == "Two\nlines"


def test_trailing_empty_option_columns_are_fewer_options(project):
    result = project(HEADER + "1,Q1,w,x,,,B\n2,Q2,w,x,y,z,D\n", name="qa.csv", mapping=CSV_MAPPING, language="[en]")
    assert result.spec is not None, result.text
    entry = {"fields": {k: v.model_dump(exclude_none=True) for k, v in result.spec.datasets["qa"].fields.items()}, "labels": "letters"}
    first = view(result.records["qa"][0], entry, "en", None)
    assert first.labels == ["A", "B"] and first.option_texts == ["w", "x"]
    bad = project(HEADER + "1,Q1,w,,y,z,B\n", name="qa.csv", mapping=CSV_MAPPING, language="[en]")
    _, _, line, col, message, _ = only(bad)
    assert (line, col) == (2, len("1,Q1,w,") + 1) and "option 2 (`b`) is empty, but option 3 (`c`) is not" in message


def test_gold_past_the_options_of_a_short_row(project):
    result = project(HEADER + "1,Q1,w,x,,,C\n", name="qa.csv", mapping=CSV_MAPPING, language="[en]")
    assert "is not an option label (A-B)" in only(result)[4]


def test_a_csv_header_naming_a_column_twice(project):
    result = project("id,question,id\n1,Q,2\n", name="qa.csv", mapping="id = id  question = question", language="[en]", template="{question}")
    assert "names column `id` twice" in only(result)[4]


def test_a_csv_with_a_byte_order_mark_and_crlf(project):
    result = project(("\ufeff" + HEADER + "1,Q1,w,x,y,z,A\n").replace("\n", "\r\n").encode("utf-8"), name="qa.csv", mapping=CSV_MAPPING, language="[en]")
    assert result.spec is not None, result.text


# ---- JSONL -------------------------------------------------------------------------------------


def test_deeply_nested_json_is_an_error_at_its_line(project):
    text = json.dumps(item(1)) + "\n" + '{"id": "deep", "x": ' + "[" * 200_000 + "]" * 200_000 + "}\n"
    result = project(text)
    _, file, line, _, message, _ = only(result)
    assert (file, line) == ("qa.jsonl", 2) and "nested more than 100 levels" in message


def test_json_nested_past_the_limit_but_under_the_recursion_limit(project):
    result = project(json.dumps(item(1)) + "\n" + '{"id": "deep", "x": ' + "[" * 300 + "]" * 300 + "}\n")
    assert "nested more than 100 levels" in only(result)[4]


def test_a_huge_json_integer_is_an_error(project):
    result = project('{"id": ' + "9" * 5000 + "}\n")
    _, _, line, _, message, _ = only(result)
    assert line == 1 and "invalid JSON" in message


def test_invalid_json_points_at_the_column(project):
    result = project(json.dumps(item(1)) + '\n{"id": "q2", "question": {"en": "broken"\n')
    _, _, line, col, message, _ = only(result)
    assert (line, col) == (2, 41) and message == "bad data file: invalid JSON: Expecting ',' delimiter"


def test_a_file_that_is_not_data_shows_one_line(project):
    project.write_data("notes.jsonl", "first line\nSECRET LINE TWO\nSECRET LINE THREE\n")
    result = project(dataset='jsonl("notes.jsonl") { id = id }')
    _, file, line, _, _, _ = only(result)
    assert (file, line) == ("notes.jsonl", 1)
    assert "first line" in result.text and "SECRET" not in result.text


# ---- files that are not regular files, too large, or outside the spec's folder -----------------


@pytest.fixture
def deadline():
    """Fail, rather than hang, past a few seconds."""

    def alarm(signum, frame):
        raise TimeoutError("the check hung")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def test_a_fifo_is_refused_without_blocking(project, deadline):
    os.mkfifo(project.path / "pipe.jsonl")
    result = project(dataset='jsonl("pipe.jsonl") { id = id }')
    code, file, line, _, message, _ = only(result, "E010")
    assert (file, line) == ("t.xls", 2) and "not a regular file" in message


def test_a_device_is_refused_without_reading_it(project, deadline):
    result = project(dataset='jsonl("/dev/zero") { id = id }', allow_outside_data=True)
    assert "not a regular file" in only(result, "E010")[4]


def test_a_folder_is_refused(project):
    (project.path / "folder.jsonl").mkdir()
    assert "is a folder" in only(project(dataset='jsonl("folder.jsonl") { id = id }'), "E010")[4]


def test_a_data_file_over_the_size_limit(project, monkeypatch):
    monkeypatch.setenv("XLSPEC_MAX_DATA_MB", "0.0001")  # about 100 bytes
    result = project([item(i) for i in range(5)])
    code, file, line, _, message, _ = only(result, "E010")
    assert (file, line) == ("t.xls", 2) and "at most" in message and "XLSPEC_MAX_DATA_MB" in message


def test_a_data_path_outside_the_spec_folder_is_refused_unless_allowed(project, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (elsewhere / "qa.jsonl").write_text(json.dumps(item(1)) + "\n", encoding="utf-8")
    rel = os.path.relpath(elsewhere / "qa.jsonl", project.path)
    result = project(dataset=f'jsonl("{rel}") {{ {MAPPING} }}')
    code, file, line, col, message, hint = only(result, "E019")
    assert (file, line, col) == ("t.xls", 2, 20) and "outside the spec's folder" in message and "--allow-outside-data" in hint
    allowed = project(dataset=f'jsonl("{rel}") {{ {MAPPING} }}', allow_outside_data=True)
    assert allowed.spec is not None, allowed.text


def test_a_symbolic_link_is_judged_by_where_it_leads(project, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (elsewhere / "qa.jsonl").write_text(json.dumps(item(1)) + "\n", encoding="utf-8")
    (project.path / "data").mkdir()
    os.symlink(elsewhere / "qa.jsonl", project.path / "data" / "out.jsonl")
    only(project(dataset=f'jsonl("data/out.jsonl") {{ {MAPPING} }}'), "E019")
    (project.path / "real.jsonl").write_text(json.dumps(item(1)) + "\n", encoding="utf-8")
    os.symlink(project.path / "real.jsonl", project.path / "data" / "in.jsonl")
    inside = project(dataset=f'jsonl("data/in.jsonl") {{ {MAPPING} }}')
    assert inside.spec is not None, inside.text


def test_an_imported_spec_is_held_to_the_root_specs_folder(project):
    """Data paths are relative to the file that declares them, but the boundary is the
    folder of the spec being compiled."""
    (project.path / "sub").mkdir()
    project.write_data("sub/qa.jsonl", [item(1)])
    (project.path / "sub" / "lib.xls").write_text(f'dataset qa = jsonl("qa.jsonl") {{ {MAPPING} }}\n', encoding="utf-8")
    (project.path / "sub" / "root.xls").write_text('import "lib.xls"\n' + spec_text('jsonl("../qa.jsonl") { id = id }').replace("dataset qa = ", "dataset other = ").replace("dataset = qa", "dataset = qa"), encoding="utf-8")
    project.write_data("qa.jsonl", [item(1)])
    result = check_file(str(project.path / "sub" / "root.xls"))
    assert [d.code for d in result.diagnostics] == ["E019"], render_text(result.diagnostics.sorted(), result.sources)


@pytest.mark.parametrize(
    "template, code, words",
    [
        ("../../../../../../../../etc/passwd", "E019", "outside the spec's folder"),
        ("/etc/passwd", "E019", "outside the spec's folder"),
        ("qa.jsonl", "E014", "a Jinja file named *.j2 or *.jinja"),
        ("reports/missing.md.j2", "E010", "not found"),
    ],
)
def test_report_templates_are_templates_inside_the_spec_folder(project, template, code, words):
    result = project([item(1)], extra=f'report r = "{template}"\n')
    _, file, line, _, message, _ = only(result, code)
    assert (file, line) == ("t.xls", 6) and words in message


def test_report_templates_that_are_fine(project):
    (project.path / "reports").mkdir()
    (project.path / "reports" / "brief.txt.j2").write_text("{{ experiment }}", encoding="utf-8")
    (project.path / "reports" / "other.jinja").write_text("x", encoding="utf-8")
    result = project([item(1)], extra='report a = "reports/brief.txt.j2"\nreport b = "reports/other.jinja"\nreport c = "report.md.j2"\n')
    assert result.spec is not None, result.text
    assert [r.template for r in result.spec.reports] == ["reports/brief.txt.j2", "reports/other.jinja", "report.md.j2"]


def test_a_report_template_link_that_leads_outside(project, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (elsewhere / "x.md.j2").write_text("secret", encoding="utf-8")
    os.symlink(elsewhere / "x.md.j2", project.path / "x.md.j2")
    only(project([item(1)], extra='report r = "x.md.j2"\n'), "E019")


def test_the_compile_api_takes_the_flag(project, tmp_path_factory, in_dir):
    from xlspec.api import compile_file

    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (elsewhere / "qa.jsonl").write_text(json.dumps(item(1)) + "\n", encoding="utf-8")
    rel = os.path.relpath(elsewhere / "qa.jsonl", project.path)
    (project.path / "t.xls").write_text(spec_text(f'jsonl("{rel}") {{ {MAPPING} }}'), encoding="utf-8")
    with in_dir(project.path):
        codes = [d.code for d in compile_file("t.xls").diagnostics]
        # (The placeholders the unread dataset would fill are E006 as well.)
        assert codes[0] == "E019" and set(codes) <= {"E019", "E006"}
        assert compile_file("t.xls", allow_outside_data=True).ok


# ---- the reader as a library ---------------------------------------------------------------------


def test_reader_errors_are_oserror_and_valueerror(tmp_path):
    """The runtime and ``xlspec diff`` catch (OSError, ValueError) around reading data."""
    with pytest.raises(DataFileError) as e:
        read_records(str(tmp_path / "missing.jsonl"), "jsonl")
    assert isinstance(e.value, OSError) and e.value.strerror
    (tmp_path / "bad.jsonl").write_text("[1]\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        read_records(str(tmp_path / "bad.jsonl"), "jsonl")
    assert isinstance(e.value, ValueError) and e.value.line == 1


def test_records_keep_their_first_line(tmp_path):
    (tmp_path / "a.csv").write_text('id,q\r\n1,"x\r\ny"\r\n\r\n2,z\r\n', encoding="utf-8")
    records, _ = read_records(str(tmp_path / "a.csv"), "csv")
    assert records == [Record(2, {"id": "1", "q": "x\ny"}), Record(5, {"id": "2", "q": "z"})]
