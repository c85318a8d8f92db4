"""``xlspec fmt``: golden layouts, idempotence, meaning and comment preservation, the CLI.

Fixtures: tests/fixtures/fmt/NAME.xls is an input, NAME.expected.xls its canonical layout
(UPDATE_GOLDEN=1 rewrites the expected files; review the git diff).
"""

from __future__ import annotations

import glob
import os
import re
import subprocess

import pytest
from conftest import FIXTURES, ROOT, XLSPEC, check_golden

from xlspec import ast
from xlspec.diagnostics import Diagnostics
from xlspec.fmt import WIDTH, format_source
from xlspec.syntax import parse

FMT = os.path.join(FIXTURES, "fmt")
INPUTS = sorted(p for p in glob.glob(os.path.join(FMT, "*.xls")) if not p.endswith(".expected.xls"))
SPECS = sorted(glob.glob(os.path.join(ROOT, "specs", "**", "*.xls"), recursive=True))


def _read(path: str) -> str:
    with open(path, encoding="utf-8") as f:
        return f.read()


def _comments(tree: ast.File) -> list[str]:
    return [c.text.rstrip(" \t\r\f\v") for c in tree.comments]


def _fmt(text: str, path: str = "<t>") -> str:
    diags = Diagnostics()
    out = format_source(text, path, diags)
    assert out is not None, [(d.message, d.span) for d in diags]
    return out


def assert_formats_well(text: str, path: str) -> str:
    """fmt(text) keeps the meaning and every comment in order, and is a fixed point."""
    tree = parse(text, path)
    assert tree is not None
    out = _fmt(text, path)
    again = parse(out, path)
    assert again is not None, out
    assert again == tree, f"{path}: formatting changed the meaning"
    assert _comments(again) == _comments(tree), f"{path}: comments lost or reordered"
    assert _fmt(out, path) == out, f"{path}: fmt is not idempotent"
    assert out.endswith("\n") and not out.endswith("\n\n")
    return out


# ---- the fixtures: what each one is for, and that it really exercises it ---------------------

NAMES = [os.path.basename(p)[: -len(".xls")] for p in INPUTS]


def _nodes(tree) -> list:
    """Every syntax node under ``tree`` (declarations, settings, expressions), in source order."""
    found = []

    def walk(n):
        if isinstance(n, tuple):
            for x in n:
                walk(x)
        elif hasattr(n, "__dataclass_fields__") and not isinstance(n, ast.Comment):
            found.append(n)
            for name in n.__dataclass_fields__:
                if name not in ("span", "raw", "path", "comments"):
                    walk(getattr(n, name))

    walk(tree)
    return found


def _literals(tree) -> list[str]:
    return [n.raw for n in _nodes(tree) if isinstance(n, (ast.Str, ast.Num))]


def _own_line(text: str, comment: ast.Comment) -> bool:
    """True for a comment alone on its line, False for one after code."""
    return text.splitlines()[comment.span.line - 1][: comment.span.col - 1].strip() == ""


def test_fixture_set():
    """The parametrized tests have something to run over: every input has its canonical
    layout beside it (and no expected file is left without an input), and the fixtures that
    the tests below name are there."""
    expected = {os.path.basename(p)[: -len(".expected.xls")] for p in glob.glob(os.path.join(FMT, "*.expected.xls"))}
    assert set(NAMES) == expected
    assert {"blank_lines", "comments", "decls", "lists", "metrics", "precedence", "templates", "values"} <= set(NAMES)
    assert SPECS, "no specs/**/*.xls for test_repo_specs"


@pytest.mark.parametrize("path", INPUTS, ids=NAMES)
def test_input_is_not_already_canonical(path):
    """An input that fmt leaves alone would make its golden test check nothing."""
    text = _read(path)
    assert _fmt(text, path) != text


@pytest.mark.parametrize("path", INPUTS, ids=NAMES)
def test_idempotent(path):
    once = _fmt(_read(path), path)
    assert _fmt(once, path) == once


