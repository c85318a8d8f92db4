"""``xlspec fmt``: golden layouts, idempotence, meaning and comment preservation, the CLI.

Fixtures: tests/fixtures/fmt/NAME.xls is an input, NAME.expected.xls its canonical layout
(UPDATE_GOLDEN=1 rewrites the expected files; review the git diff).
"""

from __future__ import annotations

import glob
import os
import subprocess

import pytest
from conftest import FIXTURES, ROOT, XLSPEC, check_golden

from xlspec import ast
from xlspec.diagnostics import Diagnostics
from xlspec.fmt import format_source
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


def test_fixtures_exist():
    assert len(INPUTS) >= 6


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
