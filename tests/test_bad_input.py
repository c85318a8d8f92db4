"""Reproducers of bad spec input: each ends in located diagnostics and exit status 2, in
``compile`` and ``fmt`` alike, quickly, with the caret under the reported line."""

import json
import os
import shutil
import time

import pytest

from conftest import ROOT
from xlspec import cli
from xlspec.diagnostics import Diagnostics, SourceCache, render_text
from xlspec.syntax import MAX_DEPTH, parse

DEMO = os.path.join(ROOT, "specs", "demo.xls")


@pytest.fixture
def project(tmp_path):
    shutil.copytree(os.path.join(ROOT, "specs"), tmp_path / "specs")
    return tmp_path


def compile_json(path, capsys, *extra):
    status = cli.run_command(["compile", "--check", "--format", "json", str(path), *extra])
    out = capsys.readouterr().out
    return status, json.loads(out)["diagnostics"] if out.strip() else []


def fmt(path, capsys):
    status = cli.run_command(["fmt", "--check", str(path)])
    return status, capsys.readouterr()


def write(path, data: bytes):
    path.write_bytes(data)
    return path


def demo_bytes() -> bytes:
    with open(DEMO, "rb") as f:
        return f.read()


def test_invalid_utf8_is_located_and_refused_by_compile_and_fmt(project, capsys):
    data = demo_bytes().replace(b"# ", b"# \xff", 1)
    line = data[: data.index(b"\xff")].count(b"\n") + 1
    spec = write(project / "specs" / "bad.xls", data)
    status, diags = compile_json(spec, capsys)
    assert status == 2
    (d,) = diags
    assert d["code"] == "E001" and "UTF-8" in d["message"] and "0xff" in d["message"]
    assert d["span"]["line"] == line and d["span"]["col"] == 3
    status, out = fmt(spec, capsys)
    assert status == 2 and "UTF-8" in out.err and "Traceback" not in out.err


@pytest.mark.parametrize("ending", [b"\r", b"\r\n"])
def test_carets_follow_the_parser_whatever_the_line_endings(project, capsys, ending):
    text = demo_bytes().replace(b"accuracy", b"acuracy", 1)
    lines = text.split(b"\n")
    expected = next(i for i, line in enumerate(lines, 1) if b"acuracy" in line)
    spec = write(project / "specs" / "endings.xls", ending.join(lines))
    status, diags = compile_json(spec, capsys)
    assert status == 2
    (d,) = [d for d in diags if "acuracy" in d["message"]]
    assert d["span"]["line"] == expected
    status, _ = fmt(spec, capsys)
    assert status == 1  # readable, only not in the canonical layout


def test_a_line_separator_inside_a_comment_does_not_move_carets(capsys, tmp_path):
    text = 'experiment x "t"\n# a comment \u2028 with a line separator\nlanguages l = [en, zz]\n'
    d = Diagnostics()
    tree = parse(text, "f.xls", d)
    assert tree is not None
    sources = SourceCache()
    sources.add("f.xls", text)
    assert sources.line("f.xls", 3) == "languages l = [en, zz]"
    spec = tmp_path / "sep.xls"
    spec.write_text(text.replace("zz", "[1"), encoding="utf-8")
    status, diags = compile_json(spec, capsys)
    assert status == 2 and diags[0]["span"]["line"] == 3
    shown = render_text([_diag(diags[0])], SourceCache())
    assert "languages l = [en, [1" in shown


def _diag(j):
    from xlspec.diagnostics import Diagnostic, Span

    s = j["span"]
    return Diagnostic(j["code"], j["message"], Span(s["file"], s["line"], s["col"], s["end_line"], s["end_col"]))


def test_lone_surrogate_escape_is_a_located_error(tmp_path, capsys):
    spec = tmp_path / "s.xls"
    spec.write_text('experiment x "caf\\ud800e"\n', encoding="utf-8")
    status, diags = compile_json(spec, capsys)
    assert status == 2 and diags[0]["code"] == "E001" and "\\ud800" in diags[0]["message"]
    assert (diags[0]["span"]["line"], diags[0]["span"]["col"]) == (1, 14)