@pytest.mark.parametrize("path", INPUTS, ids=NAMES)
def test_meaning_is_kept(path):
    text = _read(path)
    before = parse(text, path)
    assert before is not None and before.items
    after = parse(_fmt(text, path), path)
    assert after == before
    # Literals keep their exact source text (equality compares decoded values only).
    assert _literals(after) == _literals(before)


@pytest.mark.parametrize("path", INPUTS, ids=NAMES)
def test_comments_are_kept_in_place(path):
    """Every comment survives, in order, and one alone on its line stays alone on its line,
    one after code stays after code."""
    text = _read(path)
    out = _fmt(text, path)
    before, after = parse(text, path), parse(out, path)
    assert _comments(after) == _comments(before)
    assert [_own_line(out, c) for c in after.comments] == [_own_line(text, c) for c in before.comments]


def test_ast_equality_sees_meaning_not_layout():
    """The meaning checks above compare ASTs: layout (spans, literal spelling, comments) must
    not count, but every change of meaning must."""
    same = [
        ("x y = a - (b - c)", "x y = a  -  ( b   - c )  # note"),
        ("x y = [1.50, 007]", "x y = [\n  1.5,\n  7,\n]"),
        ('x y = {"k": "\\u00e9"}', 'x y = {k: "é"}'),
        ("mode m { k = true }", "mode m {\n  k = true\n}"),
    ]
    for a, b in same:
        assert parse(a) == parse(b), (a, b)
    different = [
        ("x y = a - (b - c)", "x y = a - b - c"),
        ("x y = a - b", "x y = a-b"),  # one hyphenated name, not a difference
        ("x y = not (a and b)", "x y = not a and b"),
        ("x y = a.b", "x y = a[b]"),
        ("x y = [a, b]", "x y = [b, a]"),
        ("x y = f(k = 1)", "x y = f(1)"),
        ("x y = true", "x y = false"),
        ('x y = "a"', "x y = a"),
        ('experiment e "T"', 'experiment e "t"'),
        ("mode m { a = 1  b = 2 }", "mode m { b = 2  a = 1 }"),
        ("x y = a in b", "x y = a not in b"),
    ]
    for a, b in different:
        assert parse(a) != parse(b), (a, b)


def test_fixtures_cover_the_language():
    """Together the inputs hold every kind of declaration, every kind of value and every
    operator, so the meaning check runs over all of the syntax."""
    from typing import get_args

    from xlspec.check import KINDS

    trees = [parse(_read(p), p) for p in INPUTS]
    nodes = [n for t in trees for n in _nodes(t)]
    types = {type(n) for n in nodes}
    assert set(get_args(ast.Expr)) | {ast.KwArg, ast.Entry, ast.Setting, ast.Block, ast.Decl, ast.Import} <= types
    assert {n.op for n in nodes if isinstance(n, ast.BinOp)} >= {"+", "-", "&", "*", "/", "or", "and", "in", "not in", "==", "!=", "<", "<=", ">", ">="}
    refs = [n for n in nodes if isinstance(n, ast.Ref)]
    assert any(len(r.parts) > 1 for r in refs) and any(r.index is not None for r in refs)
    assert any(len(r.parts) > 1 and r.index is not None for r in refs)
    assert {True, False} <= {n.value for n in nodes if isinstance(n, ast.Bool)}
    assert any(n.quoted for n in nodes if isinstance(n, ast.Entry))
    decls = [n for n in nodes if isinstance(n, ast.Decl)]
    assert set(KINDS) <= {d.kind.text for d in decls}
    assert any(d.title for d in decls) and any(d.value is not None and d.body is not None for d in decls)
    raws = [n.raw for n in nodes if isinstance(n, ast.Str)]
    assert any(r.startswith('"""') for r in raws) and any("\\" in r for r in raws)