def test_a_surrogate_pair_escape_is_one_character():
    tree = parse('experiment x "\\ud83d\\ude00"\n', "f.xls", Diagnostics())
    assert tree.decls[0].title.value == "\U0001f600"


@pytest.mark.parametrize(
    "target, words",
    [
        ("/dev/zero", "not a regular file"),
        ("a\\u0000b.xls", "NUL"),
        (".", "folder"),
        ("no_such.xls", "no such file"),
    ],
)
def test_imports_of_things_that_are_not_spec_files(project, capsys, target, words):
    spec = write(project / "specs" / "imp.xls", f'import "{target}"\n'.encode() + demo_bytes())
    start = time.perf_counter()
    status, diags = compile_json(spec, capsys)
    assert time.perf_counter() - start < 5
    assert status == 2
    (d,) = [d for d in diags if d["code"] == "E010"]
    assert words in d["message"] and d["span"]["line"] == 1


def test_importing_a_fifo_does_not_block(project, capsys):
    os.mkfifo(project / "specs" / "pipe.xls")
    spec = write(project / "specs" / "imp.xls", b'import "pipe.xls"\n' + demo_bytes())
    status, diags = compile_json(spec, capsys)
    assert status == 2 and "not a regular file" in diags[0]["message"]


def test_a_spec_over_the_size_limit_is_refused_before_reading(tmp_path, capsys):
    spec = tmp_path / "big.xls"
    spec.write_bytes(b"# filler\n" * 300_000)
    status, diags = compile_json(spec, capsys)
    assert status == 2 and "at most 2.0 MiB" in diags[0]["message"]


def test_deep_brackets_are_refused_where_they_pass_the_limit():
    depth = MAX_DEPTH + 50
    text = "languages l = " + "[" * depth + "en" + "]" * depth + "\n"
    d = Diagnostics()
    start = time.perf_counter()
    assert parse(text, "f.xls", d) is None
    assert time.perf_counter() - start < 1
    (e,) = d.items
    assert "nested more than" in e.message and e.span.col == len("languages l = ") + MAX_DEPTH + 1


def test_a_long_operator_chain_is_refused_at_a_place_inside_it():
    text = "languages l = en" + " + fr" * 600 + "\n"
    d = Diagnostics()
    assert parse(text, "f.xls", d) is None
    (e,) = d.items
    assert "nested more than" in e.message and e.span.line == 1 and e.span.col > 1


def test_a_megabyte_line_parses_quickly():
    for line in ("# " + "x" * 1_000_000, 'experiment x "' + "a" * 1_000_000 + '"'):
        start = time.perf_counter()
        d = Diagnostics()
        parse(line + "\nlanguages l = [en]\n", "f.xls", d)
        assert time.perf_counter() - start < 1.0, line[:20]


def test_a_megabyte_of_tokens_is_refused_at_once():
    text = "languages l = [" + "en, " * 250_000 + "]\n"
    d = Diagnostics()
    start = time.perf_counter()
    assert parse(text, "f.xls", d) is None
    assert time.perf_counter() - start < 2
    assert "tokens" in d.items[0].message


def test_fmt_never_changes_a_plan(project, capsys, tmp_path):
    """fmt of every example spec, saved with CRLF line ends, compiles to the same plan."""
    from xlspec.api import compile_file
    from xlspec.fmt import format_source

    for name in ("demo.xls", "global_mmlu.xls", "mena_values.xls", "multiloko.xls"):
        path = project / "specs" / name
        before = compile_file(str(path), str(tmp_path / "a")).data
        text = path.read_text(encoding="utf-8")
        path.write_text(format_source(text, str(path)).replace("\n", "\r\n"), encoding="utf-8", newline="")
        after = compile_file(str(path), str(tmp_path / "a")).data
        # Byte for byte: the spec's fingerprint is of its text, so the line endings fmt (or a
        # checkout on Windows) changes do not count.
        assert json.dumps(before, sort_keys=True) == json.dumps(after, sort_keys=True), name


@pytest.mark.parametrize("bad", ["0", "-1", "x"])
def test_limit_must_be_a_positive_number(capsys, bad):
    assert cli.run_command(["run", "--limit", bad]) == 2
    assert "--limit" in capsys.readouterr().err


def test_the_last_resort_handler_names_the_version(monkeypatch, capsys):
    from xlspec import __version__

    def broken(args):
        raise RuntimeError("boom")

    monkeypatch.setattr(cli, "cmd_compile", broken)
    assert cli.main(["compile"]) == cli.EXIT_INTERNAL
    err = capsys.readouterr().err
    assert "internal error" in err and __version__ in err and "Traceback" not in err


def test_a_megabyte_language_string_is_not_looked_up(tmp_path, capsys):
    """Found by the fuzzer: a 1 MB string as a language code took minutes in the language-name
    lookup."""
    spec = tmp_path / "long.xls"
    spec.write_text('experiment x "t"\nlanguages extra = "' + "a" * 1_000_000 + '"\n', encoding="utf-8")
    start = time.perf_counter()
    status, diags = compile_json(spec, capsys)
    assert time.perf_counter() - start < 5
    assert status == 2 and any(d["code"] == "E002" and "1,000,000 characters" in d["message"] for d in diags)


def test_a_study_naming_a_subset_declared_without_a_value(project, capsys):
    """Found by the fuzzer: an AttributeError."""
    text = demo_bytes().decode().replace("model smol =", "subset maths\nmodel smol =", 1).replace("  answer = options\n", "  answer = options\n  subset = maths\n", 1)
    spec = write(project / "specs" / "sub.xls", text.encode())
    status, diags = compile_json(spec, capsys)
    assert status == 2 and any("`subset maths` needs a value" in d["message"] for d in diags)


def test_a_language_name_lookup_that_fails_inside_langcodes_is_an_unknown_code():
    """Found by the fuzzer: a NUL in a language string made langcodes' name lookup raise
    UnicodeDecodeError."""
    from xlspec.languages import check_code

    assert check_code.__wrapped__("\0fr")[0] is False


def test_line_endings_do_not_make_a_plan_stale(project, tmp_path):
    from xlspec import plan as planmod
    from xlspec.api import compile_file

    spec = project / "specs" / "demo.xls"
    result = compile_file(str(spec), str(tmp_path / "build"))
    path = str(tmp_path / "build" / "demo.plan.json")
    planmod.write(result.data, path)
    text = spec.read_text(encoding="utf-8")
    spec.write_bytes(text.replace("\n", "\r\n").encode("utf-8"))
    assert planmod.stale_inputs(planmod.load(path), path) == []
    spec.write_text(text.replace("Quiz time!", "Quiz!"), encoding="utf-8")
    assert [os.path.basename(p) for p in planmod.stale_inputs(planmod.load(path), path)] == ["demo.xls"]


def test_a_plan_with_a_huge_integer_is_not_an_internal_error(tmp_path, capsys):
    bad = tmp_path / "big.plan.json"
    bad.write_text('{"format": ' + "1" * 5000 + "}", encoding="utf-8")
    assert cli.run_command(["diff", str(bad), str(bad)]) == 2
    assert "not a plan file" in capsys.readouterr().err


def test_word_diff_of_long_templates_is_quick():
    from xlspec.diff import word_diff

    big = " ".join(f"w{i}" for i in range(20000))
    start = time.perf_counter()
    assert "[-w10000-]{+changed+}" in word_diff(big, big.replace("w10000", "changed"))
    word_diff(big, " ".join(f"v{i}" for i in range(20000)))
    assert time.perf_counter() - start < 2


def test_max_data_mb_that_is_not_finite_falls_back(monkeypatch):
    from xlspec.data import DEFAULT_MAX_DATA_MB, max_data_bytes

    for value in ("nan", "inf", "x"):
        monkeypatch.setenv("XLSPEC_MAX_DATA_MB", value)
        assert max_data_bytes() == DEFAULT_MAX_DATA_MB * 1024 * 1024