def test_each_fixture_exercises_its_topic():
    """Each input holds what its name promises, so its golden layout shows that rule."""
    text = {name: _read(p) for name, p in zip(NAMES, INPUTS)}
    tree = {name: parse(t, name) for name, t in text.items()}

    # blank_lines: runs of blank lines at the top, between declarations and settings, and
    # right inside a block's braces.
    t = text["blank_lines"]
    assert t.startswith("\n") and "\n\n\n\n" in t
    assert re.search(r"\{\n[ \t]*\n", t) and re.search(r"\n[ \t]*\n\}", t)

    # comments: many, alone on a line and after code, at the top and at the end of the file,
    # inside a list, a map and a block.
    t, cs = text["comments"], tree["comments"].comments
    assert len(cs) >= 10
    assert {_own_line(t, c) for c in cs} == {True, False}
    assert t.lstrip().startswith("#") and t.rstrip().splitlines()[-1].lstrip().startswith("#")
    for opener, closer in (("[", "]"), ("{", "}")):
        assert re.search(re.escape(opener) + r"[^" + re.escape(closer) + r"]*#", t), opener

    # decls: every declaration kind, squeezed together without blank lines.
    kinds = {d.kind.text for d in tree["decls"].decls}
    from xlspec.check import KINDS

    assert set(KINDS) <= kinds and tree["decls"].imports
    assert "\n\n" not in text["decls"]

    # lists: a list too long for one line, an empty one, a trailing comma, nesting, maps and
    # a call whose arguments do not fit.
    t = text["lists"]
    assert max(len(line) for line in t.splitlines()) > WIDTH
    assert "[ ]" in t and ",]" in t and "[[" in t and "{" in t

    # metrics: calls with keyword arguments, nested calls, a call too long for one line.
    calls = [n for n in _nodes(tree["metrics"]) if isinstance(n, ast.Call)]
    assert any(n.keywords for n in calls) and any(isinstance(a, ast.Call) for n in calls for a in n.args)
    assert max(len(line) for line in text["metrics"].splitlines()) > WIDTH

    # precedence: parentheses the grammar does not need, which fmt drops.
    assert text["precedence"].count("(") > _fmt(text["precedence"]).count("(")
    assert any(isinstance(n, ast.Not) for n in _nodes(tree["precedence"]))

    # templates: triple-quoted strings, indented differently from the block around them.
    raws = [n.raw for n in _nodes(tree["templates"]) if isinstance(n, ast.Str)]
    assert sum(r.startswith('"""') for r in raws) >= 3


@pytest.mark.parametrize("path", INPUTS, ids=[os.path.basename(p)[:-4] for p in INPUTS])
def test_golden(path):
    text = _read(path)
    out = assert_formats_well(text, path)
    expected = path[: -len(".xls")] + ".expected.xls"
    check_golden(expected, out)
    # The expected layout is itself formatted, and means the same as the input.
    assert _fmt(_read(expected), expected) == _read(expected)
    assert parse(_read(expected), expected) == parse(text, path)


@pytest.mark.parametrize("path", SPECS, ids=[os.path.relpath(p, ROOT) for p in SPECS])
def test_repo_specs(path):
    assert_formats_well(_read(path), path)


def test_triple_quoted_strings_keep_their_value():
    """Templates are printed verbatim, so re-indenting the block around them cannot change
    what they decode to (they are dedented on decode)."""
    text = _read(os.path.join(FMT, "templates.xls"))
    out = _fmt(text)

    def strings(tree):
        found = []

        def walk(n):
            if isinstance(n, ast.Str):
                found.append((n.raw.startswith('"""'), n.value))
            if isinstance(n, tuple):
                for x in n:
                    walk(x)
            elif hasattr(n, "__dataclass_fields__"):
                for name in n.__dataclass_fields__:
                    if name not in ("span", "raw", "comments", "path"):
                        walk(getattr(n, name))

        walk(tree)
        return found

    before, after = strings(parse(text)), strings(parse(out))
    assert before == after
    triple = [v for is_triple, v in after if is_triple]
    assert "You are a careful assistant.\n  Answer with one letter.\n\n{question}\n{options}" in triple
    assert "Responde con una letra. # not a comment\n{question}" in triple
    # The block moved from 6 columns to 2, the template's lines did not move.
    assert "  en = \"\"\"\n          You are a careful assistant.\n" in out


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", ""),
        ("\n\n  \n", ""),
        ("# only\n\n\n", "# only\n"),
        ("mode m {}", "mode m { }\n"),
        ("mode m {\n}", "mode m { }\n"),
        ("mode m { k = 1 }", "mode m { k = 1 }\n"),
        ("mode m {\n  k = 1 }", "mode m {\n  k = 1\n}\n"),
        ("model m=hf(\"x\")", 'model m = hf("x")\n'),
        ("x y = f( )", "x y = f()\n"),
        ("x y = a-b - c", "x y = a-b - c\n"),
        ("x y = a - (b - c)", "x y = a - (b - c)\n"),
        ("x y = (a - b) - c", "x y = a - b - c\n"),
        ("x y = not (a in b)", "x y = not a in b\n"),
        ("x y = {\"k\" : 1}", 'x y = {"k": 1}\n'),
        ("x y = [1.50, 2e3, 007]", "x y = [1.50, 2e3, 007]\n"),
        ("x y = [a, # c\n b]", "x y = [\n  a,  # c\n  b,\n]\n"),
        ("x y = [a\n# c\n]", "x y = [\n  a,\n  # c\n]\n"),
        ("x y = [  # c\n]", "x y = [  # c\n]\n"),
        ("x y = a  # c   \r\n", "x y = a  # c\n"),
    ],
)
def test_small_cases(text, expected):
    assert _fmt(text) == expected
    assert _fmt(expected) == expected


def test_syntax_error_gives_none_and_diagnostics():
    diags = Diagnostics()
    assert format_source("study s {\n  model = \n}\n", "bad.xls", diags) is None
    assert diags.has_errors()
    assert diags.errors[0].code == "E001"


# ---- the CLI ------------------------------------------------------------------------------


def _run(*args, cwd):
    return subprocess.run([*XLSPEC, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_cli_check_and_rewrite(tmp_path):
    messy = tmp_path / "messy.xls"
    messy.write_text("languages eu=[en,fr]  # two\nmode m{max_tokens=8}\n", encoding="utf-8")
    tidy = tmp_path / "tidy.xls"
    tidy.write_text("languages eu = [en, fr]  # two\n\nmode m { max_tokens = 8 }\n", encoding="utf-8")
    before = messy.read_text(encoding="utf-8")

    r = _run("fmt", "--check", str(messy), cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "would reformat" in r.stdout
    assert messy.read_text(encoding="utf-8") == before  # --check changes nothing

    r = _run("fmt", "--check", str(tidy), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr

    r = _run("fmt", str(messy), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "reformatted" in r.stdout
    assert messy.read_text(encoding="utf-8") == tidy.read_text(encoding="utf-8")

    r = _run("fmt", "--check", str(messy), str(tidy), cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr


def test_cli_syntax_error_exits_2(tmp_path):
    bad = tmp_path / "bad.xls"
    bad.write_text("study s {\n  model =\n}\n", encoding="utf-8")
    r = _run("fmt", str(bad), cwd=tmp_path)
    assert r.returncode == 2
    assert "E001" in r.stderr
    assert bad.read_text(encoding="utf-8") == "study s {\n  model =\n}\n"


def test_cli_default_files(tmp_path):
    """With no files, fmt takes specs/**/*.xls under the working directory."""
    (tmp_path / "specs" / "sub").mkdir(parents=True)
    (tmp_path / "specs" / "a.xls").write_text("mode m{}\n", encoding="utf-8")
    (tmp_path / "specs" / "sub" / "b.xls").write_text("mode n { }\n", encoding="utf-8")
    r = _run("fmt", "--check", cwd=tmp_path)
    assert r.returncode == 1
    assert "a.xls" in r.stdout and "b.xls" not in r.stdout
    assert _run("fmt", cwd=tmp_path).returncode == 0
    assert (tmp_path / "specs" / "a.xls").read_text(encoding="utf-8") == "mode m { }\n"
    assert _run("fmt", "--check", cwd=tmp_path).returncode == 0
